package gatekit_test

import (
	"context"
	"encoding/json"
	stderrors "errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/labstack/echo/v4"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
)

// codesRoute answers, in the anthropic shape, the catalog code its path
// names, with a retry hint of hint milliseconds, counting each attempt:
// the SDK is pointed at /codes/CODE/HINT as its base URL, so its
// /v1/messages lands here.
const codesRoute = "POST /codes/:code/:hint/v1/messages"

// attempts records when each request to the codes route arrived, by code.
type attempts struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (a *attempts) add(code string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at[code] = append(a.at[code], time.Now())
}

func (a *attempts) of(code string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[code]
}

// newBothProtocols serves the demo provider (its OpenAI routes and its
// Messages API) over a real connection, with the codes route beside them.
func newBothProtocols(t *testing.T) (*httptest.Server, *attempts) {
	t.Helper()
	cfg := demoConfig(t)
	cfg.Logger = discardLogger()
	cfg.Routes[strings.TrimSpace(codesRoute)] = gatekit.RouteConfig{Shape: apierrors.ShapeAnthropic}
	e, _, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := &attempts{at: map[string][]time.Time{}}
	e.POST("/codes/:code/:hint/v1/messages", func(c echo.Context) error {
		seen.add(c.Param("code"))
		ms, _ := strconv.Atoi(c.Param("hint"))
		return apierrors.New(apierrors.Code(c.Param("code")), "").WithRetryAfter(time.Duration(ms) * time.Millisecond)
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, seen
}

// anthropicClient is Anthropic's SDK on srv (or on base under srv) with
// key and at most retries retries.
func anthropicClient(srv *httptest.Server, base, key string, retries int) anthropic.Client {
	return anthropic.NewClient(
		anthropicoption.WithBaseURL(srv.URL+base),
		anthropicoption.WithAPIKey(key),
		anthropicoption.WithMaxRetries(retries),
		anthropicoption.WithRequestTimeout(bounded),
	)
}

// bounded is how long a test waits for what should happen at once.
const bounded = 10 * time.Second

func hello(model string, maxTokens int64, text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     anthropic.Model(model),
		MaxTokens: maxTokens,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

// anthropicTypeOf is the error type Anthropic's SDK should see for a code.
func anthropicTypeOf(spec apierrors.Spec, status int) anthropic.ErrorType {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusGatewayTimeout:
		return anthropic.ErrorTypeTimeoutError
	case status == http.StatusServiceUnavailable || status == apierrors.StatusOverloaded:
		return anthropic.ErrorTypeOverloadedError
	case status >= 500:
		return anthropic.ErrorTypeAPIError
	case spec.Type == apierrors.TypeConflict:
		return anthropic.ErrorTypeInvalidRequestError
	}
	return anthropic.ErrorType(spec.Type)
}

func TestAnthropicSDKDecodesEveryErrorStatusWithItsTypeMessageAndRequestID(t *testing.T) {
	srv, _ := newBothProtocols(t)
	for _, spec := range apierrors.Catalog() {
		if spec.MidStream {
			continue
		}
		t.Run(string(spec.Code), func(t *testing.T) {
			client := anthropicClient(srv, "/codes/"+string(spec.Code)+"/0", "unused", 0)
			_, err := client.Messages.New(context.Background(), hello("gk-echo", 10, "hi"))
			var apiErr *anthropic.Error
			if !stderrors.As(err, &apiErr) {
				t.Fatalf("error %v (%T), want *anthropic.Error", err, err)
			}
			status := spec.Status
			if spec.Code == apierrors.CodeModelOverloaded {
				status = apierrors.StatusOverloaded // the demo's catalog setting
			}
			if apiErr.StatusCode != status || apiErr.Type() != anthropicTypeOf(spec, status) || apiErr.Message != spec.Message {
				t.Fatalf("got %d %q %q, want %d %q %q", apiErr.StatusCode, apiErr.Type(), apiErr.Message, status, anthropicTypeOf(spec, status), spec.Message)
			}
			if !strings.HasPrefix(apiErr.RequestID, "req_") || apiErr.RequestID != apiErr.Response.Header.Get("X-Request-Id") {
				t.Fatalf("RequestID %q, X-Request-Id %q", apiErr.RequestID, apiErr.Response.Header.Get("X-Request-Id"))
			}
		})
	}
}

func TestAnthropicSDKDecodesTheDemosOwnRefusals(t *testing.T) {
	srv, _ := newBothProtocols(t)
	for _, tc := range []struct {
		name   string
		key    string
		params anthropic.MessageNewParams
		status int
		typ    anthropic.ErrorType
		msg    string
	}{
		{"no messages", "sk-demo-pro", anthropic.MessageNewParams{Model: "gk-echo", MaxTokens: 10},
			400, anthropic.ErrorTypeInvalidRequestError, "'messages'"},
		{"unknown key", "sk-nope", hello("gk-echo", 10, "hi"), 401, anthropic.ErrorTypeAuthenticationError, "Incorrect API key"},
		{"no budget", "sk-demo-broke", hello("gk-echo", 10, "hi"), 402, anthropic.ErrorTypeBillingError, "Budget exceeded"},
		{"model not in the tier", "sk-demo-free", hello("gk-large", 10, "hi"), 403, anthropic.ErrorTypePermissionError, "gk-large"},
		{"unknown model", "sk-demo-pro", hello("gk-nine", 10, "hi"), 404, anthropic.ErrorTypeNotFoundError, "gk-nine"},
		{"body too large", "sk-demo-pro", hello("gk-echo", 10, strings.Repeat("word ", 300_000)), 413, "request_too_large", "exceeds the limit"},
		{"prompt above the input burst", "sk-demo-free", hello("gk-echo", 10, strings.Repeat("w", 9000)), 429, anthropic.ErrorTypeRateLimitError, "input tokens"},
		{"max_tokens above the output burst", "sk-demo-free", hello("gk-echo", 5000, "hi"), 429, anthropic.ErrorTypeRateLimitError, "output tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := anthropicClient(srv, "", tc.key, 0)
			_, err := client.Messages.New(context.Background(), tc.params)
			var apiErr *anthropic.Error
			if !stderrors.As(err, &apiErr) {
				t.Fatalf("error %v, want *anthropic.Error", err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Type() != tc.typ || !strings.Contains(apiErr.Message, tc.msg) || apiErr.RequestID == "" {
				t.Fatalf("got %d %q %q (request %q)", apiErr.StatusCode, apiErr.Type(), apiErr.Message, apiErr.RequestID)
			}
			if tc.status == 429 && apiErr.Response.Header.Get("X-Should-Retry") != "false" {
				t.Fatalf("a request that can never fit is marked retryable: %v", apiErr.Response.Header)
			}
		})
	}
}

func TestAnthropicSDKRetriesExactlyWhatTheCatalogSaysAsHinted(t *testing.T) {
	srv, seen := newBothProtocols(t)
	const hint = 150 * time.Millisecond
	for _, tc := range []struct {
		code  apierrors.Code
		tries int
	}{
		{apierrors.CodeInvalidArgument, 1},
		{apierrors.CodeInvalidAPIKey, 1},
		{apierrors.CodeBudgetExceeded, 1},
		{apierrors.CodeModelNotAllowed, 1},
		{apierrors.CodeUnknownModel, 1},
		{apierrors.CodePayloadTooLarge, 1},
		{apierrors.CodeRateLimitExceeded, 3},
		{apierrors.CodeTokensExceeded, 3},
		{apierrors.CodeModelOverloaded, 3},
	} {
		t.Run(string(tc.code), func(t *testing.T) {
			client := anthropicClient(srv, "/codes/"+string(tc.code)+"/"+strconv.Itoa(int(hint/time.Millisecond)), "unused", 2)
			_, err := client.Messages.New(context.Background(), hello("gk-echo", 10, "hi"))
			if _, ok := stderrors.AsType[*anthropic.Error](err); !ok {
				t.Fatalf("error %v", err)
			}
			at := seen.of(string(tc.code))
			if len(at) != tc.tries {
				t.Fatalf("%d attempts, want %d", len(at), tc.tries)
			}
			for i := 1; i < len(at); i++ {
				if gap := at[i].Sub(at[i-1]); gap < hint {
					t.Fatalf("attempt %d came %v after the one before, earlier than the %v hinted", i+1, gap, hint)
				}
			}
		})
	}
}

func TestAnthropicSDKSeesRequestIDAndRateLimitHeadersOnASuccessfulMessage(t *testing.T) {
	srv, _ := newBothProtocols(t)
	client := anthropicClient(srv, "", "sk-demo-free", 0)
	var res *http.Response
	msg, err := client.Messages.New(context.Background(), hello("gk-echo", 2, "one two three"), anthropicoption.WithResponseInto(&res))
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "one two" || msg.StopReason != anthropic.StopReasonMaxTokens ||
		msg.Usage.InputTokens != 3 || msg.Usage.OutputTokens != 2 {
		t.Fatalf("message %+v", msg)
	}
	rid := res.Header.Get("request-id")
	if !strings.HasPrefix(rid, "req_") || rid != res.Header.Get("X-Request-Id") {
		t.Fatalf("request-id %q, X-Request-Id %q", rid, res.Header.Get("X-Request-Id"))
	}
	for _, h := range []string{"requests", "input-tokens", "output-tokens"} {
		limit := res.Header.Get("anthropic-ratelimit-" + h + "-limit")
		remaining := res.Header.Get("anthropic-ratelimit-" + h + "-remaining")
		reset, err := time.Parse(time.RFC3339, res.Header.Get("anthropic-ratelimit-"+h+"-reset"))
		if limit == "" || remaining == "" || err != nil || reset.Before(time.Now().Add(-time.Second)) {
			t.Errorf("%s: limit %q remaining %q reset %v (%v)", h, limit, remaining, reset, err)
		}
	}
	if res.Header.Get("X-Ratelimit-Limit-Requests") != "" || res.Header.Get("Ratelimit-Policy") != "" {
		t.Errorf("an Anthropic route sends OpenAI's headers too: %v", res.Header)
	}
}

func TestAnthropicSDKStreamsAMessageAndGkFlakysStreamSurfacesATypedError(t *testing.T) {
	srv, _ := newBothProtocols(t)
	client := anthropicClient(srv, "", "sk-demo-pro", 0)
	params := hello("gk-echo", 100, "one two three")

	var res *http.Response
	stream := client.Messages.NewStreaming(context.Background(), params, anthropicoption.WithResponseInto(&res))
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Content) != 1 || acc.Content[0].Text != "one two three" || acc.StopReason != anthropic.StopReasonEndTurn || acc.Usage.OutputTokens != 3 {
		t.Fatalf("accumulated %+v", acc)
	}
	if rid := res.Header.Get("request-id"); rid == "" || rid != res.Header.Get("X-Request-Id") {
		t.Fatalf("stream request-id %q", rid)
	}

	flaky := client.Messages.NewStreaming(context.Background(), hello("gk-flaky", 100, "one two three"))
	deltas := 0
	for flaky.Next() {
		if flaky.Current().Type == "content_block_delta" {
			deltas++
		}
	}
	var apiErr *anthropic.Error
	if !stderrors.As(flaky.Err(), &apiErr) {
		t.Fatalf("stream error %v (%T), want *anthropic.Error", flaky.Err(), flaky.Err())
	}
	if deltas != 2 || apiErr.Type() != anthropic.ErrorTypeTimeoutError || !strings.Contains(apiErr.Message, "gk-flaky") || !strings.HasPrefix(apiErr.RequestID, "req_") {
		t.Fatalf("%d deltas, then %q %q (request %q)", deltas, apiErr.Type(), apiErr.Message, apiErr.RequestID)
	}
}

func TestOpenAISDKStillDecodesTheOpenAIRoutesOfTheSameServer(t *testing.T) {
	srv, _ := newBothProtocols(t)
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("sk-demo-pro"), option.WithMaxRetries(0))
	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:       "gk-echo",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		Temperature: openai.Float(3),
	})
	var apiErr *openai.Error
	if !stderrors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "invalid_argument" || apiErr.Param != "temperature" {
		t.Fatalf("error %v", err)
	}
	var res *http.Response
	got, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gk-echo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")},
	}, option.WithResponseInto(&res))
	if err != nil || got.Choices[0].Message.Content != "hello there" {
		t.Fatalf("%v %+v", err, got)
	}
	if res.Header.Get("request-id") != "" || res.Header.Get("X-Ratelimit-Limit-Requests") == "" || res.Header.Get("Anthropic-Ratelimit-Requests-Limit") != "" {
		t.Fatalf("an OpenAI route sends Anthropic's headers, or misses its own: %v", res.Header)
	}
}

