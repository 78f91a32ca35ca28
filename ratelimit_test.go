package gatekit_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
	"github.com/gatekit/gatekit/ratelimit/redisstore"
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
	lim, err := ratelimit.NewMemory(&ratelimit.MemoryConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Limiter = lim
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

func TestTokenLimitChargesReportedUsage(t *testing.T) {
	clock := newFakeClock()
	srv := newLimitedProvider(t, clock, func(c *gatekit.Config) {
		c.Tiers["free"] = gatekit.TierConfig{Models: []string{"gk-echo"}, LimitConfig: gatekit.LimitConfig{RPM: 1000, TPM: 100}}
	})
	free := withKey("sk-demo-free")
	words := strings.TrimSpace(strings.Repeat("w ", 30)) // 30 prompt + 30 completion tokens
	res := chat(t, free, srv.URL, "gk-echo", words)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Ratelimit-Remaining-Tokens") != "100" {
		t.Fatalf("first: %d %v", res.StatusCode, res.Header)
	}
	res = chat(t, free, srv.URL, "gk-echo", words) // 40 left before it; 60 charged after: debt of 20
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Ratelimit-Remaining-Tokens") != "40" {
		t.Fatalf("second: %d %v", res.StatusCode, res.Header.Get("X-Ratelimit-Remaining-Tokens"))
	}
	res = chat(t, free, srv.URL, "gk-echo", "hi")
	env := checkEnvelope(t, res, apierrors.CodeTokensExceeded)
	// 20 tokens in debt + 1 to be allowed, at 100 per minute: 12.6 s, rounded up.
	if *env.Error.RetryAfter != 13 || res.Header.Get("Retry-After-Ms") != "12600" {
		t.Fatalf("tokens 429: %d, %v", *env.Error.RetryAfter, res.Header)
	}
	clock.Advance(12600 * time.Millisecond)
	res = chat(t, free, srv.URL, "gk-echo", "hi")
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("after the debt: %d", res.StatusCode)
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

func TestMetricsCountDecisionsByPrincipalNeverKey(t *testing.T) {
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
	if n := counterValue(t, reg, "gatekit_ratelimit_denied_by_principal_total", "demo-free"); n != 1 {
		t.Fatalf("denied for demo-free = %v", n)
	}
	if !strings.Contains(text.String(), `value:"denied"`) || !strings.Contains(text.String(), `value:"/v1/chat/completions"`) || !strings.Contains(text.String(), `value:"POST"`) {
		t.Fatalf("decision labels missing:\n%s", text.String())
	}
}

