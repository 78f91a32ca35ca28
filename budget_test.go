package gatekit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// billedConfig is a service whose /v1/work route is billable: every key of
// account acme has a 10,000 micro (0.01 USD) lifetime budget of its own
// and the account one of accountCap, and a request costs exactly what it
// holds: 10 prompt tokens + max_tokens completion tokens at 1 USD per
// million each.
func billedConfig(accountCap string) gatekit.Config {
	return gatekit.Config{
		Logger: discardLogger(),
		Keys: []gatekit.KeyConfig{
			{ID: "k1", Key: "sk-1", Account: "acme", Budget: &gatekit.BudgetConfig{Limit: gatekit.Money(10_000), Period: "none"}},
			{ID: "k2", Key: "sk-2", Account: "acme", Budget: &gatekit.BudgetConfig{Limit: gatekit.Money(10_000), Period: "none"}},
		},
		Budgets: gatekit.BudgetsConfig{
			Routes:   []string{"POST /v1/work"},
			Accounts: map[string]gatekit.BudgetConfig{"acme": {Limit: mustMoney(accountCap), Period: "none"}},
		},
		Prices:      gatekit.PricesConfig{Default: &gatekit.PriceConfig{Input: gatekit.Money(budget.Dollar), Output: gatekit.Money(budget.Dollar)}},
		CountTokens: func([]byte) int64 { return 10 },
	}
}

func mustMoney(s string) gatekit.Money {
	m, err := budget.ParseMicros(s)
	if err != nil {
		panic(err)
	}
	return gatekit.Money(m)
}

// workBody asks for maxTokens completion tokens.
func workBody(maxTokens int) string {
	return fmt.Sprintf(`{"model":"m","max_tokens":%d,"messages":[{"role":"user","content":"x"}]}`, maxTokens)
}

type workRequest struct {
	Model     string            `json:"model"`
	MaxTokens int64             `json:"max_tokens"`
	Messages  []json.RawMessage `json:"messages"`
	Mode      string            `json:"mode"`
}

// billedServer mounts cfg and a /v1/work handler that reports the usage it
// was asked for, or fails, panics or streams as the body's mode says.
func billedServer(t *testing.T, cfg gatekit.Config, release <-chan struct{}) (*httptest.Server, *gatekit.Gate) {
	t.Helper()
	srv, gate, _ := billedServerGauge(t, cfg, release)
	return srv, gate
}

// handlerGauge counts the /v1/work handlers running, and the most at once;
// also, when set, counts them too (the gauge of several servers).
type handlerGauge struct {
	now, most atomic.Int64
	also      *handlerGauge
}