// A request that matches no route answers in the shape of the configured
// route whose path is the longest prefix of its own at a segment boundary:
// an Anthropic SDK that reaches a method or endpoint the service lacks
// still reads its own envelope and request-id.
func TestUnmatchedRequestTakesTheShapeOfTheRouteItsPathFallsUnder(t *testing.T) {
	e := echo.New()
	_, err := gatekit.Mount(e, gatekit.Config{Shape: apierrors.ShapeOpenAI, Logger: discardLogger(), Routes: map[string]gatekit.RouteConfig{
		"POST /v1/messages":         {Shape: apierrors.ShapeAnthropic},
		"POST /v1/messages/batches": {Shape: apierrors.ShapeOpenAI},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
	e.POST("/v1/messages", ok)
	e.POST("/v1/chat/completions", ok)
	for _, tc := range []struct {
		method, path string
		status       int
		anthropic    bool
	}{
		{http.MethodGet, "/v1/messages", 405, true},
		{http.MethodPost, "/v1/messages/count_tokens", 404, true},
		{http.MethodPost, "/v1/messages/", 404, true},
		{http.MethodPost, "/v1/messages/batches/b1", 404, false},
		{http.MethodPost, "/v1/messagesX", 404, false},
		{http.MethodGet, "/v1/chat/completions", 405, false},
		{http.MethodPost, "/v1/nowhere", 404, false},
	} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		body, id, anthropicID := rec.Body.String(), rec.Header().Get("X-Request-Id"), rec.Header().Values(apierrors.HeaderAnthropicRequestID)
		isAnthropic := strings.HasPrefix(body, `{"type":"error","error":{"type":"`)
		switch {
		case rec.Code != tc.status:
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.status)
		case isAnthropic != tc.anthropic:
			t.Errorf("%s %s: anthropic envelope %v, want %v: %s", tc.method, tc.path, isAnthropic, tc.anthropic, body)
		case tc.anthropic && (id == "" || len(anthropicID) != 1 || anthropicID[0] != id):
			t.Errorf("%s %s: request-id %q, X-Request-Id %q", tc.method, tc.path, anthropicID, id)
		case !tc.anthropic && len(anthropicID) != 0:
			t.Errorf("%s %s: request-id %q on an OpenAI-shaped answer", tc.method, tc.path, anthropicID)
		}
	}
}

func TestAnthropicSDKDecodesA404OnAnEndpointTheServiceLacks(t *testing.T) {
	srv, _ := newBothProtocols(t)
	client := anthropicClient(srv, "", "sk-demo-free", 0)
	_, err := client.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model:    "gk-echo",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	})
	var apiErr *anthropic.Error
	if !stderrors.As(err, &apiErr) {
		t.Fatalf("error %v (%T), want *anthropic.Error", err, err)
	}
	if apiErr.StatusCode != 404 || apiErr.Type() != anthropic.ErrorTypeNotFoundError ||
		!strings.HasPrefix(apiErr.RequestID, "req_") || apiErr.RequestID != apiErr.Response.Header.Get("X-Request-Id") {
		t.Fatalf("got %d %q, RequestID %q, X-Request-Id %q", apiErr.StatusCode, apiErr.Type(), apiErr.RequestID, apiErr.Response.Header.Get("X-Request-Id"))
	}
}

