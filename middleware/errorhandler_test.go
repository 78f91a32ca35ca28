package middleware_test

import (
	"bufio"
	"context"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// checkEnvelope asserts what every OpenAI-shaped error response carries and
// returns the decoded body.
func checkEnvelope(t *testing.T, rec *httptest.ResponseRecorder, status int, code apierrors.Code) envelope {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get(echo.HeaderContentType); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	spec, ok := apierrors.Lookup(code)
	if !ok {
		t.Fatalf("code %q is not in the catalog", code)
	}
	env := decodeEnvelope(t, rec.Body.Bytes())
	if env.Error.Code != string(code) {
		t.Errorf("code = %q, want %q (message %q)", env.Error.Code, code, env.Error.Message)
	}
	if env.Error.Type != spec.Type {
		t.Errorf("type = %q, want %q", env.Error.Type, spec.Type)
	}
	if env.Error.Message == "" {
		t.Error("message is empty")
	}
	if want := fmt.Sprint(spec.Retryable); rec.Header().Get("x-should-retry") != want {
		t.Errorf("x-should-retry = %q, want %q", rec.Header().Get("x-should-retry"), want)
	}
	id := rec.Header().Get(middleware.HeaderRequestID)
	if id == "" || env.Error.RequestID != id {
		t.Errorf("request_id = %q, X-Request-Id = %q; want both set and equal", env.Error.RequestID, id)
	}
	if spec.Retryable {
		if rec.Header().Get("Retry-After") == "" || rec.Header().Get("Retry-After-Ms") == "" || env.Error.RetryAfter == nil {
			t.Errorf("retryable error without Retry-After (%q), Retry-After-Ms (%q) or retry_after",
				rec.Header().Get("Retry-After"), rec.Header().Get("Retry-After-Ms"))
		}
	} else if h := rec.Header().Get("Retry-After"); h != "" || env.Error.RetryAfter != nil {
		t.Errorf("error that is not retryable carries Retry-After %q / retry_after %v", h, env.Error.RetryAfter)
	}
	return env
}

// returning registers GET /fail answering with err and serves one request.
func returning(t *testing.T, err error) (*httptest.ResponseRecorder, *logBuffer) {
	t.Helper()
	e, logs := newEcho(t)
	e.GET("/fail", func(echo.Context) error { return err })
	return serve(e, httptest.NewRequest(http.MethodGet, "/fail", nil)), logs
}

func TestErrorHandlerRendersEveryCatalogCodeWithItsStatusTypeAndRetryHint(t *testing.T) {
	for _, spec := range apierrors.Catalog() {
		t.Run(string(spec.Code), func(t *testing.T) {
			rec, _ := returning(t, apierrors.New(spec.Code, ""))
			env := checkEnvelope(t, rec, spec.Status, spec.Code)
			if env.Error.Message != spec.Message {
				t.Errorf("message = %q, want the catalog's %q", env.Error.Message, spec.Message)
			}
			if env.Error.Param != nil {
				t.Errorf("param = %q, want null", *env.Error.Param)
			}
			if spec.Retryable {
				if rec.Header().Get("Retry-After") != "1" || rec.Header().Get("Retry-After-Ms") != "1000" || *env.Error.RetryAfter != 1 {
					t.Errorf("default retry hint: Retry-After %q, Retry-After-Ms %q, retry_after %d; want 1, 1000, 1",
						rec.Header().Get("Retry-After"), rec.Header().Get("Retry-After-Ms"), *env.Error.RetryAfter)
				}
			}
		})
	}
}

// secret stands for internal detail a 5xx must never show a client.
const secret = "db password=hunter2"

func TestErrorHandlerMapsEveryErrorSourceWithErrorsAs(t *testing.T) {
	var syntaxErr, typeErr error
	var v struct {
		N int `json:"n"`
	}
	syntaxErr = json.Unmarshal([]byte(`{"n":`), &v)
	typeErr = json.Unmarshal([]byte(`{"n":"many"}`), &v)
	validationErr := validator.New().Struct(struct {
		Name string `validate:"required"`
	}{})
	nestedValidationErr := validator.New().Struct(ChatRequest{Model: "m", Messages: []ChatMessage{{Role: "user"}, {}}})

	tests := []struct {
		name    string
		err     error
		status  int
		code    apierrors.Code
		param   string // "" wants null
		message string // "" checks nothing
	}{
		{"our error", apierrors.InvalidArgument("temperature", "Bad temperature."), 400, apierrors.CodeInvalidArgument, "temperature", "Bad temperature."},
		{"our error wrapped with %w", fmt.Errorf("calling model: %w", apierrors.UnknownModel("gpt-9")), 404, apierrors.CodeUnknownModel, "model", "The model 'gpt-9' does not exist."},
		{"our error wrapped twice and joined", stderrors.Join(io.EOF, fmt.Errorf("a: %w", fmt.Errorf("b: %w", apierrors.Conflict("Busy.")))), 409, apierrors.CodeConflict, "", "Busy."},
		{"echo 413", echo.ErrStatusRequestEntityTooLarge, 413, apierrors.CodePayloadTooLarge, "", ""},
		{"echo 413 wrapping a MaxBytesError", echo.NewHTTPError(http.StatusRequestEntityTooLarge).SetInternal(&http.MaxBytesError{Limit: 1 << 20}), 413, apierrors.CodePayloadTooLarge, "", "The request body exceeds the limit of 1 MiB."},
		{"echo 415", echo.ErrUnsupportedMediaType, 415, apierrors.CodeUnsupportedMediaType, "", "The request has no Content-Type; expected 'application/json'."},
		{"echo 400 wrapping our error", echo.NewHTTPError(http.StatusBadRequest, "bad").SetInternal(apierrors.InvalidArgument("n", "Bad n.")), 400, apierrors.CodeInvalidArgument, "n", "Bad n."},
		{"echo 400 with a message", echo.NewHTTPError(http.StatusBadRequest, "Missing header X."), 400, apierrors.CodeInvalidRequest, "", "Missing header X."},
		{"echo 403 with a message", echo.NewHTTPError(http.StatusForbidden, "Not for you."), 403, apierrors.CodeUnauthorized, "", "Not for you."},
		{"echo 429", echo.ErrTooManyRequests, 429, apierrors.CodeRateLimitExceeded, "", ""},
		{"echo 500 with internal text", echo.NewHTTPError(http.StatusInternalServerError, secret), 500, apierrors.CodeInternalError, "", ""},
		{"echo 503", echo.ErrServiceUnavailable, 503, apierrors.CodeServiceUnavailable, "", ""},
		{"validator errors", validationErr, 400, apierrors.CodeInvalidArgument, "Name", "Missing required parameter: 'Name'."},
		{"validator errors of a named struct", nestedValidationErr, 400, apierrors.CodeInvalidArgument, "Messages[1].Role", "Missing required parameter: 'Messages[1].Role'."},
		{"validator errors wrapped", fmt.Errorf("validating: %w", validationErr), 400, apierrors.CodeInvalidArgument, "Name", ""},
		{"json syntax error", syntaxErr, 400, apierrors.CodeInvalidRequest, "", "We could not parse the JSON body of your request: unexpected end of JSON input (at byte 5)."},
		{"json type error", fmt.Errorf("decoding: %w", typeErr), 400, apierrors.CodeInvalidArgument, "n", "Invalid type for 'n': expected an integer, but got string instead."},
		{"MaxBytesError", fmt.Errorf("reading body: %w", &http.MaxBytesError{Limit: 2048}), 413, apierrors.CodePayloadTooLarge, "", "The request body exceeds the limit of 2 KiB."},
		{"deadline exceeded", fmt.Errorf("upstream: %w", context.DeadlineExceeded), 504, apierrors.CodeModelTimeout, "", ""},
		{"canceled", fmt.Errorf("upstream: %w", context.Canceled), 500, apierrors.CodeFailedRequest, "", ""},
		{"anything else", stderrors.New(secret), 500, apierrors.CodeInternalError, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _ := returning(t, tt.err)
			env := checkEnvelope(t, rec, tt.status, tt.code)
			switch {
			case tt.param == "" && env.Error.Param != nil:
				t.Errorf("param = %q, want null", *env.Error.Param)
			case tt.param != "" && (env.Error.Param == nil || *env.Error.Param != tt.param):
				t.Errorf("param = %v, want %q", env.Error.Param, tt.param)
			}
			if tt.message != "" && env.Error.Message != tt.message {
				t.Errorf("message = %q, want %q", env.Error.Message, tt.message)
			}
			if strings.Contains(rec.Body.String(), "hunter2") {
				t.Errorf("body carries internal text: %s", rec.Body)
			}
		})
	}
}