func (g *handlerGauge) enter() {
	n := g.now.Add(1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	if g.also != nil {
		g.also.enter()
	}
}

func (g *handlerGauge) leave() {
	g.now.Add(-1)
	if g.also != nil {
		g.also.leave()
	}
}

// billedServerGauge is billedServer with the gauge of its handlers. Modes
// "overrun" and "overrun-slow" report ten times max_tokens; the second
// takes a millisecond first, so that requests overlap.
func billedServerGauge(t *testing.T, cfg gatekit.Config, release <-chan struct{}) (*httptest.Server, *gatekit.Gate, *handlerGauge) {
	t.Helper()
	gauge := &handlerGauge{}
	srv, gate := billedServerCounting(t, cfg, release, gauge)
	return srv, gate, gauge
}

// billedServerCounting is billedServer whose handlers are counted by
// gauge, which several servers may share.
func billedServerCounting(t *testing.T, cfg gatekit.Config, release <-chan struct{}, gauge *handlerGauge) (*httptest.Server, *gatekit.Gate) {
	t.Helper()
	e := echo.New()
	gate, err := gatekit.Mount(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.POST("/v1/work", func(c echo.Context) error {
		gauge.enter()
		defer gauge.leave()
		var req workRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		switch req.Mode {
		case "overrun-slow":
			time.Sleep(time.Millisecond)
			fallthrough
		case "overrun":
			return middleware.ReportUsage(c, middleware.Usage{Model: req.Model, PromptTokens: 10, CompletionTokens: 10 * req.MaxTokens})
		case "fail":
			return apierrors.ModelServerError("")
		case "panic":
			panic("handler exploded")
		case "wait":
			select {
			case <-release:
			case <-c.Request().Context().Done():
				return c.Request().Context().Err()
			}
		case "stream":
			s := middleware.NewStream(c)
			for i := int64(1); i <= req.MaxTokens*3; i++ { // spends three times its estimate
				if err := middleware.ReportProgress(c, middleware.Usage{Model: req.Model, PromptTokens: 10, CompletionTokens: i}); err != nil {
					return err
				}
				if err := s.Send(map[string]int64{"token": i}); err != nil {
					return err
				}
			}
			return s.Done()
		}
		if err := middleware.ReportUsage(c, middleware.Usage{Model: req.Model, PromptTokens: 10, CompletionTokens: req.MaxTokens}); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]bool{"ok": true})
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, gate
}

func balance(t *testing.T, l admission.Store, kind, id string, limit budget.Micros) budget.Balance {
	t.Helper()
	b, err := l.Balance(context.Background(), budget.Scope{Tag: "acme", Kind: kind, ID: id, Limit: limit, Period: budget.None})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func work(t *testing.T, url, key, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/work", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestBudgetHoldsThenSettlesToTheActualCost(t *testing.T) {
	var settled []middleware.Settlement
	var mu sync.Mutex
	cfg := billedConfig("1.00")
	cfg.OnSettle = func(_ context.Context, s middleware.Settlement) {
		mu.Lock()
		settled = append(settled, s)
		mu.Unlock()
	}
	srv, gate := billedServer(t, cfg, nil)
	res := work(t, srv.URL, "sk-1", workBody(90)) // 10 + 90 tokens: 100 micros
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	b := balance(t, gate.Store(), "key", "k1", 10_000)
	if b.Spent != 100 || b.Held != 0 || b.Remaining != 9_900 {
		t.Fatalf("key balance %+v", b)
	}
	if a := balance(t, gate.Store(), "account", "acme", budget.Dollar); a.Spent != 100 {
		t.Fatalf("account balance %+v", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(settled) != 1 || settled[0].Charged != 100 || settled[0].Reserved != 100 || settled[0].Principal.ID != "k1" ||
		settled[0].Route != "/v1/work" || settled[0].Usage.CompletionTokens != 90 || settled[0].RequestID == "" {
		t.Fatalf("OnSettle got %+v", settled)
	}
}

func TestBudgetExceededNamesTheScopeThatRanOut(t *testing.T) {
	srv, _ := billedServer(t, billedConfig("0.000150"), nil)
	res := work(t, srv.URL, "sk-1", workBody(90)) // 100 of the account's 150
	res.Body.Close()
	env := checkEnvelope(t, work(t, srv.URL, "sk-2", workBody(90)), apierrors.CodeBudgetExceeded)
	if env.Error.Message != "Budget exceeded for account acme: 0.00015 USD in total, 0.00005 USD left, and the request may cost up to 0.0001 USD." {
		t.Fatalf("message %q", env.Error.Message)
	}
	env = checkEnvelope(t, work(t, srv.URL, "sk-1", workBody(20_000)), apierrors.CodeBudgetExceeded)
	if !strings.Contains(env.Error.Message, "budget of key k1: it may cost up to 0.02001 USD, and the budget is 0.01 USD in total") || env.Error.RetryAfter != nil {
		t.Fatalf("message %q", env.Error.Message)
	}
}

// TestBudgetNeverOverspendsUnderConcurrency: 1,000 concurrent requests whose
// holds together are twice the account's cap.
func TestBudgetNeverOverspendsUnderConcurrency(t *testing.T) {
	cfg := billedConfig("0.010000")
	cfg.Keys[0].Budget.Limit = gatekit.Money(budget.Dollar)
	srv, gate := billedServer(t, cfg, nil)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res := work(t, srv.URL, "sk-1", workBody(10)) // 20 micros each: 20,000 in all
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			switch res.StatusCode {
			case 200:
				ok.Add(1)
			case 402:
				refused.Add(1)
			default:
				t.Errorf("status %d", res.StatusCode)
			}
		}()
	}
	wg.Wait()
	a := balance(t, gate.Store(), "account", "acme", 10_000)
	if a.Spent > 10_000 || a.Spent != budget.Micros(ok.Load())*20 || a.Held != 0 {
		t.Fatalf("account %+v after %d ok, %d refused", a, ok.Load(), refused.Load())
	}
	if ok.Load() != 500 || refused.Load() != 500 {
		t.Fatalf("%d ok, %d refused; want exactly 500 each", ok.Load(), refused.Load())
	}
}

func TestBudgetLeaksNothingWhenRequestsFailPanicOrGoAway(t *testing.T) {
	release := make(chan struct{})
	srv, gate := billedServer(t, billedConfig("1.00"), release)
	for _, mode := range []string{"fail", "panic"} {
		res := work(t, srv.URL, "sk-1", fmt.Sprintf(`{"model":"m","max_tokens":5,"mode":%q}`, mode))
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode < 500 {
			t.Fatalf("%s: status %d", mode, res.StatusCode)
		}
	}
	// A client that goes away while the handler runs.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/work", strings.NewReader(`{"model":"m","max_tokens":5,"mode":"wait"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitFor(t, func() bool { return balance(t, gate.Store(), "key", "k1", 10_000).Held > 0 })
	cancel()
	<-done
	waitFor(t, func() bool { return balance(t, gate.Store(), "key", "k1", 10_000).Held == 0 })
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Spent != 0 {
		t.Fatalf("failed requests were charged: %+v", b)
	}
	// A rejected body (400) holds and releases too.
	res := work(t, srv.URL, "sk-1", `{"model":"m","max_tokens":5,"bogus":1}`)
	checkEnvelope(t, res, apierrors.CodeInvalidArgument)
	if b := balance(t, gate.Store(), "key", "k1", 10_000); b.Held != 0 || b.Spent != 0 {
		t.Fatalf("after a 400: %+v", b)
	}
}

// waitFor polls cond for up to 5 s: for state another goroutine changes
// after an event the test cannot observe directly.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A stream that goes on past its allowance, reporting three times what it
// reserved, is charged its reservation and no more.
func TestStreamPastItsAllowanceIsChargedNoMoreThanItsReservation(t *testing.T) {
	cfg := billedConfig("1.00")
	cfg.Keys[0].Budget.Limit = gatekit.Money(25) // the reservation (10 + 10) fits; three times it does not
	var settled middleware.Settlement
	cfg.OnSettle = func(_ context.Context, s middleware.Settlement) { settled = s }
	srv, gate := billedServer(t, cfg, nil)
	res := work(t, srv.URL, "sk-1", `{"model":"m","max_tokens":10,"mode":"stream"}`)
	events := readEvents(t, res)
	if len(events) != 31 || events[30] != "[DONE]" {
		t.Fatalf("%d events, last %q", len(events), events[len(events)-1])
	}
	b := balance(t, gate.Store(), "key", "k1", 25)
	if b.Spent != 20 || b.Held != 0 {
		t.Fatalf("balance %+v, want the 20 reserved", b)
	}
	if settled.Usage.CompletionTokens != 30 || settled.Charged != 20 || settled.Excess != 20 {
		t.Fatalf("settlement %+v", settled)
	}
}

func TestBudgetedDemoKeys(t *testing.T) {
	srv := newLimitedProvider(t, newFakeClock(), nil)
	env := checkEnvelope(t, chat(t, withKey("sk-demo-broke"), srv.URL, "gk-echo", "hi"), apierrors.CodeBudgetExceeded)
	if env.Error.Message != "Budget exceeded for key demo-broke: its budget is 0.00 USD per month." {
		t.Fatalf("message %q", env.Error.Message)
	}
	res := chat(t, withKey("sk-demo-free"), srv.URL, "gk-echo", "one two three")
	res.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/key", nil)
	res, err := withKey("sk-demo-free").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st gatekit.KeyStatus
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	// 3 prompt words at 1 USD/M + 3 completion words at 2 USD/M = 9 micros.
	if st.ID != "demo-free" || st.Requests == nil || st.Requests.Remaining != 9 || len(st.Budgets) != 1 ||
		st.Budgets[0].Spent != "0.000009" || st.Budgets[0].Limit != "1.00" || st.Budgets[0].ResetsAt == nil {
		t.Fatalf("status %+v", st)
	}
}
