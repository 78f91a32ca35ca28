package middleware_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// A handler returns an *apierrors.Error (or any error); the error handler
// answers with the envelope, the request id and the retry headers.
func ExampleErrorHandler() {
	e := echo.New()
	e.HTTPErrorHandler = middleware.ErrorHandler()
	e.Use(middleware.RequestID())
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		return apierrors.RateLimitExceeded("Rate limit reached for requests.", 1500*time.Millisecond)
	})

	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	req.Header.Set("X-Request-Id", "req_example")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)

	fmt.Println(rec.Code)
	for _, h := range []string{"Content-Type", "X-Request-Id", "X-Should-Retry", "Retry-After", "Retry-After-Ms"} {
		fmt.Printf("%s: %s\n", h, rec.Header().Get(h))
	}
	fmt.Println(rec.Body)
	// Output:
	// 429
	// Content-Type: application/json
	// X-Request-Id: req_example
	// X-Should-Retry: true
	// Retry-After: 2
	// Retry-After-Ms: 1500
	// {"error":{"message":"Rate limit reached for requests.","type":"rate_limit_error","code":"rate_limit_exceeded","param":null,"request_id":"req_example","retry_after":2}}
}

// The body limit answers 413 naming the limit, whether the client declared
// the length or sent the body chunked.
func ExampleBodyLimit() {
	e := echo.New()
	e.HTTPErrorHandler = middleware.ErrorHandler()
	e.Binder = middleware.NewBinder()
	e.Use(middleware.BodyLimit(1 << 10))
	e.POST("/v1/embeddings", func(c echo.Context) error {
		var req struct {
			Input string `json:"input"`
		}
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})

	body := `{"input":"` + strings.Repeat("a", 2000) + `"}`
	req := httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1 // as a chunked request arrives
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)

	fmt.Println(rec.Code)
	fmt.Println(rec.Body)
	// Output:
	// 413
	// {"error":{"message":"The request body exceeds the limit of 1 KiB.","type":"invalid_request_error","code":"payload_too_large","param":null}}
}

// A stream sends each event as it is produced; an error after the first
// event ends it with one error event instead of [DONE].
func ExampleNewStream() {
	e := echo.New()
	// The error handler logs a 5xx's cause with the request id; this
	// example has no use for the log.
	h, err := middleware.ErrorHandlerConfig{Logger: slog.New(slog.DiscardHandler)}.ToHandler()
	if err != nil {
		panic(err)
	}
	e.HTTPErrorHandler = h
	e.GET("/v1/stream", func(c echo.Context) error {
		s := middleware.NewStream(c)
		for _, tok := range []string{"Hel", "lo"} {
			if err := s.Send(map[string]string{"delta": tok}); err != nil {
				return err // the client went away
			}
		}
		if c.QueryParam("fail") != "" {
			return apierrors.ModelServerError("")
		}
		return s.Done()
	})

	for _, target := range []string{"/v1/stream", "/v1/stream?fail=1"} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		fmt.Print(rec.Body)
		fmt.Println("--")
	}
	// Output:
	// data: {"delta":"Hel"}
	//
	// data: {"delta":"lo"}
	//
	// data: [DONE]
	//
	// --
	// data: {"delta":"Hel"}
	//
	// data: {"delta":"lo"}
	//
	// data: {"error":{"message":"The model server returned an error.","type":"engine_error","code":"model_server_error","param":null,"retry_after":1}}
	//
	// --
}

// With the binder and the validator registered, c.Bind decodes the body
// strictly and checks its validate tags; a failure names the field by its
// JSON path.
func ExampleNewValidator() {
	type message struct {
		Role    string `json:"role" validate:"required,oneof=system user assistant"`
		Content string `json:"content"`
	}
	type chatRequest struct {
		Model       string    `json:"model" validate:"required"`
		Messages    []message `json:"messages" validate:"required,min=1,dive"`
		Temperature *float64  `json:"temperature" validate:"omitempty,gte=0,lte=2"`
	}

	e := echo.New()
	e.HTTPErrorHandler = middleware.ErrorHandler()
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req chatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})

	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":3}`,
		`{"model":"m","messages":[{"role":"user"},{"role":"robot"}]}`,
		`{"model":"m","messages":[{"role":"user"}],"temprature":1}`,
		`{"model":"m","messages":[{"role":"user"}]} {}`,
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body)
	}
	// Output:
	// 400 {"error":{"message":"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.","type":"invalid_request_error","code":"invalid_argument","param":"temperature"}}
	// 400 {"error":{"message":"Invalid value for 'messages[1].role': 'robot'. Supported values are: 'system', 'user', and 'assistant'.","type":"invalid_request_error","code":"invalid_argument","param":"messages[1].role"}}
	// 400 {"error":{"message":"Unrecognized request argument supplied: temprature.","type":"invalid_request_error","code":"invalid_argument","param":"temprature"}}
	// 400 {"error":{"message":"We could not parse the JSON body of your request: unexpected data after the JSON value (at byte 44).","type":"invalid_request_error","code":"invalid_request","param":null}}
}

// Every request gets an id: a well-formed one the client sent, or a
// generated one. Handlers read it with GetRequestID.
func ExampleRequestID() {
	e := echo.New()
	e.Use(middleware.RequestID())
	e.GET("/v1/models", func(c echo.Context) error {
		return c.String(http.StatusOK, middleware.GetRequestID(c))
	})

	for _, inbound := range []string{"trace-7f3a", "not a valid id", ""} {
		req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		if inbound != "" {
			req.Header.Set("X-Request-Id", inbound)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		id := rec.Header().Get("X-Request-Id")
		switch {
		case id == inbound:
			fmt.Printf("%q kept\n", inbound)
		case strings.HasPrefix(id, "req_") && len(id) == 28 && rec.Body.String() == id:
			fmt.Printf("%q replaced by a generated req_ id\n", inbound)
		}
	}
	// Output:
	// "trace-7f3a" kept
	// "not a valid id" replaced by a generated req_ id
	// "" replaced by a generated req_ id
}