func TestErrorHandlerAnswersEchosRoutingNotFound(t *testing.T) {
	e, _ := newEcho(t)
	e.GET("/v1/models", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/v1/nope", nil))
	env := checkEnvelope(t, rec, http.StatusNotFound, apierrors.CodeNotFound)
	if want := "Unknown request URL: GET /v1/nope."; env.Error.Message != want {
		t.Errorf("message = %q, want %q", env.Error.Message, want)
	}
	if !generatedID.MatchString(env.Error.RequestID) {
		t.Errorf("request_id = %q, want a generated id", env.Error.RequestID)
	}
}

func TestErrorHandlerAnswersEchosRoutingMethodNotAllowedKeepingAllow(t *testing.T) {
	e, _ := newEcho(t)
	e.GET("/v1/models", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	rec := serve(e, httptest.NewRequest(http.MethodDelete, "/v1/models", nil))
	env := checkEnvelope(t, rec, http.StatusMethodNotAllowed, apierrors.CodeMethodNotAllowed)
	if want := "Method DELETE is not allowed for /v1/models."; env.Error.Message != want {
		t.Errorf("message = %q, want %q", env.Error.Message, want)
	}
	if allow := rec.Header().Get(echo.HeaderAllow); !strings.Contains(allow, http.MethodGet) {
		t.Errorf("Allow = %q, want it to list GET", allow)
	}
}

func TestErrorHandlerAnswersEchosOwnBinderUnsupportedMediaType(t *testing.T) {
	e, _ := newEcho(t)
	e.Binder = &echo.DefaultBinder{}
	e.POST("/v1/chat", func(c echo.Context) error {
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
	req := httptest.NewRequest(http.MethodPost, "/v1/chat", strings.NewReader("hello"))
	req.Header.Set(echo.HeaderContentType, "text/plain; charset=utf-8")
	env := checkEnvelope(t, serve(e, req), http.StatusUnsupportedMediaType, apierrors.CodeUnsupportedMediaType)
	if want := "Unsupported Content-Type 'text/plain'; expected 'application/json'."; env.Error.Message != want {
		t.Errorf("message = %q, want %q", env.Error.Message, want)
	}
}

func TestErrorHandlerRetryAfterRoundsUpToWholeSeconds(t *testing.T) {
	tests := []struct {
		wait          time.Duration
		seconds, msec string
	}{
		{time.Millisecond, "1", "1"},
		{1500 * time.Millisecond, "2", "1500"},
		{2 * time.Second, "2", "2000"},
		{time.Second + 100*time.Microsecond, "2", "1001"},
		{0, "1", "1000"}, // no hint of its own: the default
	}
	for _, tt := range tests {
		t.Run(tt.wait.String(), func(t *testing.T) {
			rec, _ := returning(t, apierrors.RateLimitExceeded("Slow down.", tt.wait))
			env := checkEnvelope(t, rec, http.StatusTooManyRequests, apierrors.CodeRateLimitExceeded)
			if got := rec.Header().Get("Retry-After"); got != tt.seconds {
				t.Errorf("Retry-After = %q, want %q", got, tt.seconds)
			}
			if got := rec.Header().Get("Retry-After-Ms"); got != tt.msec {
				t.Errorf("Retry-After-Ms = %q, want %q", got, tt.msec)
			}
			if got := fmt.Sprint(*env.Error.RetryAfter); got != tt.seconds {
				t.Errorf("retry_after = %s, want %s", got, tt.seconds)
			}
		})
	}
}

func TestErrorHandlerAnswersHEADWithStatusAndHeadersButNoBody(t *testing.T) {
	e, _ := newEcho(t)
	e.HEAD("/v1/models", func(echo.Context) error {
		return apierrors.RateLimitExceeded("", 1200*time.Millisecond)
	})
	req := httptest.NewRequest(http.MethodHead, "/v1/models", nil)
	req.Header.Set(middleware.HeaderRequestID, "req-head-1")
	rec := serve(e, req)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", rec.Code)
	}
	if rec.Body.Len() != 0 {
		t.Errorf("HEAD response has a body: %q", rec.Body)
	}
	for name, want := range map[string]string{
		"Content-Type":   "application/json",
		"X-Request-Id":   "req-head-1",
		"X-Should-Retry": "true",
		"Retry-After":    "2",
		"Retry-After-Ms": "1200",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestErrorHandlerRendersEveryShapeWithTheSameStatusAndHeaders(t *testing.T) {
	checks := map[apierrors.Shape]func(t *testing.T, body map[string]any){
		apierrors.ShapeOpenAI: func(t *testing.T, b map[string]any) {
			inner, _ := b["error"].(map[string]any)
			want := map[string]any{"message": "Slow down.", "type": "rate_limit_error", "code": "rate_limit_exceeded", "param": nil, "request_id": "req-shape-1", "retry_after": 2.0}
			equalJSON(t, inner, want)
		},
		apierrors.ShapeAnthropic: func(t *testing.T, b map[string]any) {
			want := map[string]any{"type": "error", "error": map[string]any{"type": "rate_limit_error", "message": "Slow down."}, "request_id": "req-shape-1"}
			equalJSON(t, b, want)
		},
		apierrors.ShapeProblem: func(t *testing.T, b map[string]any) {
			want := map[string]any{"type": "about:blank", "title": "Too Many Requests", "status": 429.0, "detail": "Slow down.", "code": "rate_limit_exceeded", "param": nil, "request_id": "req-shape-1", "retry_after": 2.0}
			equalJSON(t, b, want)
		},
		apierrors.ShapeFlat: func(t *testing.T, b map[string]any) {
			want := map[string]any{"error": "rate_limit_exceeded", "message": "Slow down.", "retryAfter": 2.0}
			equalJSON(t, b, want)
		},
		apierrors.ShapeGateway: func(t *testing.T, b map[string]any) {
			ts, _ := b["timestamp"].(string)
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("timestamp %q is not RFC 3339: %v", ts, err)
			}
			delete(b, "timestamp")
			want := map[string]any{"message": "Slow down.", "path": "/v1/chat", "requestId": "req-shape-1", "statusCode": 429.0}
			equalJSON(t, b, want)
		},
	}
	for _, shape := range apierrors.Shapes() {
		t.Run(string(shape), func(t *testing.T) {
			check, ok := checks[shape]
			if !ok {
				t.Fatalf("no check for shape %q", shape)
			}
			logger, _ := newLogger()
			e := newEchoShape(t, shape, logger)
			e.POST("/v1/chat", func(echo.Context) error {
				return apierrors.RateLimitExceeded("Slow down.", 1500*time.Millisecond)
			})
			req := httptest.NewRequest(http.MethodPost, "/v1/chat", nil)
			req.Header.Set(middleware.HeaderRequestID, "req-shape-1")
			rec := serve(e, req)
			if rec.Code != http.StatusTooManyRequests {
				t.Fatalf("status = %d, want 429", rec.Code)
			}
			if got, want := rec.Header().Get("Content-Type"), shape.ContentType(); got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			for name, want := range map[string]string{"X-Request-Id": "req-shape-1", "X-Should-Retry": "true", "Retry-After": "2", "Retry-After-Ms": "1500"} {
				if got := rec.Header().Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
			}
			check(t, body)
		})
	}
}

// equalJSON compares decoded JSON objects member by member.
func equalJSON(t *testing.T, got, want map[string]any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("body = %s\nwant   %s", g, w)
	}
}

// logRecords decodes the JSON lines a test logger wrote.
func logRecords(t *testing.T, logs *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Bytes())
		}
		out = append(out, rec)
	}
	return out
}