// anthropicEnvelope is Anthropic's error body, decoded strictly.
type anthropicEnvelope struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func TestMessagesAnswersBadInputInAnthropicsEnvelopeNamingTheField(t *testing.T) {
	srv, _ := newBothProtocols(t)
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		typ, says               string
	}{
		{"malformed JSON", "application/json", `{"model":`, 400, "invalid_request_error", "ended unexpectedly"},
		{"empty body", "application/json", ``, 400, "invalid_request_error", "empty"},
		{"no max_tokens", "application/json", `{"model":"gk-echo","messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error", "Missing required parameter: 'max_tokens'."},
		{"max_tokens zero", "application/json", `{"model":"gk-echo","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error", "'max_tokens'"},
		{"system role in messages", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, 400, "invalid_request_error", "'messages[0].role'"},
		{"image block", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","text":"x"}]}]}`, 400, "invalid_request_error", "'messages[0].content[0].type'"},
		{"unknown block field", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","txt":"x"}]}]}`, 400, "invalid_request_error", "messages[0].content[0].txt"},
		{"content a number", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":5}]}`, 400, "invalid_request_error", "'messages[0].content'"},
		{"empty content list", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":[]}]}`, 400, "invalid_request_error", "'messages[0].content'"},
		{"system text a number", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":[{"type":"text","text":1}]}`, 400, "invalid_request_error", "'system[0].text'"},
		{"temperature above 1", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"x"}],"temperature":1.5}`, 400, "invalid_request_error", "Expected a value <= 1"},
		{"content twice", "application/json", `{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"x","content":"y"}]}`, 400, "invalid_request_error", "messages[0].content appears more than once"},
		{"unknown model", "application/json", `{"model":"claude-9","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 404, "not_found_error", "'claude-9'"},
		{"text/plain", "text/plain", `{}`, 415, "invalid_request_error", "text/plain"},
		{"invalid UTF-8", "application/json", "{\"model\":\"gk-echo\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, "invalid_request_error", "UTF-8"},
		{"flaky model", "application/json", `{"model":"gk-flaky","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 504, "timeout_error", "gk-flaky"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+messagesURL, strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			req.Header.Set("X-Api-Key", "sk-demo-pro")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, res)
			var env anthropicEnvelope
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&env); err != nil {
				t.Fatalf("not Anthropic's envelope: %v: %s", err, body)
			}
			rid := res.Header.Get("request-id")
			if res.StatusCode != tc.status || env.Type != "error" || env.Error.Type != tc.typ || !strings.Contains(env.Error.Message, tc.says) {
				t.Fatalf("%d %s", res.StatusCode, body)
			}
			if rid == "" || rid != env.RequestID || rid != res.Header.Get("X-Request-Id") || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("request-id %q, body %q, X-Request-Id %q, Content-Type %q", rid, env.RequestID, res.Header.Get("X-Request-Id"), res.Header.Get("Content-Type"))
			}
			if want := strconv.FormatBool(tc.status >= 500); res.Header.Get("X-Should-Retry") != want {
				t.Fatalf("x-should-retry %q", res.Header.Get("X-Should-Retry"))
			}
		})
	}
}