// counterValue reads a counter by name and its single label value.
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
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// redisProviders serves the demo API from n Echo instances, each with its
// own Redis client, sharing limits through srv.
func redisProviders(t *testing.T, srv *redistest.Server, n int, mutate func(*gatekit.Config)) []*httptest.Server {
	t.Helper()
	prefix := srv.KeyPrefix(t)
	var out []*httptest.Server
	for range n {
		store, err := redisstore.New(srv.Client(t), &redisstore.Config{Prefix: prefix, Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		cfg := demoConfig(t)
		cfg.Logger = discardLogger()
		cfg.Limiter = store
		if mutate != nil {
			mutate(&cfg)
		}
		e, _, err := app.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewServer(e)
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

// TestRedisLimitsHoldAcrossEchoInstances: 3 Echo instances x 32 goroutines
// on one redis-server allow no more than burst + rate x elapsed.
func TestRedisLimitsHoldAcrossEchoInstances(t *testing.T) {
	rs := redistest.Start(t)
	const rpm = 600 // 10 per second, with a burst of 20
	providers := redisProviders(t, rs, 3, func(c *gatekit.Config) {
		c.Tiers["pro"] = gatekit.TierConfig{LimitConfig: gatekit.LimitConfig{RPM: rpm, RPMBurst: 20}}
	})
	var allowed, denied atomic.Int64
	start := time.Now()
	deadline := start.Add(700 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 3 * 32 {
		wg.Add(1)
		go func(url string) {
			defer wg.Done()
			client := &http.Client{Transport: keyTransport("sk-demo-pro")}
			for time.Now().Before(deadline) {
				res, err := client.Get(url + "/v1/models")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case 200:
					allowed.Add(1)
				case 429:
					denied.Add(1)
				default:
					t.Errorf("status %d", res.StatusCode)
					return
				}
			}
		}(providers[i%3].URL)
	}
	wg.Wait()
	elapsed := time.Since(start)
	// The bound uses the longest the window could have been open.
	bound := 20 + int64(float64(rpm)/60*elapsed.Seconds()) + 1
	if allowed.Load() > bound || allowed.Load() < 20 || denied.Load() == 0 {
		t.Fatalf("allowed %d (denied %d) in %v; bound %d", allowed.Load(), denied.Load(), elapsed, bound)
	}
	t.Logf("allowed %d, denied %d in %v (bound %d)", allowed.Load(), denied.Load(), elapsed, bound)
}

// TestRedisDeniedFloodCostsNoStoreCalls: once a principal is denied, its
// further requests are answered from the remembered denial, with the hints
// counted down, until the store could answer otherwise: a flood of 429s
// does not reach Redis.
func TestRedisDeniedFloodCostsNoStoreCalls(t *testing.T) {
	rs := redistest.Start(t)
	providers := redisProviders(t, rs, 1, func(c *gatekit.Config) {
		c.Tiers["pro"] = gatekit.TierConfig{LimitConfig: gatekit.LimitConfig{RPM: 1}}
	})
	client := &http.Client{Transport: keyTransport("sk-demo-pro")}
	get := func() *http.Response {
		res, err := client.Get(providers[0].URL + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	if res := get(); res.StatusCode != 200 {
		t.Fatalf("first request: %d", res.StatusCode)
	}
	before := scriptCalls(t, rs)
	const flood = 200
	lastMs := int64(60_001)
	for i := range flood {
		res := get()
		if res.StatusCode != 429 {
			t.Fatalf("request %d of the flood: %d", i, res.StatusCode)
		}
		ms, err := strconv.ParseInt(res.Header.Get("Retry-After-Ms"), 10, 64)
		if err != nil || ms <= 0 || ms > lastMs || res.Header.Get("Retry-After") != strconv.FormatInt((ms+999)/1000, 10) {
			t.Fatalf("request %d: Retry-After %q, Retry-After-Ms %q after %d", i, res.Header.Get("Retry-After"), res.Header.Get("Retry-After-Ms"), lastMs)
		}
		lastMs = ms
	}
	// The first two denials ask the store (the second is timed); the rest
	// are remembered.
	if calls := scriptCalls(t, rs) - before; calls > 2 {
		t.Fatalf("%d denied requests made %d script calls, want at most 2", flood, calls)
	}
}

// scriptCalls is how many EVAL and EVALSHA calls rs has served.
func scriptCalls(t *testing.T, rs *redistest.Server) int64 {
	t.Helper()
	info, err := rs.Client(t).Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || (name != "cmdstat_eval" && name != "cmdstat_evalsha") {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		total += v
	}
	return total
}

// TestRedisOutageFailsClosedOrOpenWithinTheTimeout stops redis-server under
// a running service: requests keep answering within the store timeout (503
// when failing closed, 200 unlimited when failing open) and limiting resumes
// when Redis is back.
func TestRedisOutageFailsClosedOrOpenWithinTheTimeout(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			rs := redistest.Start(t)
			srv := redisProviders(t, rs, 1, func(c *gatekit.Config) {
				c.RateLimit.Fail = mode
				c.Tiers["pro"] = gatekit.TierConfig{LimitConfig: gatekit.LimitConfig{RPM: 1000}}
			})[0]
			get := func() (*http.Response, time.Duration) {
				start := time.Now()
				res, err := pro.Get(srv.URL + "/v1/models")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				return res, time.Since(start)
			}
			if res, _ := get(); res.StatusCode != 200 {
				t.Fatalf("before: %d", res.StatusCode)
			}
			if err := rs.Stop(); err != nil {
				t.Fatal(err)
			}
			res, took := get()
			if took > 2*time.Second {
				t.Fatalf("request took %v with Redis down", took)
			}
			want := map[string]int{"closed": 503, "open": 200}[mode]
			if res.StatusCode != want {
				t.Fatalf("with Redis down: %d, want %d", res.StatusCode, want)
			}
			if mode == "closed" && (res.Header.Get("Retry-After") == "" || res.Header.Get("X-Should-Retry") != "true") {
				t.Fatalf("503 without retry hints: %v", res.Header)
			}
			if err := rs.Restart(); err != nil {
				t.Fatal(err)
			}
			// Limiting resumes: the limit headers come back.
			var ok bool
			for range 50 {
				res, _ = get()
				if res.StatusCode == 200 && res.Header.Get("X-Ratelimit-Limit-Requests") != "" {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("limiting did not resume: %d %v", res.StatusCode, res.Header)
			}
		})
	}
}

func TestRateLimitWithoutPrincipalIsNotLimited(t *testing.T) {
	lim, _ := ratelimit.NewMemory(nil)
	mw, err := middleware.RateLimitConfig{Limiter: lim, LimitsFor: func(echo.Context, *middleware.Principal) middleware.Limits {
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
