package gatekit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
	"github.com/gatekit/gatekit/middleware"
)

// demoConfig is the demo provider's own gatekit.yaml.
func demoConfig(t testing.TB) gatekit.Config {
	t.Helper()
	cfg, err := gatekit.LoadConfig("examples/provider/gatekit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newProvider serves the demo API over a real connection.
func newProvider(t testing.TB) *httptest.Server {
	t.Helper()
	e, _, err := app.New(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

// envelope is the OpenAI shape, decoded strictly enough to see every field.
type envelope struct {
	Error struct {
		Message    string  `json:"message"`
		Type       string  `json:"type"`
		Code       string  `json:"code"`
		Param      *string `json:"param"`
		RequestID  string  `json:"request_id"`
		RetryAfter *int64  `json:"retry_after"`
	} `json:"error"`
}

// checkEnvelope asserts everything the contract promises of an error
// response with code, and returns the decoded envelope.
func checkEnvelope(t *testing.T, res *http.Response, code apierrors.Code) envelope {
	t.Helper()
	spec, ok := apierrors.Lookup(code)
	if !ok {
		t.Fatalf("unknown code %q", code)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != spec.Status {
		t.Fatalf("status %d, want %d for %s; body %s", res.StatusCode, spec.Status, code, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("body is not the envelope: %v: %s", err, body)
	}
	e := env.Error
	if e.Code != string(code) || e.Type != spec.Type || e.Message == "" {
		t.Errorf("envelope %+v, want code %s type %s", e, code, spec.Type)
	}
	rid := res.Header.Get("X-Request-Id")
	if rid == "" || e.RequestID != rid {
		t.Errorf("request id: header %q, body %q", rid, e.RequestID)
	}
	if got, want := res.Header.Get("X-Should-Retry"), strconv.FormatBool(spec.Retryable); got != want {
		t.Errorf("x-should-retry %q, want %q", got, want)
	}
	if spec.Retryable {
		if e.RetryAfter == nil || *e.RetryAfter < 1 || res.Header.Get("Retry-After") != strconv.FormatInt(*e.RetryAfter, 10) || res.Header.Get("Retry-After-Ms") == "" {
			t.Errorf("retryable %s without consistent hints: body %v, headers %v", code, e.RetryAfter, res.Header)
		}
	} else if e.RetryAfter != nil || res.Header.Get("Retry-After") != "" {
		t.Errorf("non-retryable %s carries a retry hint", code)
	}
	if spec.Status >= 500 && strings.Contains(string(body), "secret") {
		t.Errorf("5xx body leaks internal text: %s", body)
	}
	return env
}

// withKey is an HTTP client that sends key as a Bearer token.
func withKey(key string) *http.Client {
	return &http.Client{Transport: keyTransport(key)}
}

type keyTransport string

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(k))
	return http.DefaultTransport.RoundTrip(r)
}

// pro is a client of the demo's pro tier, whose limits no test here reaches.
var pro = withKey("sk-demo-pro")

func post(t *testing.T, url, contentType string, body io.Reader) *http.Response {
	t.Helper()
	res, err := pro.Post(url, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestEveryCatalogCodeOverHTTP answers every code from a real Echo server
// with gatekit mounted, in every shape, and checks status and headers; in
// the OpenAI shape the whole envelope.
func TestEveryCatalogCodeOverHTTP(t *testing.T) {
	for _, shape := range apierrors.Shapes() {
		e := echo.New()
		if _, err := gatekit.Mount(e, gatekit.Config{Shape: shape, Logger: discardLogger()}); err != nil {
			t.Fatal(err)
		}
		e.GET("/codes/:code", func(c echo.Context) error {
			return apierrors.New(apierrors.Code(c.Param("code")), "").WithCause(stderrors.New("secret detail"))
		})
		srv := httptest.NewServer(e)
		for _, spec := range apierrors.Catalog() {
			if spec.MidStream {
				continue
			}
			t.Run(string(shape)+"/"+string(spec.Code), func(t *testing.T) {
				res, err := http.Get(srv.URL + "/codes/" + string(spec.Code))
				if err != nil {
					t.Fatal(err)
				}
				if shape == apierrors.ShapeOpenAI {
					checkEnvelope(t, res, spec.Code)
					return
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != spec.Status || res.Header.Get("X-Should-Retry") != strconv.FormatBool(spec.Retryable) ||
					res.Header.Get("Content-Type") != shape.ContentType() || !json.Valid(body) || bytes.Contains(body, []byte("secret")) {
					t.Fatalf("%d %v %s", res.StatusCode, res.Header, body)
				}
			})
		}
		srv.Close()
	}
}

func TestMidStreamCodesEndTheStreamWithAnErrorEvent(t *testing.T) {
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
	e.GET("/stream/:code", func(c echo.Context) error {
		s := middleware.NewStream(c)
		if err := s.Send(map[string]string{"delta": "hi"}); err != nil {
			return err
		}
		return apierrors.New(apierrors.Code(c.Param("code")), "")
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	for _, code := range []apierrors.Code{apierrors.CodeStreamError, apierrors.CodeStreamTerminated, apierrors.CodeBudgetExceeded} {
		res, err := http.Get(srv.URL + "/stream/" + string(code))
		if err != nil {
			t.Fatal(err)
		}
		events := readEvents(t, res)
		if len(events) != 2 || !strings.HasPrefix(events[1], `{"error":{`) || !strings.Contains(events[1], `"code":"`+string(code)+`"`) {
			t.Fatalf("%s: events %q", code, events)
		}
	}
}

// readEvents returns the data of every event of an SSE response.
func readEvents(t *testing.T, res *http.Response) []string {
	t.Helper()
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	return events
}

const chatURL = "/v1/chat/completions"

func TestProviderAnswersBadRequestsWithTheRightCode(t *testing.T) {
	srv := newProvider(t)
	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		code        apierrors.Code
		param       string
		message     string
	}{
		{"malformed JSON", "application/json", `{"model":`, apierrors.CodeInvalidRequest, "", "ended unexpectedly"},
		{"syntax error", "application/json", `{"model" "gk-echo"}`, apierrors.CodeInvalidRequest, "", "at byte"},
		{"trailing data", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}]} {}`, apierrors.CodeInvalidRequest, "", "after the JSON value"},
		{"empty body", "application/json", ``, apierrors.CodeInvalidRequest, "", "empty"},
		{"unknown field", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}],"temprature":1}`, apierrors.CodeInvalidArgument, "temprature", "Unrecognized request argument supplied: temprature."},
		{"wrong type", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, apierrors.CodeInvalidArgument, "temperature", "expected a number"},
		{"temperature too high", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}],"temperature":2.5}`, apierrors.CodeInvalidArgument, "temperature", "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead."},
		{"bad role", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"hi"},{"role":"robot","content":"x"}]}`, apierrors.CodeInvalidArgument, "messages[1].role", "Supported values are: 'system', 'user', and 'assistant'."},
		{"no messages", "application/json", `{"model":"gk-echo","messages":[]}`, apierrors.CodeInvalidArgument, "messages", "empty array"},
		{"no model", "application/json", `{"messages":[{"role":"user","content":"hi"}]}`, apierrors.CodeInvalidArgument, "model", "Missing required parameter: 'model'."},
		{"max_tokens zero", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, apierrors.CodeInvalidArgument, "max_tokens", "integer below minimum value"},
		{"unknown model", "application/json", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, apierrors.CodeUnknownModel, "model", "'gpt-9'"},
		{"text/plain", "text/plain", `{}`, apierrors.CodeUnsupportedMediaType, "", "text/plain"},
		{"no content type", "", `{}`, apierrors.CodeUnsupportedMediaType, "", "no Content-Type"},
		{"flaky model", "application/json", `{"model":"gk-flaky","messages":[{"role":"user","content":"hi"}]}`, apierrors.CodeModelTimeout, "", "gk-flaky"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+chatURL, strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			res, err := pro.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			env := checkEnvelope(t, res, tc.code)
			gotParam := ""
			if env.Error.Param != nil {
				gotParam = *env.Error.Param
			}
			if gotParam != tc.param {
				t.Errorf("param %q, want %q", gotParam, tc.param)
			}
			if !strings.Contains(env.Error.Message, tc.message) {
				t.Errorf("message %q does not contain %q", env.Error.Message, tc.message)
			}
		})
	}
}

func TestProviderRoutingErrors(t *testing.T) {
	srv := newProvider(t)
	res, err := pro.Get(srv.URL + "/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	checkEnvelope(t, res, apierrors.CodeNotFound)

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/v1/models", nil)
	res, err = pro.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	checkEnvelope(t, res, apierrors.CodeMethodNotAllowed)

	req, _ = http.NewRequest(http.MethodHead, srv.URL+"/v1/nope", nil)
	res, err = pro.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 404 || len(body) != 0 || res.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("HEAD: %d %q %v", res.StatusCode, body, res.Header)
	}
}

func TestProviderChatCompletion(t *testing.T) {
	srv := newProvider(t)
	res := post(t, srv.URL+chatURL, "application/json", strings.NewReader(`{"model":"gk-echo","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello big world"}],"max_tokens":2}`))
	defer res.Body.Close()
	var out struct {
		Object  string `json:"object"`
		Choices []struct {
			Message      struct{ Role, Content string } `json:"message"`
			FinishReason string                         `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || out.Object != "chat.completion" || len(out.Choices) != 1 ||
		out.Choices[0].Message.Content != "hello big" || out.Choices[0].FinishReason != "length" ||
		out.Usage.PromptTokens != 5 || out.Usage.CompletionTokens != 2 || out.Usage.TotalTokens != 7 {
		t.Fatalf("%d %+v", res.StatusCode, out)
	}
}

func TestProviderStreamsAndFailsMidStream(t *testing.T) {
	srv := newProvider(t)
	res := post(t, srv.URL+chatURL, "application/json", strings.NewReader(`{"model":"gk-echo","stream":true,"messages":[{"role":"user","content":"one two three"}]}`))
	events := readEvents(t, res)
	if len(events) != 6 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("echo stream: %q", events)
	}
	var text strings.Builder
	for _, ev := range events[:len(events)-1] {
		var chunk struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev), &chunk); err != nil || chunk.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", ev, err)
		}
		text.WriteString(chunk.Choices[0].Delta.Content)
	}
	if text.String() != "one two three" {
		t.Fatalf("streamed %q", text.String())
	}

	res = post(t, srv.URL+chatURL, "application/json", strings.NewReader(`{"model":"gk-flaky","stream":true,"messages":[{"role":"user","content":"one two three"}]}`))
	events = readEvents(t, res)
	if len(events) != 4 {
		t.Fatalf("flaky stream: %q", events)
	}
	last := events[len(events)-1]
	if !strings.HasPrefix(last, `{"error":{`) || !strings.Contains(last, `"code":"model_timeout"`) {
		t.Fatalf("last event %q", last)
	}
	for _, ev := range events {
		if ev == "[DONE]" {
			t.Fatal("a failed stream must not end with [DONE]")
		}
	}
}

func TestProviderBodyLimits(t *testing.T) {
	srv := newProvider(t)
	// Declared too large: rejected before the body is read.
	big := strings.Repeat("x", 1<<20+1)
	env := checkEnvelope(t, post(t, srv.URL+chatURL, "application/json", strings.NewReader(big)), apierrors.CodePayloadTooLarge)
	if !strings.Contains(env.Error.Message, "1 MiB") {
		t.Errorf("message %q does not name the limit", env.Error.Message)
	}
	// Chunked (no Content-Length): cut off at the limit.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+chatURL, io.MultiReader(strings.NewReader(`{"model":"`), strings.NewReader(big), strings.NewReader(`"}`)))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	res, err := pro.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	checkEnvelope(t, res, apierrors.CodePayloadTooLarge)
}

func TestProviderUploadLimit(t *testing.T) {
	srv := newProvider(t)
	upload := func(size int64) *http.Response {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			_ = mw.WriteField("model", "gk-echo")
			fw, _ := mw.CreateFormFile("file", "talk.wav")
			_, err := io.CopyN(fw, zeros{}, size)
			if err == nil {
				err = mw.Close()
			}
			pw.CloseWithError(err)
		}()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/audio/transcriptions", pr)
		req.Header.Set("Content-Type", mw.FormDataContentType()) // streamed: no Content-Length
		res, err := pro.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := upload(3 << 20)
	var out struct {
		Filename string `json:"filename"`
		Bytes    int64  `json:"bytes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 || out.Filename != "talk.wav" || out.Bytes != 3<<20 {
		t.Fatalf("%d %+v %v", res.StatusCode, out, err)
	}
	res.Body.Close()
	env := checkEnvelope(t, upload(76_000_000), apierrors.CodePayloadTooLarge)
	if !strings.Contains(env.Error.Message, "75 MB") {
		t.Errorf("message %q does not name the limit", env.Error.Message)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestPanicBecomesInternalErrorAndServerStaysUp(t *testing.T) {
	var logs bytes.Buffer
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{Logger: newLogger(&logs)}); err != nil {
		t.Fatal(err)
	}
	e.GET("/panic", func(c echo.Context) error { panic("secret: database exploded") })
	e.GET("/ok", func(c echo.Context) error { return c.String(200, "ok") })
	srv := httptest.NewServer(e)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/panic")
	if err != nil {
		t.Fatal(err)
	}
	env := checkEnvelope(t, res, apierrors.CodeInternalError)
	if !strings.Contains(logs.String(), env.Error.RequestID) || !strings.Contains(logs.String(), "database exploded") || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("log lacks request id, cause or stack: %s", logs.String())
	}
	res, err = http.Get(srv.URL + "/ok")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("server down after panic: %v", err)
	}
	res.Body.Close()
}

// The official OpenAI Go SDK decodes gatekit's errors into *openai.Error,
// ends a failed stream with an error, and retries exactly what the catalog
// marks retryable.
func TestOpenAISDKDecodesGatekitErrors(t *testing.T) {
	srv := newProvider(t)
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("sk-demo-pro"), option.WithMaxRetries(0))
	ctx := context.Background()
	user := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello from the sdk")}

	_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gk-echo", Messages: user, Temperature: openai.Float(3)})
	var apiErr *openai.Error
	if !stderrors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "invalid_argument" || apiErr.Param != "temperature" || apiErr.Type != "invalid_request_error" {
		t.Fatalf("400: %v %+v", err, apiErr)
	}

	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-nope", Messages: user})
	if !stderrors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "unknown_model" || apiErr.Param != "model" {
		t.Fatalf("404: %v %+v", err, apiErr)
	}

	huge := []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("word ", 300_000))}
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gk-echo", Messages: huge})
	if !stderrors.As(err, &apiErr) || apiErr.StatusCode != 413 || apiErr.Code != "payload_too_large" {
		t.Fatalf("413: %v %+v", err, apiErr)
	}

	got, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gk-echo", Messages: user})
	if err != nil || got.Choices[0].Message.Content != "hello from the sdk" || got.Usage.CompletionTokens != 4 {
		t.Fatalf("200: %v %+v", err, got)
	}

	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gk-flaky", Messages: user})
	chunks := 0
	for stream.Next() {
		chunks++
	}
	if stream.Err() == nil || !strings.Contains(stream.Err().Error(), "model_timeout") || chunks == 0 {
		t.Fatalf("flaky stream: %d chunks, err %v", chunks, stream.Err())
	}

	stream = client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gk-echo", Messages: user})
	var text strings.Builder
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if stream.Err() != nil || text.String() != "hello from the sdk" {
		t.Fatalf("echo stream: %q %v", text.String(), stream.Err())
	}
}

