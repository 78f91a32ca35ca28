package gatekit_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/alerts"
	"github.com/gatekit/gatekit/budget"
)

// Through the whole stack: billable requests settle, the notifier reads
// the key's balance, and crossing 80% of the key's budget sends one
// signed webhook for it, after a receiver that fails twice first.
func TestBudgetCrossing80PercentSendsOneSignedWebhook(t *testing.T) {
	const secret = "whsec-stack"
	var mu sync.Mutex
	got := map[int][]alerts.Alert{}
	failures := 2
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !alerts.Verify(secret, r.Header.Get(alerts.SignatureHeader), body, time.Now(), time.Minute) {
			t.Errorf("a webhook with a bad signature: %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		var a alerts.Alert
		json.Unmarshal(body, &a)
		got[a.Threshold] = append(got[a.Threshold], a)
	}))
	defer hook.Close()

	var gate *gatekit.Gate
	n, err := alerts.New(alerts.Config{
		Balance:    func(ctx context.Context, s budget.Scope) (budget.Balance, error) { return gate.Store().Balance(ctx, s) },
		Thresholds: []int{80},
		WebhookURL: hook.URL, Secret: secret, MinBackoff: 10 * time.Millisecond, Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cfg := billedConfig("1.00")
	cfg.OnSettle = n.Observe
	var srv *httptest.Server
	srv, gate = billedServer(t, cfg, nil)

	// k1's own budget is 10,000 micros; a request costs 10 + max_tokens.
	spend := func(maxTokens int) {
		t.Helper()
		res := work(t, srv.URL, "sk-1", workBody(maxTokens))
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("max_tokens %d: %d", maxTokens, res.StatusCode)
		}
	}
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got[80])
	}
	spend(3990) // 40%
	spend(4090) // 81%
	for deadline := time.Now().Add(5 * time.Second); delivered() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no webhook within 5s of crossing 80%")
		}
	}
	spend(990) // 91%: no second alert for 80%
	k1 := budget.Scope{Tag: "acme", Kind: "key", ID: "k1", Limit: 10_000, Period: budget.None}
	if fired, err := n.Check(context.Background(), []budget.Scope{k1}); err != nil || len(fired) != 0 {
		t.Fatalf("at 91%%: fired %+v, %v", fired, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got[80]) != 1 {
		t.Fatalf("%d webhooks for 80%%, want exactly 1", len(got[80]))
	}
	a := got[80][0]
	if a.Scope != "key" || a.ScopeID != "k1" || a.Account != "acme" || a.Limit != "0.01" || a.Spent != "0.0081" || a.Period != "none" {
		t.Fatalf("alert %+v", a)
	}
}
