// Package alertstest is the conformance suite of alerts.Ledger, and the
// end-to-end test of a Notifier's webhook over a ledger, for every
// ledger: in memory, on disk and on Redis.
package alertstest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit/alerts"
	"github.com/gatekit/gatekit/budget"
)

// Factory makes the ledgers of one test.
type Factory struct {
	// New returns an empty ledger for the calling test.
	New func(t *testing.T) alerts.Ledger
	// Restart closes l and returns a ledger on the same data, as a
	// restarted process opens it; nil for ledgers that do not survive a
	// restart (the suite then skips those tests).
	Restart func(t *testing.T, l alerts.Ledger) alerts.Ledger
}

// Run runs the suite.
func Run(t *testing.T, f Factory) {
	t.Run("ClaimOnce", func(t *testing.T) { testClaim(t, f) })
	t.Run("WebhookSignedOnceAfterTwoFailuresAndARestart", func(t *testing.T) { testWebhook(t, f) })
	t.Run("PendingAlertDeliveredAfterARestart", func(t *testing.T) { testPendingAcrossRestart(t, f) })
}

func alert(id string) alerts.Alert {
	return alerts.Alert{ID: id, Scope: "account", ScopeID: "acme", Account: "acme", Threshold: 80, Time: time.Unix(1_800_000_000, 0).UTC()}
}

