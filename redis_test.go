package gatekit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/examples/provider/app"
	"github.com/gatekit/gatekit/internal/redistest"
)

// redisCluster is this package's Redis Cluster (3 masters, 3 replicas),
// started by the first test that needs it and stopped by TestMain.
var redisCluster = redistest.NewCluster()

func TestMain(m *testing.M) {
	code := m.Run()
	redisCluster.Close()
	os.Exit(code)
}

// redisStore is an admission store on srv under prefix, one client of its
// own, as each instance of a service has.
func redisStore(t *testing.T, srv *redistest.Server, prefix string, timeout time.Duration) *redisstore.Store {
	t.Helper()
	return redisStoreOn(t, srv.Client(t), prefix, timeout)
}

// redisStoreOn is an admission store on client under prefix.
func redisStoreOn(t *testing.T, client redis.UniversalClient, prefix string, timeout time.Duration) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(client, &redisstore.Config{Prefix: prefix, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// redisProviders serves the demo API from n Echo instances, each with its
// own Redis client, sharing limits through srv.
func redisProviders(t *testing.T, srv *redistest.Server, n int, mutate func(*gatekit.Config)) []*httptest.Server {
	t.Helper()
	prefix := srv.KeyPrefix(t)
	var out []*httptest.Server
	for range n {
		cfg := demoConfig(t)
		cfg.Logger = discardLogger()
		cfg.Store = redisStore(t, srv, prefix, 200*time.Millisecond)
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

// 1,000 concurrent requests spread over 3 Echo instances sharing one
// redis-server, or the Redis Cluster through a ClusterClient each, whose
// reservations total three times the account's budget, three times a
// token limit and far more than a max_parallel of 8, with every handler
// reporting ten times its allowance: no cap is exceeded.
func TestConcurrentRequestsNeverExceedAnyCapAcrossRedisInstances(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		rs := redistest.Start(t)
		neverExceedAnyCap(t, rs.KeyPrefix(t), func() redis.UniversalClient { return rs.Client(t) })
	})
	t.Run("cluster", func(t *testing.T) {
		neverExceedAnyCap(t, redisCluster.KeyPrefix(t), func() redis.UniversalClient { return redisCluster.Client(t) })
	})
}

func neverExceedAnyCap(t *testing.T, prefix string, newClient func() redis.UniversalClient) {
	var urls []string
	var gauges []*handlerGauge
	// Every handler of the three instances, counted together: exact, as
	// they run in this process.
	all := &handlerGauge{}
	var store admission.Store
	for range 3 {
		cfg := billedConfig("0.006667")
		cfg.Keys[0].Budget.Limit = gatekit.Money(budget.Dollar)
		cfg.Routes = map[string]gatekit.RouteConfig{"POST /v1/work": {LimitConfig: gatekit.LimitConfig{TPM: 6_667, MaxParallel: 8}}}
		store = redisStoreOn(t, newClient(), prefix, 2*time.Second)
		cfg.Store = store
		g := &handlerGauge{also: all}
		srv, _ := billedServerCounting(t, cfg, nil, g)
		urls = append(urls, srv.URL)
		gauges = append(gauges, g)
	}
	start := time.Now()
	var ok, refused, parallel atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 48)
	for i := range 1000 {
		wg.Add(1)
		go func(url string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			for range 500 {
				res := work(t, url, "sk-1", `{"model":"m","max_tokens":10,"mode":"overrun-slow"}`)
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var env envelope
				_ = json.Unmarshal(body, &env)
				switch {
				case res.StatusCode == 200:
					ok.Add(1)
				case env.Error.Code == string(apierrors.CodeConcurrencyExceeded):
					parallel.Add(1)
					continue
				case res.StatusCode == 402 || res.StatusCode == 429:
					refused.Add(1)
				default:
					t.Errorf("status %d: %s", res.StatusCode, body)
				}
				return
			}
		}(urls[i%3])
	}
	wg.Wait()
	elapsed := time.Since(start)
	a := balance(t, store, "account", "acme", 6_667)
	if a.Spent > 6_667 || a.Spent != budget.Micros(ok.Load())*20 || a.Held != 0 {
		t.Fatalf("account %+v after %d ok, %d refused", a, ok.Load(), refused.Load())
	}
	refill := int64(elapsed.Seconds()*6_667/60) + 1
	if got := ok.Load() * 20; got > 6_667+refill {
		t.Fatalf("%d tokens charged of 6,667 (+%d refilled)", got, refill)
	}
	for i, g := range gauges {
		if g.most.Load() > 8 {
			t.Fatalf("instance %d ran %d handlers at once", i, g.most.Load())
		}
	}
	if all.most.Load() > 8 {
		t.Fatalf("%d handlers ran at once across the instances, max_parallel 8", all.most.Load())
	}
	// Each claim was refused in its turn: the budget and the tokens, and
	// the slots, by requests that then tried again.
	if ok.Load() == 0 || refused.Load() == 0 || parallel.Load() == 0 {
		t.Fatalf("%d ok, %d refused for the budget or the tokens, %d for the slots", ok.Load(), refused.Load(), parallel.Load())
	}
	t.Logf("%d ok, %d refused, %d refused a slot and tried again, at most %d at once, in %v",
		ok.Load(), refused.Load(), parallel.Load(), all.most.Load(), elapsed)
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
	bound := 20 + int64(float64(rpm)/60*elapsed.Seconds()) + 1
	if allowed.Load() > bound || allowed.Load() < 20 || denied.Load() == 0 {
		t.Fatalf("allowed %d (denied %d) in %v; bound %d", allowed.Load(), denied.Load(), elapsed, bound)
	}
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
				c.Admission.Fail = mode
				c.Tiers["pro"] = gatekit.TierConfig{LimitConfig: gatekit.LimitConfig{RPM: 1000}}
			})[0]
			chat := func() (*http.Response, time.Duration) {
				start := time.Now()
				res, err := pro.Post(srv.URL+chatURL, "application/json", bytes.NewReader([]byte(`{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				return res, time.Since(start)
			}
			if res, _ := chat(); res.StatusCode != 200 {
				t.Fatalf("before: %d", res.StatusCode)
			}
			if err := rs.Stop(); err != nil {
				t.Fatal(err)
			}
			res, took := chat()
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
			var ok bool
			for range 50 {
				res, _ = chat()
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

// TestRedisDownAtStartWarnsAndIsNotReady: a service mounted while its Redis
// is down logs a warning at Mount, its Gate.Ready names the store that does
// not answer, and becomes ready once Redis is back; a gate on memory stores
// is always ready.
func TestRedisDownAtStartWarnsAndIsNotReady(t *testing.T) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cfg := demoConfig(t)
	cfg.Logger = newLogger(&logs)
	cfg.Store = redisStoreOn(t, client, rs.KeyPrefix(t), redistest.OutageTimeout)
	_, gate, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "admission store not answering at start") {
		t.Fatalf("no warning at Mount with Redis down; logs:\n%s", logs.String())
	}
	err = redistest.FailsFastWhileStopped(t, "Ready", redistest.OutageTimeout, func() error { return gate.Ready(context.Background()) })
	if nr, ok := errors.AsType[*gatekit.NotReadyError](err); !ok || nr.Store != "admission" {
		t.Fatalf("Ready: %v, want a NotReadyError of the admission store", err)
	}
	rs.RestartAndRetry(t, func() error { return gate.Ready(context.Background()) })

	_, memGate, err := app.New(demoConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := memGate.Ready(context.Background()); err != nil {
		t.Fatalf("Ready on memory stores: %v", err)
	}
}

// TestClusterFailoverKeepsAnswering serves the demo on the Redis Cluster
// and, under load, kills the master of an account's slot, then lets its
// replica take over: every request is answered within the store's timeout
// (503 service_unavailable while failing closed, 200 unlimited while
// failing open), and the account is limited again once the replica is
// master. One cluster serves both modes, on accounts of different masters.
func TestClusterFailoverKeepsAnswering(t *testing.T) {
	cl := redistest.StartCluster(t)
	var dead []string
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			var account string
			var sh redistest.Shard
			for i := 0; account == ""; i++ {
				a := fmt.Sprintf("acct%d", i)
				if s := cl.ShardOf(t, "{"+a+"}"); s.Replica != "" && !slices.Contains(dead, s.Master) {
					account, sh = a, s
				}
			}
			dead = append(dead, sh.Master)
			const timeout = 200 * time.Millisecond
			cfg := demoConfig(t)
			cfg.Logger = discardLogger()
			cfg.Admission.Fail = mode
			cfg.Tiers["failover"] = gatekit.TierConfig{
				Routes: map[string]gatekit.LimitConfig{"POST " + chatURL: {RPM: 1_000_000, TPM: 1_000_000_000, MaxParallel: 100}},
				Budget: &gatekit.BudgetConfig{Limit: gatekit.Money(1000 * budget.Dollar), Period: "monthly"},
			}
			cfg.Keys = append(cfg.Keys, gatekit.KeyConfig{ID: "fo-" + account, Key: "sk-fo-" + account, Account: account, Tier: "failover"})
			cfg.Store = redisStoreOn(t, cl.Client(t), cl.KeyPrefix(t), timeout)
			e, _, err := app.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(e)
			t.Cleanup(srv.Close)
			client := &http.Client{Transport: keyTransport("sk-fo-" + account)}

			var phase atomic.Int32 // 0 before the kill, 1 until the takeover, 2 after
			var counts [3][2]atomic.Int64
			var slowest atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						p := phase.Load()
						start := time.Now()
						res, err := client.Post(srv.URL+chatURL, "application/json", strings.NewReader(`{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
						if err != nil {
							t.Error(err)
							return
						}
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
						took := time.Since(start)
						for m := slowest.Load(); int64(took) > m && !slowest.CompareAndSwap(m, int64(took)); m = slowest.Load() {
						}
						if took > 2*timeout+redistest.Slack {
							t.Logf("phase %d: status %d after %v", p, res.StatusCode, took)
						}
						limited := res.Header.Get("X-Ratelimit-Limit-Requests") != ""
						switch {
						case res.StatusCode == 200 && limited:
							counts[p][0].Add(1)
						case mode == "closed" && res.StatusCode == 503 && res.Header.Get("Retry-After") != "",
							mode == "open" && res.StatusCode == 200:
							counts[p][1].Add(1)
						default:
							t.Errorf("phase %d: status %d, headers %v", p, res.StatusCode, res.Header)
							return
						}
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			cl.Kill(t, sh.Master)
			phase.Store(1)
			time.Sleep(300 * time.Millisecond) // requests meet the dead master
			took := cl.Failover(t, sh.Replica, 15*time.Second)
			phase.Store(2)
			for deadline := time.Now().Add(10 * time.Second); counts[2][0].Load() < 50 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			t.Logf("fail %s: limited/failing %s before the kill %d/%d, until the takeover %d/%d, after %d/%d; slowest %v; takeover %v",
				mode, mode, counts[0][0].Load(), counts[0][1].Load(), counts[1][0].Load(), counts[1][1].Load(),
				counts[2][0].Load(), counts[2][1].Load(), time.Duration(slowest.Load()).Round(time.Millisecond), took.Round(time.Millisecond))
			if counts[0][0].Load() == 0 || counts[1][1].Load() == 0 || counts[2][0].Load() < 50 {
				t.Errorf("want limited answers before the kill, failing %s ones after it, and limited ones again after the takeover", mode)
			}
			// The store's timeout, twice at most (reserve, then settle),
			// and scheduling slack.
			if d := time.Duration(slowest.Load()); d > 2*timeout+redistest.Slack {
				t.Errorf("a request took %v, store timeout %v", d, timeout)
			}
		})
	}
}

// TestIdempotentRequestOnRedisRunsTwoScriptsAndReplaysOnAnotherInstance:
// with the admission store on Redis and no IdempotencyStore set, an
// idempotent request runs one script before its handler and one after it,
// as any other request, and its response is replayed by another instance,
// uncharged.
func TestIdempotentRequestOnRedisRunsTwoScriptsAndReplaysOnAnotherInstance(t *testing.T) {
	rs := redistest.Start(t)
	providers := redisProviders(t, rs, 2, nil)
	admin := rs.Client(t)
	body := `{"model":"gk-echo","max_tokens":8,"messages":[{"role":"user","content":"one two three"}]}`
	post := func(url string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "order-7")
		res, err := (&http.Client{Transport: keyTransport("sk-demo-pro")}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	if err := admin.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	first, firstBody := post(providers[0].URL)
	if first.StatusCode != 200 {
		t.Fatalf("first: %d %s", first.StatusCode, firstBody)
	}
	if n := scriptRuns(t, admin); n != 2 {
		t.Errorf("the idempotent request ran %d scripts, want 2 (reserve with the key's claim, settle with its end)", n)
	}
	usage := func() string {
		res, err := (&http.Client{Transport: keyTransport("sk-demo-pro")}).Get(providers[1].URL + "/v1/key")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		// What the requests used, without the times that pass.
		return regexp.MustCompile(`"resets_in":"[^"]*"`).ReplaceAllString(string(b), "")
	}
	before := usage()
	second, secondBody := post(providers[1].URL)
	if second.StatusCode != 200 || second.Header.Get("Idempotent-Replayed") != "true" || secondBody != firstBody {
		t.Fatalf("the other instance answered %d (replayed %q) %s, want the first response %s",
			second.StatusCode, second.Header.Get("Idempotent-Replayed"), secondBody, firstBody)
	}
	if after := usage(); after != before {
		t.Errorf("the replay was charged: usage %s, then %s", before, after)
	}
}

// scriptRuns returns how many scripts the Redis server behind client ran
// since its statistics were last reset, from INFO commandstats: FCALL,
// EVALSHA and EVAL calls, less those that failed (a call of a function or
// script not yet loaded, which the store loads and calls again).
func scriptRuns(t *testing.T, client redis.UniversalClient) int {
	t.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_fcall:", "cmdstat_evalsha:", "cmdstat_eval:"} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				var calls, rejected, failed int
				var usec, perCall float64
				if _, err := fmt.Sscanf(rest, "calls=%d,usec=%g,usec_per_call=%g,rejected_calls=%d,failed_calls=%d",
					&calls, &usec, &perCall, &rejected, &failed); err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				n += calls - failed
			}
		}
	}
	return n
}

// TestIdempotentRequestDuringARedisOutage: with the keys kept by the
// admission store, an idempotent request runs while Redis is down only if
// both admission and idempotency fail open; otherwise it is 503,
// retryable, within the timeout.
func TestIdempotentRequestDuringARedisOutage(t *testing.T) {
	for _, tc := range []struct {
		admission, idempotency string
		want                   int
	}{{"closed", "closed", 503}, {"open", "closed", 503}, {"closed", "open", 503}, {"open", "open", 200}} {
		t.Run(tc.admission+"/"+tc.idempotency, func(t *testing.T) {
			rs := redistest.Start(t)
			srv := redisProviders(t, rs, 1, func(c *gatekit.Config) {
				c.Admission.Fail, c.Idempotency.Fail = tc.admission, tc.idempotency
			})[0]
			if err := rs.Stop(); err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+chatURL, strings.NewReader(`{"model":"gk-echo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "outage-1")
			start := time.Now()
			res, err := pro.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("took %v with Redis down", took)
			}
			if res.StatusCode != tc.want || (tc.want == 503 && res.Header.Get("X-Should-Retry") != "true") {
				t.Fatalf("with Redis down: %d %v, want %d", res.StatusCode, res.Header, tc.want)
			}
		})
	}
}