func TestErrorHandlerNeverSendsTheCauseOfA5xxButLogsItWithTheRequestID(t *testing.T) {
	cause := stderrors.New(secret)
	tests := []struct {
		name string
		err  error
		code apierrors.Code
	}{
		{"internal error with a cause", apierrors.InternalError(cause), apierrors.CodeInternalError},
		{"plain error", fmt.Errorf("query failed: %w", cause), apierrors.CodeInternalError},
		{"echo 500", echo.NewHTTPError(http.StatusInternalServerError, secret), apierrors.CodeInternalError},
		{"echo 502 wrapping the cause", echo.NewHTTPError(http.StatusBadGateway, "upstream").SetInternal(cause), apierrors.CodeModelServerError},
		{"retryable error with a cause", apierrors.ModelOverloaded(0).WithCause(cause), apierrors.CodeModelOverloaded},
		{"deadline", fmt.Errorf("%s: %w", secret, context.DeadlineExceeded), apierrors.CodeModelTimeout},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, logs := newEcho(t)
			e.GET("/fail", func(echo.Context) error { return tt.err })
			id := fmt.Sprintf("req-5xx-%d", i)
			req := httptest.NewRequest(http.MethodGet, "/fail", nil)
			req.Header.Set(middleware.HeaderRequestID, id)
			rec := serve(e, req)
			spec, _ := apierrors.Lookup(tt.code)
			checkEnvelope(t, rec, spec.Status, tt.code)
			if strings.Contains(rec.Body.String(), "hunter2") {
				t.Errorf("body carries the cause: %s", rec.Body)
			}
			records := logRecords(t, logs)
			if len(records) != 1 {
				t.Fatalf("got %d log records, want 1: %s", len(records), logs)
			}
			r := records[0]
			if r["level"] != "ERROR" || r["request_id"] != id || r["code"] != string(tt.code) {
				t.Errorf("log record = %v, want level ERROR, request_id %q, code %q", r, id, tt.code)
			}
			if msg, _ := r["error"].(string); !strings.Contains(msg, "hunter2") {
				t.Errorf("logged error %q does not carry the cause", msg)
			}
		})
	}
}

