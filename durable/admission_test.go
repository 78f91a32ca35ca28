package durable_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/admissiontest"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
)

// admissionOn is an admission.Memory keeping its budgets in st's ledger,
// as Mount builds it with data.dir.
func admissionOn(t *testing.T, st *durable.Store, cfg admissiontest.Config) *admission.Memory {
	t.Helper()
	m, err := admission.NewMemory(&admission.MemoryConfig{Now: cfg.Now, TTL: cfg.TTL, SettleGrace: cfg.SettleGrace, Ledger: st.Ledger()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The durable store's admission is a Memory over its ledger: it passes
// the conformance suite, and what it settles is on disk after a restart.
func TestAdmissionConformance(t *testing.T) {
	admissiontest.Run(t, func(t *testing.T, cfg admissiontest.Config) admission.Store {
		st := open(t, t.TempDir(), &durable.Config{Now: cfg.Now, Location: cfg.Location, HoldTTL: cfg.TTL, SettleGrace: cfg.SettleGrace})
		return admissionOn(t, st, cfg)
	})
}

func TestAdmissionSpendSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	sc := budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000, Period: budget.Monthly}
	r := &admission.Request{Tag: "acme", Budgets: []budget.Scope{sc}, Cost: 600}
	cfg := admissiontest.Config{Now: time.Now, TTL: time.Minute, SettleGrace: time.Hour}

	st, err := durable.Open(dir, &durable.Config{HoldTTL: cfg.TTL})
	if err != nil {
		t.Fatal(err)
	}
	m := admissionOn(t, st, cfg)
	res, err := m.Reserve(ctx, r)
	if err != nil || !res.Allowed {
		t.Fatalf("reserve: %+v %v", res, err)
	}
	if _, err := m.Settle(ctx, r, res.ID, admission.Usage{Cost: 450}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open(t, dir, &durable.Config{HoldTTL: cfg.TTL})
	m = admissionOn(t, st, cfg)
	if b, err := m.Balance(ctx, sc); err != nil || b.Spent != 450 {
		t.Fatalf("after the restart: %+v %v", b, err)
	}
	// 550 left: 600 more does not fit.
	if res, err := m.Reserve(ctx, r); err != nil || res.Allowed || res.Refused != admission.KindBudget {
		t.Fatalf("after the restart: %+v %v", res, err)
	}
}