func testClaim(t *testing.T, f Factory) {
	ctx := context.Background()
	l := f.New(t)
	if ok, err := l.Claim(ctx, alert("a")); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, err := l.Claim(ctx, alert("a")); ok || err != nil {
		t.Fatalf("second claim: %v %v", ok, err)
	}
	if ok, _ := l.Claim(ctx, alert("b")); !ok {
		t.Fatal("another alert could not be claimed")
	}
	p, err := l.Pending(ctx)
	if err != nil || len(p) != 2 {
		t.Fatalf("pending %v %v", p, err)
	}
	if err := l.Delivered(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if p, _ := l.Pending(ctx); len(p) != 1 || p[0].ID != "b" {
		t.Fatalf("pending after a delivery: %v", p)
	}
	if f.Restart != nil {
		l = f.Restart(t, l)
		if ok, _ := l.Claim(ctx, alert("a")); ok {
			t.Fatal("an alert claimed before the restart was claimed again")
		}
		if p, _ := l.Pending(ctx); len(p) != 1 || p[0].ID != "b" {
			t.Fatalf("pending after the restart: %v", p)
		}
	}
}

// receiver is a webhook endpoint that fails its first fail requests and
// counts the alerts it accepted, by id, checking signatures.
type receiver struct {
	t        *testing.T
	mu       sync.Mutex
	fail     int
	attempts int
	got      map[string]int
	bad      int
	srv      *httptest.Server
}

const secret = "whsec-test"

func newReceiver(t *testing.T, fail int) *receiver {
	r := &receiver{t: t, fail: fail, got: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts++
		if !alerts.Verify(secret, req.Header.Get(alerts.SignatureHeader), body, time.Now(), time.Minute) {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.fail > 0 {
			r.fail--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.got[req.Header.Get("X-Gatekit-Alert-Id")]++
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) state() (attempts int, got map[string]int, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := map[string]int{}
	for k, v := range r.got {
		cp[k] = v
	}
	return r.attempts, cp, r.bad
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// books is a budget whose spend the test sets.
type books struct {
	mu    sync.Mutex
	spent budget.Micros
}

func (b *books) set(m budget.Micros) { b.mu.Lock(); b.spent = m; b.mu.Unlock() }

func (b *books) balance(_ context.Context, s budget.Scope) (budget.Balance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return budget.NewBalance(s.Limit, b.spent, 0, time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)), nil
}

var scope = budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 10_000_000, Period: budget.Monthly}

func notifier(t *testing.T, l alerts.Ledger, b *books, url string, reg prometheus.Registerer) *alerts.Notifier {
	t.Helper()
	n, err := alerts.New(alerts.Config{Balance: b.balance, Ledger: l, WebhookURL: url, Secret: secret,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Metrics: reg, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func testWebhook(t *testing.T, f Factory) {
	ctx := context.Background()
	rcv := newReceiver(t, 2)
	b := &books{}
	l := f.New(t)
	reg := prometheus.NewRegistry()
	n := notifier(t, l, b, rcv.srv.URL, reg)
	b.set(7_900_000) // 79%: 50% fires
	fired, err := n.Check(ctx, []budget.Scope{scope})
	if err != nil || len(fired) != 1 || fired[0].Threshold != 50 {
		t.Fatalf("at 79%%: %+v %v", fired, err)
	}
	b.set(8_000_000) // 80% exactly
	fired, err = n.Check(ctx, []budget.Scope{scope})
	if err != nil || len(fired) != 1 || fired[0].Threshold != 80 || fired[0].Spent != "8.00" || fired[0].Limit != "10.00" {
		t.Fatalf("at 80%%: %+v %v", fired, err)
	}
	id80 := fired[0].ID
	waitFor(t, "both alerts delivered", func() bool { _, got, _ := rcv.state(); return got[id80] == 1 && len(got) == 2 })
	b.set(9_000_000)
	if fired, _ := n.Check(ctx, []budget.Scope{scope}); len(fired) != 0 {
		t.Fatalf("at 90%%: %+v fired again", fired)
	}
	n.Close()
	attempts, _, bad := rcv.state()
	if attempts != 4 || bad != 0 {
		t.Fatalf("%d attempts (want 2 failed + 2 delivered), %d badly signed", attempts, bad)
	}
	if sent, failed := counts(t, reg); sent != 2 || failed != 2 {
		t.Fatalf("metrics: sent %v, failed %v", sent, failed)
	}
	if f.Restart == nil {
		return
	}
	l = f.Restart(t, l)
	n = notifier(t, l, b, rcv.srv.URL, nil)
	defer n.Close()
	b.set(9_500_000)
	if fired, _ := n.Check(ctx, []budget.Scope{scope}); len(fired) != 0 {
		t.Fatalf("after the restart: %+v fired again", fired)
	}
	time.Sleep(50 * time.Millisecond)
	if _, got, _ := rcv.state(); got[id80] != 1 {
		t.Fatalf("after the restart the 80%% alert was delivered %d times", got[id80])
	}
}

func testPendingAcrossRestart(t *testing.T, f Factory) {
	if f.Restart == nil {
		t.Skip("the ledger does not survive a restart")
	}
	ctx := context.Background()
	down := newReceiver(t, 1_000_000)
	b := &books{}
	l := f.New(t)
	n := notifier(t, l, b, down.srv.URL, nil)
	b.set(8_500_000)
	fired, err := n.Check(ctx, []budget.Scope{scope})
	if err != nil || len(fired) != 2 {
		t.Fatalf("%+v %v", fired, err)
	}
	waitFor(t, "a failed attempt", func() bool { a, _, _ := down.state(); return a > 0 })
	n.Close()
	l = f.Restart(t, l)
	up := newReceiver(t, 0)
	n = notifier(t, l, b, up.srv.URL, nil)
	defer n.Close()
	waitFor(t, "the pending alerts delivered after the restart", func() bool { _, got, _ := up.state(); return len(got) == 2 })
	if _, got, _ := up.state(); got[fired[0].ID] != 1 || got[fired[1].ID] != 1 {
		t.Fatalf("delivered %v", got)
	}
}

func counts(t *testing.T, reg *prometheus.Registry) (sent, failed float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gatekit_budget_alerts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "sent":
				sent = m.GetCounter().GetValue()
			case "failed":
				failed = m.GetCounter().GetValue()
			}
		}
	}
	return sent, failed
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