func TestErrorHandlerDoesNotLogClientErrors(t *testing.T) {
	_, logs := returning(t, apierrors.InvalidArgument("model", "Bad model."))
	if logs.String() != "" {
		t.Errorf("a 4xx was logged: %s", logs)
	}
}

func TestErrorHandlerLogsAClientThatWentAwayAtDebugOnly(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/slow", func(c echo.Context) error { return c.Request().Context().Err() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	serve(e, httptest.NewRequest(http.MethodGet, "/slow", nil).WithContext(ctx))
	records := logRecords(t, logs)
	if len(records) != 1 || records[0]["level"] != "DEBUG" || records[0]["request_id"] == "" {
		t.Errorf("log = %v, want one DEBUG record with the request id", records)
	}
}

func TestErrorHandlerWithoutRequestIDMiddlewareOmitsTheID(t *testing.T) {
	e := echo.New()
	e.HTTPErrorHandler = middleware.ErrorHandler()
	e.GET("/fail", func(echo.Context) error { return apierrors.NotFound("") })
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/fail", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status = %d", rec.Code)
	}
	if _, ok := rec.Header()[middleware.HeaderRequestID]; ok {
		t.Errorf("X-Request-Id set without the middleware: %q", rec.Header().Get(middleware.HeaderRequestID))
	}
	if strings.Contains(rec.Body.String(), "request_id") {
		t.Errorf("body names a request id: %s", rec.Body)
	}
}

