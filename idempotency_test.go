package gatekit_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/retry"
)

// idempotentConfig is billedConfig with Idempotency-Key honoured on
// /v1/work and a request limit, so replays can be seen not to count.
func idempotentConfig() gatekit.Config {
	cfg := billedConfig("1.00")
	cfg.Idempotency = gatekit.IdempotencyConfig{Routes: []string{"POST /v1/work"}}
	cfg.Routes = map[string]gatekit.RouteConfig{"POST /v1/work": {LimitConfig: gatekit.LimitConfig{RPM: 100}}}
	return cfg
}

func workWithKey(t *testing.T, client *http.Client, base, key, idemKey, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/work", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRetryAfterLostResponseIsChargedOnce: the first response is lost on
// the way back (a proxy answers 503 in its place); the retrying client
// sends the request again with the same Idempotency-Key and gets the kept
// response, charged once in the ledger and counted once by the limiter.
func TestRetryAfterLostResponseIsChargedOnce(t *testing.T) {
	srv, gate := billedServer(t, idempotentConfig(), nil)
	target, _ := url.Parse(srv.URL)
	upstream := httputil.NewSingleHostReverseProxy(target)
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if proxied.Add(1) == 1 {
			rec := httptest.NewRecorder()
			upstream.ServeHTTP(rec, r) // the work is done and billed...
			w.Header().Set("Retry-After-Ms", "1")
			w.WriteHeader(http.StatusServiceUnavailable) // ...but the answer is lost
			return
		}
		upstream.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	client := retry.NewClient(&retry.Config{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	res := workWithKey(t, client, proxy.URL, "sk-1", "", workBody(90)) // the transport adds the key
	body := readAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "true" || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("%d %v %s", res.StatusCode, res.Header, body)
	}
	if proxied.Load() != 2 {
		t.Fatalf("%d attempts through the proxy", proxied.Load())
	}
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Spent != 100 || b.Held != 0 {
		t.Fatalf("charged %v, want 100 once", b)
	}
	st, err := gate.Status(context.Background(), principal(t, gate, "sk-1"), http.MethodPost, "/v1/work")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests == nil || st.Requests.Remaining != 99 {
		t.Fatalf("limiter counted the replay: %+v", st.Requests)
	}
}

func principal(t *testing.T, gate *gatekit.Gate, key string) *middleware.Principal {
	t.Helper()
	p, ok, err := gate.Keys().Lookup(context.Background(), key)
	if err != nil || !ok {
		t.Fatalf("key %s: %v %v", key, ok, err)
	}
	return p
}

// onStores runs test on the idempotent config in memory, and on Redis,
// where the idempotency keys are kept by the admission store (claimed by
// the reserve script, ended by the settle script).
func onStores(t *testing.T, test func(t *testing.T, cfg gatekit.Config)) {
	t.Run("memory", func(t *testing.T) { test(t, idempotentConfig()) })
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		cfg := idempotentConfig()
		cfg.Store = redisStore(t, rs, rs.KeyPrefix(t), redistest.SlowTimeout)
		test(t, cfg)
	})
}

func TestConcurrentDuplicatesRunOnce(t *testing.T) { onStores(t, testConcurrentDuplicatesRunOnce) }

func testConcurrentDuplicatesRunOnce(t *testing.T, cfg gatekit.Config) {
	release := make(chan struct{})
	srv, gate := billedServer(t, cfg, release)
	body := `{"model":"m","max_tokens":5,"mode":"wait"}`
	first := make(chan *http.Response, 1)
	go func() { first <- workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "dup-1", body) }()
	waitFor(t, func() bool { return balance(t, gate.Store(), "key", "k1", 10_000).Held > 0 })

	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "dup-1", body)
			if res.StatusCode == http.StatusConflict && res.Header.Get("X-Should-Retry") == "true" && res.Header.Get("Retry-After") != "" {
				conflicts.Add(1)
			}
			readAll(t, res)
		}()
	}
	wg.Wait()
	close(release)
	res := <-first
	if res.StatusCode != 200 {
		t.Fatalf("first: %d %s", res.StatusCode, readAll(t, res))
	}
	readAll(t, res)
	if conflicts.Load() != 8 {
		t.Fatalf("%d of 8 duplicates got 409 idempotency_conflict", conflicts.Load())
	}
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "dup-1", body)
	if readAll(t, res); res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after completion: %d %v", res.StatusCode, res.Header)
	}
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Spent != 15 {
		t.Fatalf("spent %v, want one request's 15", b.Spent)
	}
}

