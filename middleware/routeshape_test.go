package middleware_test

import (
	stderrors "errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/admission"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// anthropicOn is a ShapeFor that gives route the anthropic shape and
// every other route none of its own.
func anthropicOn(route string) func(echo.Context) apierrors.Shape {
	return func(c echo.Context) apierrors.Shape {
		if c.Path() == route {
			return apierrors.ShapeAnthropic
		}
		return ""
	}
}

// newTwoProtocolEcho serves /v1/messages in the anthropic shape and the
// rest in OpenAI's, as one service speaking both protocols does.
func newTwoProtocolEcho(t *testing.T, overloaded int) *echo.Echo {
	t.Helper()
	logger, _ := newLogger()
	e := echo.New()
	h, err := middleware.ErrorHandlerConfig{Logger: logger, ShapeFor: anthropicOn("/v1/messages"), AnthropicOverloadedStatus: overloaded}.ToHandler()
	if err != nil {
		t.Fatal(err)
	}
	e.HTTPErrorHandler = h
	rid, err := middleware.RequestIDConfig{TrustInbound: true, ShapeFor: anthropicOn("/v1/messages")}.ToMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	e.Use(rid)
	for _, path := range []string{"/v1/messages", "/v1/chat/completions"} {
		e.POST(path, func(c echo.Context) error {
			switch c.QueryParam("do") {
			case "stream":
				s := middleware.NewStream(c)
				if err := s.SendNamed("message_start", map[string]string{"type": "message_start"}); err != nil {
					return err
				}
				return apierrors.ModelTimeout("")
			case "overloaded":
				return apierrors.New(apierrors.CodeModelOverloaded, "")
			case "ok":
				return c.JSON(http.StatusOK, map[string]string{"ok": "yes"})
			}
			return apierrors.InvalidArgument("model", "Missing required parameter: 'model'.")
		})
	}
	return e
}

func TestErrorHandlerAnswersEachRouteInItsOwnShape(t *testing.T) {
	e := newTwoProtocolEcho(t, 0)
	rec := serve(e, httptest.NewRequest(http.MethodPost, "/v1/messages", nil))
	if got := rec.Body.String(); rec.Code != 400 || !strings.HasPrefix(got, `{"type":"error","error":{"type":"invalid_request_error","message":"Missing required parameter: 'model'."},"request_id":"req_`) {
		t.Fatalf("anthropic route: %d %s", rec.Code, got)
	}
	rec = serve(e, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
	env := decodeEnvelope(t, rec.Body.Bytes())
	if rec.Code != 400 || env.Error.Code != "invalid_argument" || env.Error.Param == nil || *env.Error.Param != "model" {
		t.Fatalf("openai route: %d %s", rec.Code, rec.Body)
	}
	// A route that does not exist takes the service's shape.
	rec = serve(e, httptest.NewRequest(http.MethodPost, "/v1/nowhere", nil))
	decodeEnvelope(t, rec.Body.Bytes())
}

func TestErrorHandlerEndsAnAnthropicRoutesStreamWithAnErrorEventAndOpenAIsWithData(t *testing.T) {
	e := newTwoProtocolEcho(t, 0)
	req := httptest.NewRequest(http.MethodPost, "/v1/messages?do=stream", nil)
	req.Header.Set(middleware.HeaderRequestID, "req-s")
	rec := serve(e, req)
	want := "event: message_start\ndata: {\"type\":\"message_start\"}\n\n" +
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"timeout_error\",\"message\":\"The model did not respond in time.\"},\"request_id\":\"req-s\"}\n\n"
	if rec.Body.String() != want || rec.Header().Get("Request-Id") != "req-s" {
		t.Fatalf("anthropic stream %q, request-id %q", rec.Body, rec.Header().Get("Request-Id"))
	}
	req = httptest.NewRequest(http.MethodPost, "/v1/chat/completions?do=stream", nil)
	rec = serve(e, req)
	if last := rec.Body.String()[strings.LastIndex(strings.TrimSuffix(rec.Body.String(), "\n\n"), "\n\n")+2:]; !strings.HasPrefix(last, `data: {"error":{"message"`) {
		t.Fatalf("openai stream %q", rec.Body)
	}
}

func TestRequestIDIsAlsoSentAsRequestIdOnAnthropicRoutesOnly(t *testing.T) {
	e := newTwoProtocolEcho(t, 0)
	for _, tc := range []struct {
		path, inbound string
		want          bool
	}{
		{"/v1/messages?do=ok", "", true},
		{"/v1/messages?do=ok", "client-id-1", true},
		{"/v1/messages", "", true},
		{"/v1/messages?do=overloaded", "client id with spaces", true},
		{"/v1/chat/completions?do=ok", "", false},
		{"/v1/chat/completions", "client-id-2", false},
	} {
		req := httptest.NewRequest(http.MethodPost, tc.path, nil)
		if tc.inbound != "" {
			req.Header.Set(middleware.HeaderRequestID, tc.inbound)
		}
		rec := serve(e, req)
		rid, anthropicID := rec.Header().Get(middleware.HeaderRequestID), rec.Header().Values(apierrors.HeaderAnthropicRequestID)
		switch {
		case rid == "":
			t.Errorf("%s: no X-Request-Id", tc.path)
		case tc.want && (len(anthropicID) != 1 || anthropicID[0] != rid):
			t.Errorf("%s: request-id %q, X-Request-Id %q", tc.path, anthropicID, rid)
		case !tc.want && len(anthropicID) != 0:
			t.Errorf("%s: an OpenAI route sends request-id %q", tc.path, anthropicID)
		}
	}
}

// The two headers share one slice of the request's record; a handler
// adding to one must not change the other, nor the request's header.
func TestRequestIDHeadersDoNotAliasEachOther(t *testing.T) {
	e := echo.New()
	rid, _ := middleware.RequestIDConfig{TrustInbound: true, ShapeFor: anthropicOn("/a")}.ToMiddleware()
	e.Use(rid)
	e.GET("/a", func(c echo.Context) error {
		c.Response().Header().Add(apierrors.HeaderAnthropicRequestID, "extra")
		return c.NoContent(http.StatusNoContent)
	})
	for _, inbound := range []string{"", "in-1"} {
		req := httptest.NewRequest(http.MethodGet, "/a", nil)
		if inbound != "" {
			req.Header.Set(middleware.HeaderRequestID, inbound)
		}
		rec := serve(e, req)
		if got := rec.Header().Values(middleware.HeaderRequestID); len(got) != 1 {
			t.Fatalf("X-Request-Id %q changed by an Add to request-id", got)
		}
		if inbound != "" && len(req.Header.Values(middleware.HeaderRequestID)) != 1 {
			t.Fatalf("the request's header changed: %q", req.Header.Values(middleware.HeaderRequestID))
		}
	}
}

func TestModelOverloadedAnswers529OnAnthropicRoutesOnlyWhenConfigured(t *testing.T) {
	for _, tc := range []struct {
		setting, anthropic, openai int
	}{{0, 503, 503}, {503, 503, 503}, {529, 529, 503}} {
		e := newTwoProtocolEcho(t, tc.setting)
		rec := serve(e, httptest.NewRequest(http.MethodPost, "/v1/messages?do=overloaded", nil))
		if rec.Code != tc.anthropic || !strings.Contains(rec.Body.String(), `"type":"overloaded_error"`) || rec.Header().Get("X-Should-Retry") != "true" || rec.Header().Get("Retry-After") == "" {
			t.Errorf("setting %d, anthropic route: %d %v %s", tc.setting, rec.Code, rec.Header(), rec.Body)
		}
		rec = serve(e, httptest.NewRequest(http.MethodPost, "/v1/chat/completions?do=overloaded", nil))
		if rec.Code != tc.openai {
			t.Errorf("setting %d, openai route: %d", tc.setting, rec.Code)
		}
	}
	if _, err := (middleware.ErrorHandlerConfig{AnthropicOverloadedStatus: 500}).ToHandler(); err == nil {
		t.Error("an overloaded status of 500 was accepted")
	}
}

func TestOverloaded529LeavesOtherCodesAndTheSharedErrorAlone(t *testing.T) {
	shared := apierrors.New(apierrors.CodeModelOverloaded, "")
	if got := apierrors.Overloaded529(shared); got.Status != 529 || shared.Status != 503 {
		t.Fatalf("got %d, shared now %d", got.Status, shared.Status)
	}
	other := apierrors.New(apierrors.CodeServiceUnavailable, "")
	if apierrors.Overloaded529(other) != other {
		t.Fatal("service_unavailable was changed")
	}
	if !stderrors.Is(apierrors.Overloaded529(shared.WithCause(http.ErrAbortHandler)), http.ErrAbortHandler) {
		t.Fatal("the cause was lost")
	}
}

func TestSendNamedWritesTheEventNameAndRefusesOneThatWouldSplitIt(t *testing.T) {
	e, _ := newEcho(t)
	e.GET("/s", func(c echo.Context) error {
		s := middleware.NewStream(c)
		if err := s.SendNamed("bad\nname", map[string]int{"n": 1}); err == nil || s.Started() {
			t.Errorf("a name with a line break: %v, started %v", err, s.Started())
		}
		if err := s.SendNamed("ping", map[string]string{"type": "ping"}); err != nil {
			return err
		}
		return s.SendNamed("message_stop", map[string]string{"type": "message_stop"})
	})
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/s", nil))
	want := "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	if rec.Body.String() != want {
		t.Fatalf("%q", rec.Body)
	}
}

// Anthropic's reset headers are times on the admission's clock: the
// instant the bucket is full again.
func TestAdmissionSendsAnthropicHeadersOnAnthropicRoutesOnTheConfiguredClock(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store, _ := admission.NewMemory(&admission.MemoryConfig{Now: clock})
	keys := middleware.NewStaticKeys()
	rpm, itpm, otpm := ratelimit.PerMinute(10), ratelimit.PerMinute(600), ratelimit.PerMinute(60)
	_ = keys.Add("sk-a", &middleware.Principal{ID: "a", Limits: middleware.Limits{Requests: &rpm, InputTokens: &itpm, OutputTokens: &otpm}})
	auth, _ := middleware.AuthConfig{Keys: keys}.ToStep()
	admit, err := middleware.AdmissionConfig{Store: store, Now: clock, ShapeFor: anthropicOn("/v1/messages"),
		Estimate: func(echo.Context) (middleware.Estimate, error) {
			return middleware.Estimate{PromptTokens: 60, MaxOutputTokens: 30}, nil
		}}.ToStep()
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := middleware.Chain(auth, admit)
	e := echo.New()
	e.Use(chain)
	for _, p := range []string{"/v1/messages", "/v1/chat/completions"} {
		e.POST(p, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
	req.Header.Set("Authorization", "Bearer sk-a")
	h := serve(e, req).Header()
	want := map[string]string{
		"anthropic-ratelimit-requests-limit":          "10",
		"anthropic-ratelimit-requests-remaining":      "9",
		"anthropic-ratelimit-requests-reset":          "2026-12-02T09:00:06Z",
		"anthropic-ratelimit-input-tokens-remaining":  "540",
		"anthropic-ratelimit-input-tokens-reset":      "2026-12-02T09:00:06Z",
		"anthropic-ratelimit-output-tokens-remaining": "30",
		"anthropic-ratelimit-output-tokens-reset":     "2026-12-02T09:00:30Z",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.Get("X-Ratelimit-Limit-Requests") != "" || h.Get("Ratelimit") != "" {
		t.Errorf("OpenAI's headers on an Anthropic route: %v", h)
	}
	req = httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer sk-a")
	h = serve(e, req).Header()
	if h.Get("X-Ratelimit-Remaining-Requests") != "9" || h.Get("Anthropic-Ratelimit-Requests-Limit") != "" {
		t.Errorf("OpenAI route: %v", h)
	}
}
