package gatekit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// chatWith posts a chat completion with content and, when maxTokens > 0,
// max_tokens.
func chatWith(t *testing.T, client *http.Client, url, model, content string, maxTokens int64) *http.Response {
	t.Helper()
	body := map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": content}}}
	if maxTokens > 0 {
		body["max_tokens"] = maxTokens
	}
	raw, _ := json.Marshal(body)
	res, err := client.Post(url+chatURL, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// promptBytes is what the default estimate counts for a chat request
// with content: the bytes of its messages array.
func promptBytes(content string) int64 {
	raw, _ := json.Marshal([]map[string]string{{"role": "user", "content": content}})
	return int64(len(raw))
}

// checkNeverFits asserts a refusal that no retry can cure: code, no
// retry hint, x-should-retry false.
func checkNeverFits(t *testing.T, res *http.Response, status int, code apierrors.Code) envelope {
	t.Helper()
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("not an envelope: %s", body)
	}
	if res.StatusCode != status || env.Error.Code != string(code) {
		t.Fatalf("%d %s, want %d %s: %s", res.StatusCode, env.Error.Code, status, code, body)
	}
	if res.Header.Get("X-Should-Retry") != "false" || res.Header.Get("Retry-After") != "" || env.Error.RetryAfter != nil {
		t.Fatalf("a request that can never fit is told to retry: %v %s", res.Header, body)
	}
	if len(body) > 2048 {
		t.Fatalf("a %d-byte error body", len(body))
	}
	return env
}

func keyStatus(t *testing.T, url, key string) gatekit.KeyStatus {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/key", nil)
	res, err := withKey(key).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st gatekit.KeyStatus
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// A 900 KB prompt on the free key (10,000 TPM, 1.00 USD a month): its
// prompt alone can never fit the token limit, so it is refused before it
// runs, as not retryable, and nothing is spent.
func TestOversizedPromptIsRefusedAndSpendStaysWithinTheBudget(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), func(c *gatekit.Config) {
		c.Routes["POST /v1/chat/completions"] = gatekit.RouteConfig{BodyLimit: 2 << 20}
	})
	big := strings.Repeat("word ", 180_000) // 900 KB
	env := checkNeverFits(t, chatWith(t, withKey("sk-demo-free"), srv.URL, "gk-echo", big, 0), 429, apierrors.CodeTokensExceeded)
	if !strings.Contains(env.Error.Message, "Request too large") || !strings.Contains(env.Error.Message, "limit 10000 per minute") {
		t.Fatalf("message %q", env.Error.Message)
	}
	// With max_tokens too.
	checkNeverFits(t, chatWith(t, withKey("sk-demo-free"), srv.URL, "gk-echo", big, 10), 429, apierrors.CodeTokensExceeded)
	st := keyStatus(t, srv.URL, "sk-demo-free")
	if st.Budgets[0].Spent != "0.00" || st.Budgets[0].Held != "0.00" || st.Tokens.Remaining != 10_000 {
		t.Fatalf("after the refusals: %+v %+v", st.Budgets[0], st.Tokens)
	}
	// The same prompt on the pro key (1M TPM, 100 USD) fits, and is
	// charged within its reservation.
	res := chatWith(t, pro, srv.URL, "gk-echo", big, 0)
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("pro: %d", res.StatusCode)
	}
}

// max_tokens of 2^49 or 2^62 can never fit a token limit or a budget: 4xx,
// not retryable, never a 5xx.
func TestHugeMaxTokensIsRefusedAsNotRetryable(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), nil)
	for _, n := range []int64{562949953421311, 1 << 62} {
		env := checkNeverFits(t, chatWith(t, withKey("sk-demo-free"), srv.URL, "gk-echo", "hi", n), 429, apierrors.CodeTokensExceeded)
		if !strings.Contains(env.Error.Message, strconv.FormatInt(n, 10)) {
			t.Fatalf("message %q does not say what was asked", env.Error.Message)
		}
	}
	// A key with a budget and no token limit: 402, also not retryable.
	srv = newLimitedProvider(t, newFakeClock(), func(c *gatekit.Config) {
		c.Tiers["free"] = gatekit.TierConfig{Budget: &gatekit.BudgetConfig{Limit: mustMoney("1.00")}}
	})
	checkNeverFits(t, chatWith(t, withKey("sk-demo-free"), srv.URL, "gk-echo", "hi", 1<<62), 402, apierrors.CodeBudgetExceeded)
}