func TestErrorHandlerDropsContentLengthAndEncodingSetBeforeTheError(t *testing.T) {
	e, _ := newEcho(t)
	e.GET("/fail", func(c echo.Context) error {
		h := c.Response().Header()
		h.Set(echo.HeaderContentLength, "9999")
		h.Set(echo.HeaderContentEncoding, "gzip")
		h.Set(echo.HeaderContentType, "text/plain")
		h.Set("X-Ratelimit-Limit-Requests", "60")
		return apierrors.RateLimitExceeded("", time.Second)
	})
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/fail", nil))
	checkEnvelope(t, rec, http.StatusTooManyRequests, apierrors.CodeRateLimitExceeded)
	if rec.Header().Get(echo.HeaderContentLength) != "" || rec.Header().Get(echo.HeaderContentEncoding) != "" {
		t.Errorf("stale headers kept: %v", rec.Header())
	}
	if rec.Header().Get("X-Ratelimit-Limit-Requests") != "60" {
		t.Error("headers the handler set for the client were dropped")
	}
}

func TestErrorHandlerConfigRejectsAnUnknownShape(t *testing.T) {
	if _, err := (middleware.ErrorHandlerConfig{Shape: "xml"}).ToHandler(); err == nil {
		t.Fatal("unknown shape accepted")
	}
	if _, err := middleware.ErrorHandlerWithConfig(middleware.ErrorHandlerConfig{}); err != nil {
		t.Fatalf("zero config rejected: %v", err)
	}
}

