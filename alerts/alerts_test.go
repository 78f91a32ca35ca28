package alerts_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatekit/gatekit/alerts"
	"github.com/gatekit/gatekit/alerts/alertstest"
	"github.com/gatekit/gatekit/budget"
)

func TestMemoryConformance(t *testing.T) {
	alertstest.Run(t, alertstest.Factory{New: func(*testing.T) alerts.Ledger { return alerts.NewMemory() }})
}

func TestDurableConformance(t *testing.T) {
	alertstest.Run(t, alertstest.Factory{
		New: func(t *testing.T) alerts.Ledger {
			return openDurable(t, t.TempDir())
		},
		Restart: func(t *testing.T, l alerts.Ledger) alerts.Ledger {
			d := l.(*durable)
			d.Close()
			return openDurable(t, d.dir)
		},
	})
}

type durable struct {
	*alerts.Durable
	dir string
}

func openDurable(t *testing.T, dir string) *durable {
	t.Helper()
	d, err := alerts.OpenDurable(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &durable{Durable: d, dir: dir}
}

func TestSignaturesVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"x"}`)
	h := alerts.Sign("s3cret", now, body)
	if !alerts.Verify("s3cret", h, body, now.Add(time.Second), time.Minute) {
		t.Fatal("a fresh signature does not verify")
	}
	for name, ok := range map[string]bool{
		"another secret": alerts.Verify("other", h, body, now, time.Minute),
		"another body":   alerts.Verify("s3cret", h, []byte(`{"id":"y"}`), now, time.Minute),
		"too old":        alerts.Verify("s3cret", h, body, now.Add(2*time.Minute), time.Minute),
		"garbage":        alerts.Verify("s3cret", "t=x,v1=", body, now, time.Minute),
	} {
		if ok {
			t.Errorf("%s verifies", name)
		}
	}
}

func TestNewRefusesAWebhookWithoutSecret(t *testing.T) {
	balance := func(context.Context, budget.Scope) (budget.Balance, error) { return budget.Balance{}, nil }
	if _, err := alerts.New(alerts.Config{Balance: balance, WebhookURL: "http://127.0.0.1:1/hook"}); err == nil {
		t.Error("a webhook without a secret was accepted")
	}
	if _, err := alerts.New(alerts.Config{}); err == nil {
		t.Error("a notifier without Balance was accepted")
	}
	if _, err := alerts.New(alerts.Config{Balance: balance, Thresholds: []int{0}}); err == nil {
		t.Error("a threshold of 0% was accepted")
	}
}