// The token limit reserves the prompt estimate plus the allowance before
// the handler, and gives back what the handler did not use.
func TestTokenLimitReservesPromptPlusAllowanceAndRefundsTheRest(t *testing.T) {
	clock := newFakeClock()
	srv := newLimitedProvider(t, clock, func(c *gatekit.Config) {
		c.Tiers["free"] = gatekit.TierConfig{Models: []string{"gk-echo"}, LimitConfig: gatekit.LimitConfig{RPM: 1000, TPM: 1000}}
	})
	free := withKey("sk-demo-free")
	words := strings.TrimSpace(strings.Repeat("w ", 30)) // uses 30 prompt + 30 completion tokens
	p := promptBytes(words)
	res := chatWith(t, free, srv.URL, "gk-echo", words, 100)
	readAll(t, res)
	if got := res.Header.Get("X-Ratelimit-Remaining-Tokens"); res.StatusCode != 200 || got != strconv.FormatInt(1000-p-100, 10) {
		t.Fatalf("first: %d, remaining %s, want %d", res.StatusCode, got, 1000-p-100)
	}
	// Settled to the 60 used: the next sees 1000 - 60 before its own.
	res = chatWith(t, free, srv.URL, "gk-echo", words, 100)
	readAll(t, res)
	if got := res.Header.Get("X-Ratelimit-Remaining-Tokens"); got != strconv.FormatInt(1000-60-p-100, 10) {
		t.Fatalf("second: remaining %s, want %d", got, 1000-60-p-100)
	}
	// 880 left: a request for 900 more is refused, retryable, with the
	// exact wait for 20 tokens at 1000 a minute (1.2 s, rounded up).
	res = chatWith(t, free, srv.URL, "gk-echo", words, 900-p)
	env := checkEnvelope(t, res, apierrors.CodeTokensExceeded)
	if *env.Error.RetryAfter != 2 || res.Header.Get("Retry-After-Ms") != "1200" {
		t.Fatalf("tokens 429: %d, %v", *env.Error.RetryAfter, res.Header)
	}
	clock.Advance(1200 * time.Millisecond)
	res = chatWith(t, free, srv.URL, "gk-echo", words, 900-p)
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("after the wait: %d", res.StatusCode)
	}
}

// A request without max_tokens is given the default allowance, lowered to
// the room its limits have, and the demo model stops there.
func TestDefaultAllowanceShrinksToTheRoomLeft(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), func(c *gatekit.Config) {
		c.Tiers["free"] = gatekit.TierConfig{Models: []string{"gk-echo"}, LimitConfig: gatekit.LimitConfig{TPM: 1000}}
	})
	// 400 words: about 830 bytes of prompt, leaving about 170 tokens of the
	// burst for the output instead of the default 1000.
	words := strings.TrimSpace(strings.Repeat("w ", 400))
	room := 1000 - promptBytes(words)
	res := chatWith(t, withKey("sk-demo-free"), srv.URL, "gk-echo", words, 0)
	var out struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if n := int64(len(strings.Fields(out.Choices[0].Message.Content))); res.StatusCode != 200 || n != room || out.Choices[0].FinishReason != "length" {
		t.Fatalf("%d: %d words, finish %q; want %d and length", res.StatusCode, n, out.Choices[0].FinishReason, room)
	}
}

// overrunConfig is billedConfig with a token limit on the route.
func overrunConfig(tpm int64) gatekit.Config {
	cfg := billedConfig("1.00")
	cfg.Routes = map[string]gatekit.RouteConfig{"POST /v1/work": {LimitConfig: gatekit.LimitConfig{TPM: tpm}}}
	return cfg
}

// A handler that reports ten times its allowance is charged only its
// reservation, in every cap, and the excess is reported: to OnSettle, as
// a metric and in one WARN line.
func TestHandlerReportingTenTimesItsAllowanceLeavesEveryCapExact(t *testing.T) {
	var logs bytes.Buffer
	var settled []middleware.Settlement
	var mu sync.Mutex
	cfg := overrunConfig(10_000)
	cfg.Logger = newLogger(&logs)
	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	cfg.OnSettle = func(_ context.Context, s middleware.Settlement) {
		mu.Lock()
		settled = append(settled, s)
		mu.Unlock()
	}
	srv, gate := billedServer(t, cfg, nil)
	res := work(t, srv.URL, "sk-1", `{"model":"m","max_tokens":90,"mode":"overrun"}`) // reserves 10 + 90
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Spent != 100 || b.Held != 0 {
		t.Fatalf("key balance %+v, want exactly the 100 reserved", b)
	}
	if b := balance(t, gate.Store(), "account", "acme", budget.Dollar); b.Spent != 100 {
		t.Fatalf("account balance %+v", b)
	}
	look := &admission.Request{Tag: "acme", Holder: "k1", Rates: []admission.Rate{{Key: middleware.LimitKey("POST", "/v1/work", middleware.MeterTokens), Policy: ratelimit.PerMinute(10_000)}}}
	r, err := gate.Store().Reserve(context.Background(), look)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rates[0].Remaining != 10_000-100 {
		t.Fatalf("tokens: %d remaining, want %d", r.Rates[0].Remaining, 10_000-100)
	}
	mu.Lock()
	s := settled[0]
	mu.Unlock()
	if s.Usage.CompletionTokens != 900 || s.ChargedTokens != 100 || s.ExcessTokens != 810 || s.Charged != 100 || s.Excess != 810 || s.Allowance != 90 {
		t.Fatalf("settlement %+v", s)
	}
	if n := strings.Count(logs.String(), "handler reported more than its allowance"); n != 1 {
		t.Fatalf("%d warnings:\n%s", n, logs.String())
	}
	if v := counterValue(t, reg, "gatekit_admission_excess_tokens_total", ""); v != 810 {
		t.Fatalf("excess tokens metric %v", v)
	}
}