type quotaError struct{ left int }

func (q quotaError) Error() string { return fmt.Sprintf("quota: %d left", q.left) }

func TestErrorHandlerAsksMapFirstAndFallsThroughOnNil(t *testing.T) {
	logger, _ := newLogger()
	h, err := middleware.ErrorHandlerConfig{Logger: logger, Map: func(err error) *apierrors.Error {
		var q quotaError
		if stderrors.As(err, &q) {
			return apierrors.BudgetExceeded(fmt.Sprintf("%d credits left.", q.left))
		}
		return nil
	}}.ToHandler()
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = h
	e.Use(middleware.RequestID())
	e.GET("/mapped", func(echo.Context) error { return fmt.Errorf("charging: %w", quotaError{left: 3}) })
	e.GET("/other", func(echo.Context) error { return apierrors.Conflict("") })

	env := checkEnvelope(t, serve(e, httptest.NewRequest(http.MethodGet, "/mapped", nil)), http.StatusPaymentRequired, apierrors.CodeBudgetExceeded)
	if env.Error.Message != "3 credits left." {
		t.Errorf("message = %q", env.Error.Message)
	}
	checkEnvelope(t, serve(e, httptest.NewRequest(http.MethodGet, "/other", nil)), http.StatusConflict, apierrors.CodeConflict)
}

func TestErrorHandlerDoesNotWriteACommittedJSONResponseTwice(t *testing.T) {
	e, _ := newEcho(t)
	e.GET("/half", func(c echo.Context) error {
		if err := c.JSON(http.StatusOK, map[string]string{"status": "ok"}); err != nil {
			return err
		}
		return apierrors.InternalError(stderrors.New(secret))
	})
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/half", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("status = %d, want the committed 200", rec.Code)
	}
	if got := rec.Body.String(); got != "{\"status\":\"ok\"}\n" {
		t.Errorf("body = %q, want the handler's JSON once and nothing after it", got)
	}
}

func TestErrorHandlerEndsACommittedEventStreamWithExactlyOneErrorEvent(t *testing.T) {
	tests := []struct {
		shape apierrors.Shape
		want  string
	}{
		{apierrors.ShapeOpenAI, "data: {\"n\":1}\n\n" +
			`data: {"error":{"message":"The model server returned an error.","type":"engine_error","code":"model_server_error","param":null,"request_id":"req-stream-1","retry_after":1}}` + "\n\n"},
		{apierrors.ShapeAnthropic, "data: {\"n\":1}\n\n" +
			"event: error\n" + `data: {"type":"error","error":{"type":"api_error","message":"The model server returned an error."},"request_id":"req-stream-1"}` + "\n\n"},
	}
	for _, tt := range tests {
		t.Run(string(tt.shape), func(t *testing.T) {
			logger, _ := newLogger()
			e := newEchoShape(t, tt.shape, logger)
			e.POST("/v1/chat", func(c echo.Context) error {
				s := middleware.NewStream(c)
				if err := s.Send(map[string]int{"n": 1}); err != nil {
					return err
				}
				return apierrors.ModelServerError("").WithCause(stderrors.New(secret))
			})
			req := httptest.NewRequest(http.MethodPost, "/v1/chat", nil)
			req.Header.Set(middleware.HeaderRequestID, "req-stream-1")
			rec := serve(e, req)
			if rec.Code != http.StatusOK {
				t.Errorf("status = %d, want the stream's 200", rec.Code)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("stream =\n%q\nwant\n%q", got, tt.want)
			}
			if strings.Contains(rec.Body.String(), "[DONE]") {
				t.Error("a failed stream ended with [DONE]")
			}
		})
	}
}