func TestIdempotencyKeyMisuse(t *testing.T) { onStores(t, testIdempotencyKeyMisuse) }

func testIdempotencyKeyMisuse(t *testing.T, cfg gatekit.Config) {
	srv, gate := billedServer(t, cfg, nil)
	res := workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-a", workBody(10))
	readAll(t, res)
	checkEnvelope(t, workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-a", workBody(11)), apierrors.CodeIdempotencyMismatch)

	// Another principal with the same key and payload runs its own request.
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-2", "k-a", workBody(10))
	readAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("another principal got a replay: %d %v", res.StatusCode, res.Header)
	}
	if b := balance(t, gate.Store(), "key", "k2", 10_000); b.Spent != 20 {
		t.Fatalf("k2 spent %v", b.Spent)
	}

	env := checkEnvelope(t, workWithKey(t, http.DefaultClient, srv.URL, "sk-1", strings.Repeat("k", 256), workBody(10)), apierrors.CodeInvalidArgument)
	if *env.Error.Param != "Idempotency-Key" {
		t.Fatalf("param %q", *env.Error.Param)
	}

	// A request rejected before its handler ran is not kept: the client
	// fixes it and retries with the same key.
	checkEnvelope(t, workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-b", `{"model":"m","max_tokens":10,"typo":1}`), apierrors.CodeInvalidArgument)
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-b", workBody(10))
	if readAll(t, res); res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("fixed request: %d", res.StatusCode)
	}
	// A 5xx is not kept either: the retry runs.
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-c", `{"model":"m","max_tokens":5,"mode":"fail"}`)
	readAll(t, res)
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-c", `{"model":"m","max_tokens":5,"mode":"fail"}`)
	if readAll(t, res); res.StatusCode != 502 || res.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("a 5xx was replayed: %d %v", res.StatusCode, res.Header)
	}
	// Nor a handler that panicked; its reservation is settled all the
	// same.
	for range 2 {
		res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-d", `{"model":"m","max_tokens":5,"mode":"panic"}`)
		if readAll(t, res); res.StatusCode != 500 || res.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("a panic: %d %v", res.StatusCode, res.Header)
		}
	}
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Held != 0 {
		t.Fatalf("held %v after every request ended", b.Held)
	}
	// A request refused by admission (here its budget) claims no key: once
	// it fits, the same key runs.
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-e", workBody(20_000))
	if readAll(t, res); res.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("over budget: %d", res.StatusCode)
	}
	res = workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "k-e", workBody(5))
	if readAll(t, res); res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the refused request's key, once it fits: %d %v", res.StatusCode, res.Header)
	}
}