// 1,000 concurrent requests whose reservations total three times the
// account's budget, three times a token limit and far more than a
// max_parallel of 8 never exceed any of them, with every handler reporting
// ten times its allowance.
func TestConcurrentRequestsNeverExceedAnyCap(t *testing.T) {
	cfg := billedConfig("0.006667")
	cfg.Keys[0].Budget.Limit = gatekit.Money(budget.Dollar)
	// Each request reserves 20 tokens and 20 micros (10 prompt + 10
	// output at 1 USD per million): 20,000 of each asked for, against a
	// 6,667-token limit and a 6,667-micro account budget.
	cfg.Routes = map[string]gatekit.RouteConfig{"POST /v1/work": {LimitConfig: gatekit.LimitConfig{TPM: 6_667, MaxParallel: 8}}}
	srv, gate, gauge := billedServerGauge(t, cfg, nil)
	start := time.Now()
	var ok, refused atomic.Int64
	codes := map[string]*atomic.Int64{"tokens_exceeded": {}, "budget_exceeded": {}, "concurrency_exceeded": {}}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// A request refused for concurrency is sent again, until it is
			// served or refused for good.
			var res *http.Response
			var body []byte
			for range 500 {
				res = work(t, srv.URL, "sk-1", `{"model":"m","max_tokens":10,"mode":"overrun-slow"}`)
				body, _ = io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 429 || !bytes.Contains(body, []byte("concurrency_exceeded")) {
					break
				}
				codes["concurrency_exceeded"].Add(1)
			}
			switch res.StatusCode {
			case 200:
				ok.Add(1)
			case 402, 429:
				refused.Add(1)
				var env envelope
				_ = json.Unmarshal(body, &env)
				if c := codes[env.Error.Code]; c != nil && env.Error.Code != "concurrency_exceeded" {
					c.Add(1)
				} else {
					t.Errorf("refused with %s", body)
				}
			default:
				t.Errorf("status %d: %s", res.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	a := balance(t, gate.Store(), "account", "acme", 6_667)
	if a.Spent > 6_667 || a.Spent != budget.Micros(ok.Load())*20 || a.Held != 0 {
		t.Fatalf("account %+v after %d ok, %d refused", a, ok.Load(), refused.Load())
	}
	// The tokens refill at 6,667 a minute while the test runs.
	refill := int64(elapsed.Seconds()*6_667/60) + 1
	if got := ok.Load() * 20; got > 6_667+refill {
		t.Fatalf("%d tokens charged of 6,667 (+%d refilled)", got, refill)
	}
	if most := gauge.most.Load(); most > 8 {
		t.Fatalf("%d handlers ran at once, max_parallel 8", most)
	}
	if ok.Load() == 0 || codes["concurrency_exceeded"].Load() == 0 || codes["tokens_exceeded"].Load()+codes["budget_exceeded"].Load() == 0 {
		t.Fatalf("%d ok; refusals: %d concurrency, %d tokens, %d budget", ok.Load(),
			codes["concurrency_exceeded"].Load(), codes["tokens_exceeded"].Load(), codes["budget_exceeded"].Load())
	}
}

// The demo's free tier runs two chat completions at once: a third, while
// two gk-slow streams run, is refused with concurrency_exceeded, and is
// admitted once one of them has finished.
func TestDemoFreeTierRunsTwoRequestsAtOnce(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), nil)
	free := withKey("sk-demo-free")
	slow := func() *http.Response {
		body := `{"model":"gk-slow","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"one two three"}]}`
		res, err := free.Post(srv.URL+chatURL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := slow(), slow() // streaming: their headers are out, the words are not
	env := checkEnvelope(t, chatWith(t, free, srv.URL, "gk-echo", "hi", 1), apierrors.CodeConcurrencyExceeded)
	if !strings.Contains(env.Error.Message, "limit 2 at once") {
		t.Fatalf("message %q", env.Error.Message)
	}
	readAll(t, a)
	readAll(t, b)
	res := chatWith(t, free, srv.URL, "gk-echo", "hi", 1)
	readAll(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("after the streams ended: %d", res.StatusCode)
	}
	if st := keyStatus(t, srv.URL, "sk-demo-free"); st.MaxParallel != 2 {
		t.Fatalf("status max_parallel %d", st.MaxParallel)
	}
}
