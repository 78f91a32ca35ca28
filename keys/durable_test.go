package keys_test

import (
	"context"
	"testing"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/keys/keystest"
)

func openDurable(t *testing.T, dir string) *keys.Durable {
	t.Helper()
	d, err := keys.OpenDurable(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDurableConformance(t *testing.T) {
	keystest.Run(t, keystest.Factory{New: func(t *testing.T) keys.Store { return openDurable(t, t.TempDir()) }})
}

func TestDurableKeysSurviveARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := keys.OpenDurable(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := keys.New(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, secret, err := r.Create(ctx, keys.Spec{Account: "acme", Budget: &keys.Budget{Limit: 3_000_000, Period: budget.Monthly}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetAccountBudget(ctx, "acme", &keys.Budget{Limit: 9_000_000, Period: budget.Daily}); err != nil {
		t.Fatal(err)
	}
	_, revoked, err := r.Create(ctx, keys.Spec{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	p, _, _ := r.Lookup(ctx, revoked)
	if _, err := r.Revoke(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	v, _ := d.Version(ctx)
	r.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openDurable(t, dir)
	if v2, _ := d.Version(ctx); v2 != v {
		t.Fatalf("version %d after the restart, want %d", v2, v)
	}
	r2, err := keys.New(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got, ok, err := r2.Lookup(ctx, secret)
	if err != nil || !ok || got.ID != k.ID || len(got.Budgets) != 2 || got.Budgets[1].Limit != 9_000_000 || got.Budgets[1].Period != budget.Daily {
		t.Fatalf("after the restart: %+v %v %v", got, ok, err)
	}
	if _, ok, _ := r2.Lookup(ctx, revoked); ok {
		t.Fatal("a revoked key authenticates after the restart")
	}
}