func TestStreamedResponsesReplayAsTheSameStream(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), nil)
	send := func() (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+chatURL, strings.NewReader(`{"model":"gk-echo","stream":true,"messages":[{"role":"user","content":"one two three"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "stream-1")
		res, err := pro.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res, readAll(t, res)
	}
	res1, first := send()
	res2, second := send()
	if res1.StatusCode != 200 || res2.Header.Get("Idempotent-Replayed") != "true" || first != second ||
		!strings.HasSuffix(first, "data: [DONE]\n\n") || !strings.HasPrefix(res2.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("replay differs:\n%s\n---\n%s", first, second)
	}
}

// TestAnthropicReplayCarriesItsOwnRequestID: on an Anthropic route a
// replay names its own request in request-id, the same id as X-Request-Id,
// and no rate-limit state of the first response.
func TestAnthropicReplayCarriesItsOwnRequestID(t *testing.T) {
	onStores(t, testAnthropicReplayCarriesItsOwnRequestID)
}

func testAnthropicReplayCarriesItsOwnRequestID(t *testing.T, cfg gatekit.Config) {
	cfg.Routes = map[string]gatekit.RouteConfig{"POST /v1/work": {Shape: apierrors.ShapeAnthropic, LimitConfig: gatekit.LimitConfig{RPM: 100}}}
	srv, _ := billedServer(t, cfg, nil)
	first := workWithKey(t, srv.Client(), srv.URL, "sk-1", "replay-1", workBody(5))
	readAll(t, first)
	second := workWithKey(t, srv.Client(), srv.URL, "sk-1", "replay-1", workBody(5))
	readAll(t, second)
	if second.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("second request was not replayed: %v", second.Header)
	}
	id, anthropicID := second.Header.Get(middleware.HeaderRequestID), second.Header.Get(apierrors.HeaderAnthropicRequestID)
	if id == "" || id == first.Header.Get(middleware.HeaderRequestID) || anthropicID != id {
		t.Errorf("replay's X-Request-Id %q, request-id %q; the first response's %q", id, anthropicID, first.Header.Get(middleware.HeaderRequestID))
	}
	if h := second.Header.Get("Anthropic-Ratelimit-Requests-Remaining"); h != "" {
		t.Errorf("replay repeats the first response's anthropic-ratelimit-requests-remaining: %q", h)
	}
	if first.Header.Get("Anthropic-Ratelimit-Requests-Remaining") == "" {
		t.Errorf("the first response carries no anthropic-ratelimit headers: %v", first.Header)
	}
}

// TestIdempotencyWithoutLimitsOnRedisSharesKeys: a key with no limit and
// no budget reserves nothing, yet on Redis its idempotency key is claimed
// and ended by the admission store, one script each, and replayed by
// another instance.
func TestIdempotencyWithoutLimitsOnRedisSharesKeys(t *testing.T) {
	rs := redistest.Start(t)
	prefix := rs.KeyPrefix(t)
	var servers []string
	for range 2 {
		cfg := gatekit.Config{
			Logger:      discardLogger(),
			Keys:        []gatekit.KeyConfig{{ID: "k1", Key: "sk-1", Account: "acme"}},
			Idempotency: gatekit.IdempotencyConfig{Routes: []string{"POST /v1/work"}},
			Store:       redisStore(t, rs, prefix, redistest.SlowTimeout),
		}
		srv, _ := billedServer(t, cfg, nil)
		servers = append(servers, srv.URL)
	}
	admin := rs.Client(t)
	if err := admin.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	first := workWithKey(t, http.DefaultClient, servers[0], "sk-1", "free-1", workBody(5))
	firstBody := readAll(t, first)
	if first.StatusCode != 200 {
		t.Fatalf("first: %d %s", first.StatusCode, firstBody)
	}
	if n := scriptRuns(t, admin); n != 2 {
		t.Errorf("%d scripts, want 2: the key's claim and its end", n)
	}
	second := workWithKey(t, http.DefaultClient, servers[1], "sk-1", "free-1", workBody(5))
	if body := readAll(t, second); second.StatusCode != 200 || second.Header.Get("Idempotent-Replayed") != "true" || body != firstBody {
		t.Fatalf("other instance: %d %v %s", second.StatusCode, second.Header, body)
	}
	if res := workWithKey(t, http.DefaultClient, servers[1], "sk-1", "free-1", workBody(6)); res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("another payload with the key: %d %s", res.StatusCode, readAll(t, res))
	}
}

// TestSettlingAtShutdownFreesTheIdempotencyKey: a request still running
// when the service settles what is in flight (the end of a shutdown's
// grace) has its reservation settled and its key freed, so the client's
// retry, on an instance that stays, runs instead of meeting a 409 for the
// length of the lease.
func TestSettlingAtShutdownFreesTheIdempotencyKey(t *testing.T) {
	rs := redistest.Start(t)
	cfg := idempotentConfig()
	cfg.Store = redisStore(t, rs, rs.KeyPrefix(t), redistest.SlowTimeout)
	release := make(chan struct{})
	srv, gate := billedServer(t, cfg, release)
	body := `{"model":"m","max_tokens":5,"mode":"wait"}`
	first := make(chan *http.Response, 1)
	go func() { first <- workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "shutdown-1", body) }()
	waitFor(t, func() bool { return gate.InFlight() == 1 })

	if res := workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "shutdown-1", body); res.StatusCode != http.StatusConflict {
		t.Fatalf("a duplicate while the first runs: %d, want 409", res.StatusCode)
	}
	if n := gate.SettleInFlight(); n != 1 {
		t.Fatalf("settled %d requests in flight, want 1", n)
	}
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Held != 0 {
		t.Fatalf("held %v after the settlement", b.Held)
	}
	close(release)
	retry := workWithKey(t, http.DefaultClient, srv.URL, "sk-1", "shutdown-1", body)
	if readAll(t, retry); retry.StatusCode != 200 || retry.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the retry after the settlement: %d %v, want 200, run again", retry.StatusCode, retry.Header)
	}
	res := <-first
	readAll(t, res)
}
