package gatekit_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admission"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// newLimitedProvider serves the demo API with its own keys and tiers on a
// memory limiter driven by clock.
func newLimitedProvider(t *testing.T, clock *fakeClock, mutate func(*gatekit.Config)) *httptest.Server {
	t.Helper()
	cfg := demoConfig(t)
	cfg.Logger = discardLogger()
	store, err := admission.NewMemory(&admission.MemoryConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = store
	if mutate != nil {
		mutate(&cfg)
	}
	e, _, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func chat(t *testing.T, client *http.Client, url, model, content string) *http.Response {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, model, content)
	res, err := client.Post(url+chatURL, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestAuthRejectsMissingAndUnknownKeysWithoutEchoingThem(t *testing.T) {
	var logs bytes.Buffer
	srv := newLimitedProvider(t, newFakeClock(), func(c *gatekit.Config) { c.Logger = newLogger(&logs) })

	res := chat(t, http.DefaultClient, srv.URL, "gk-echo", "hi")
	checkEnvelope(t, res, apierrors.CodeMissingAPIKey)

	res = chat(t, withKey("sk-wrong-secret-key"), srv.URL, "gk-echo", "hi")
	body, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(body))
	checkEnvelope(t, res, apierrors.CodeInvalidAPIKey)
	if bytes.Contains(body, []byte("sk-wrong")) || strings.Contains(logs.String(), "sk-wrong") {
		t.Fatal("the raw key appears in the response or the logs")
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Basic c2stZGVtby1wcm86")
	res, _ = http.DefaultClient.Do(req)
	checkEnvelope(t, res, apierrors.CodeMissingAPIKey)

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
	req.Header.Set("X-Api-Key", "sk-demo-free")
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("x-api-key: %d", res.StatusCode)
	}
	res, _ = http.Get(srv.URL + "/healthz")
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/healthz needs no key, got %d", res.StatusCode)
	}
}

func TestTierRestrictsModels(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), nil)
	env := checkEnvelope(t, chat(t, withKey("sk-demo-free"), srv.URL, "gk-large", "hi"), apierrors.CodeModelNotAllowed)
	if env.Error.Param == nil || *env.Error.Param != "model" {
		t.Fatalf("param %v", env.Error.Param)
	}
	res := chat(t, pro, srv.URL, "gk-large", "hi")
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("pro on gk-large: %d", res.StatusCode)
	}
}

func TestRequestLimitAnswers429WithHonestHints(t *testing.T) {
	clock := newFakeClock()
	srv := newLimitedProvider(t, clock, nil)
	free := withKey("sk-demo-free")
	for i := 1; i <= 10; i++ {
		res := chat(t, free, srv.URL, "gk-echo", "hi")
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
		if got := res.Header.Get("X-Ratelimit-Remaining-Requests"); got != strconv.Itoa(10-i) {
			t.Fatalf("request %d: remaining %q", i, got)
		}
		if res.Header.Get("X-Ratelimit-Limit-Requests") != "10" || res.Header.Get("X-Ratelimit-Limit-Tokens") != "10000" ||
			res.Header.Get("Ratelimit-Policy") != `"requests";q=10;w=60, "tokens";q=10000;w=60` {
			t.Fatalf("headers %v", res.Header)
		}
	}
	res := chat(t, free, srv.URL, "gk-echo", "hi")
	env := checkEnvelope(t, res, apierrors.CodeRateLimitExceeded)
	// 10 per minute: one request back every 6 s.
	if *env.Error.RetryAfter != 6 || res.Header.Get("Retry-After") != "6" || res.Header.Get("Retry-After-Ms") != "6000" ||
		res.Header.Get("X-Ratelimit-Remaining-Requests") != "0" || res.Header.Get("X-Ratelimit-Reset-Requests") != "1m0s" {
		t.Fatalf("429 hints: body %d, headers %v", *env.Error.RetryAfter, res.Header)
	}
	if !strings.Contains(env.Error.Message, "demo-free") || strings.Contains(env.Error.Message, "sk-demo") {
		t.Fatalf("message %q", env.Error.Message)
	}
	// Another key is not affected.
	res = chat(t, pro, srv.URL, "gk-echo", "hi")
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("pro after free's 429: %d", res.StatusCode)
	}
	// One millisecond early is still denied; on time is allowed.
	clock.Advance(6*time.Second - time.Millisecond)
	res = chat(t, free, srv.URL, "gk-echo", "hi")
	checkEnvelope(t, res, apierrors.CodeRateLimitExceeded)
	clock.Advance(time.Millisecond)
	res = chat(t, free, srv.URL, "gk-echo", "hi")
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", res.StatusCode)
	}
}

func TestKeyOverridesTierAndTierOverridesRoute(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), func(c *gatekit.Config) {
		c.Routes["GET /v1/models"] = gatekit.RouteConfig{LimitConfig: gatekit.LimitConfig{RPM: 2}}
		c.Tiers["pro"] = gatekit.TierConfig{Routes: map[string]gatekit.LimitConfig{"GET /v1/models": {RPM: 3}}}
		c.Keys = append(c.Keys, gatekit.KeyConfig{ID: "vip", Key: "sk-vip", Tier: "pro", LimitConfig: gatekit.LimitConfig{RPM: 5}})
	})
	for key, want := range map[string]string{"sk-demo-free": "2", "sk-demo-pro": "3", "sk-vip": "5"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
		res, err := withKey(key).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("X-Ratelimit-Limit-Requests"); got != want {
			t.Errorf("%s: limit %q, want %s", key, got, want)
		}
	}
}

func TestMetricsCountRefusalsByLimitNeverByKey(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := newLimitedProvider(t, newFakeClock(), func(c *gatekit.Config) { c.Metrics = reg })
	free := withKey("sk-demo-free")
	for range 11 {
		res := chat(t, free, srv.URL, "gk-echo", "hi")
		res.Body.Close()
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, f := range families {
		fmt.Fprintln(&text, f.String())
	}
	if strings.Contains(text.String(), "sk-demo") {
		t.Fatal("a raw key is a metric label")
	}
	if strings.Contains(text.String(), "demo-free") {
		t.Fatal("a principal is a metric label")
	}
	for _, want := range []string{`name:"gatekit_admission_refused_total"`, `value:"requests"`, `value:"/v1/chat/completions"`, `value:"POST"`, `counter:{value:1`,
		`name:"gatekit_admission_admitted_total"`, `counter:{value:10`} {
		if !strings.Contains(text.String(), want) {
			t.Fatalf("%s missing:\n%s", want, text.String())
		}
	}
}

// counterValue reads a counter by name and its single label value, or of
// a counter without labels when label is "".
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if (label == "" && len(m.GetLabel()) == 0) || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

func TestRateLimitWithoutPrincipalIsNotLimited(t *testing.T) {
	store, _ := admission.NewMemory(nil)
	mw, err := middleware.AdmissionConfig{Store: store, LimitsFor: func(echo.Context, *middleware.Principal) middleware.Limits {
		p := ratelimit.PerMinute(1)
		return middleware.Limits{Requests: &p}
	}}.ToMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(mw)
	e.GET("/", func(c echo.Context) error { return c.NoContent(204) })
	for range 3 {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 204 {
			t.Fatalf("%d", rec.Code)
		}
	}
}