func TestRecoverTurnsAPanicInto500LogsTheStackAndTheServerKeepsServing(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/panic", func(echo.Context) error { panic("boom: " + secret) })
	e.GET("/panic-error", func(echo.Context) error { panic(fmt.Errorf("wrapped: %w", io.ErrUnexpectedEOF)) })
	e.GET("/ok", func(c echo.Context) error { return c.String(http.StatusOK, "fine") })
	srv := httptest.NewServer(e)
	defer srv.Close()

	for _, path := range []string{"/panic", "/panic-error", "/ok", "/panic", "/ok"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set(middleware.HeaderRequestID, "req-panic"+strings.ReplaceAll(path, "/", "-"))
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if path == "/ok" {
			if res.StatusCode != http.StatusOK || string(body) != "fine" {
				t.Fatalf("after a panic, /ok answered %d %q", res.StatusCode, body)
			}
			continue
		}
		if res.StatusCode != http.StatusInternalServerError {
			t.Fatalf("%s: status = %d, want 500", path, res.StatusCode)
		}
		env := decodeEnvelope(t, body)
		if env.Error.Code != string(apierrors.CodeInternalError) || strings.Contains(string(body), "boom") || strings.Contains(string(body), "hunter2") {
			t.Errorf("%s: body = %s, want internal_error without the panic text", path, body)
		}
	}

	records := logRecords(t, logs)
	if len(records) != 3 {
		t.Fatalf("got %d log records, want one per panic: %s", len(records), logs)
	}
	for _, r := range records {
		stack, _ := r["stack"].(string)
		if r["level"] != "ERROR" || !strings.HasPrefix(r["request_id"].(string), "req-panic-") {
			t.Errorf("record = %v, want ERROR with the request id", r)
		}
		if !strings.Contains(stack, "middleware_test.TestRecoverTurnsAPanicInto500") {
			t.Errorf("stack does not show the panicking handler:\n%s", stack)
		}
		if msg, _ := r["error"].(string); !strings.Contains(msg, "panic: ") {
			t.Errorf("logged error = %q, want the panic value", msg)
		}
	}
}

func TestRecoverPassesErrAbortHandlerOnToNetHTTP(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/abort", func(echo.Context) error { panic(http.ErrAbortHandler) })
	e.GET("/ok", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	srv := httptest.NewServer(e)
	defer srv.Close()

	if res, err := srv.Client().Get(srv.URL + "/abort"); err == nil {
		res.Body.Close()
		t.Fatalf("aborted handler answered %d; want the connection aborted", res.StatusCode)
	}
	res, err := srv.Client().Get(srv.URL + "/ok")
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("after an abort: %v %v", res, err)
	}
	res.Body.Close()
	if logs.String() != "" {
		t.Errorf("an abort was logged as a failure: %s", logs)
	}
}

// sharedLimit is one *apierrors.Error shared by every request, as a package
// might declare it.
var sharedLimit = apierrors.RateLimitExceeded("Slow down.", 1500*time.Millisecond)

func TestErrorHandlerNeverMutatesASharedErrorUnderConcurrentRequests(t *testing.T) {
	before := *sharedLimit
	e, _ := newEcho(t)
	e.GET("/limited", func(echo.Context) error { return sharedLimit })

	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("req-shared-%d-%d", w, i)
				req := httptest.NewRequest(http.MethodGet, "/limited", nil)
				req.Header.Set(middleware.HeaderRequestID, id)
				rec := serve(e, req)
				var env envelope
				if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
					errs <- err.Error()
					continue
				}
				if env.Error.RequestID != id || rec.Header().Get(middleware.HeaderRequestID) != id {
					errs <- fmt.Sprintf("request %s answered with id %q / %q", id, env.Error.RequestID, rec.Header().Get(middleware.HeaderRequestID))
				}
				if rec.Code != http.StatusTooManyRequests || env.Error.Message != "Slow down." {
					errs <- fmt.Sprintf("request %s answered %d %q", id, rec.Code, env.Error.Message)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if *sharedLimit != before {
		t.Errorf("shared error changed: %+v, was %+v", *sharedLimit, before)
	}
}