func TestOpenAISDKRetriesExactlyTheRetryableCodes(t *testing.T) {
	var attempts atomic.Int64
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		n := attempts.Add(1)
		var req struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
		}
		if err := c.Bind(&req); err != nil {
			return err
		}
		switch req.Model {
		case "bad":
			return apierrors.InvalidArgument("temperature", "Invalid 'temperature'.")
		case "overloaded":
			if n < 3 {
				return apierrors.ModelOverloaded(5 * time.Millisecond)
			}
		}
		return c.JSON(200, map[string]any{"id": "x", "object": "chat.completion", "model": req.Model, "choices": []any{}})
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("sk"), option.WithMaxRetries(3))
	user := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}

	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "bad", Messages: user})
	if err == nil || attempts.Load() != 1 {
		t.Fatalf("400 was sent %d times (err %v); want exactly once", attempts.Load(), err)
	}
	attempts.Store(0)
	start := time.Now()
	if _, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "overloaded", Messages: user}); err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 3 {
		t.Fatalf("503 model_overloaded: %d attempts, want 3 (two retries)", attempts.Load())
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("retries ignored Retry-After-Ms: took %v", elapsed)
	}
}

func ExampleMount() {
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{
		Routes: map[string]gatekit.RouteConfig{"POST /v1/chat/completions": {BodyLimit: 1 << 20}},
	}); err != nil {
		panic(err)
	}
	e.GET("/v1/models/:id", func(c echo.Context) error {
		return apierrors.NotFound(fmt.Sprintf("The model '%s' does not exist.", c.Param("id")))
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/models/gpt-9", nil)
	req.Header.Set("X-Request-Id", "req_example")
	e.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("X-Should-Retry"))
	fmt.Println(rec.Body.String())
	// Output:
	// 404 false
	// {"error":{"message":"The model 'gpt-9' does not exist.","type":"not_found_error","code":"not_found","param":null,"request_id":"req_example"}}
}
