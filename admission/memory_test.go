package admission_test

import (
	"context"
	"testing"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/admissiontest"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/ratelimit"
)

func TestMemoryConformance(t *testing.T) {
	admissiontest.Run(t, func(t *testing.T, cfg admissiontest.Config) admission.Store {
		m, err := admission.NewMemory(&admission.MemoryConfig{Now: cfg.Now, TTL: cfg.TTL, SettleGrace: cfg.SettleGrace, Location: cfg.Location})
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func TestMemoryReserveAndSettleAllocateNothingForKnownKeys(t *testing.T) {
	m, err := admission.NewMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := budget.Scope{Tag: "acct", Kind: "key", ID: "k", Limit: budget.MaxMicros, Period: budget.Monthly}
	acct := budget.Scope{Tag: "acct", Kind: "account", ID: "acct", Limit: budget.MaxMicros, Period: budget.Monthly}
	r := &admission.Request{Tag: "acct",
		Rates: []admission.Rate{{Key: "rpm", Policy: ratelimit.PerMinute(1 << 40), N: 1},
			{Key: "tpm", Policy: ratelimit.PerMinute(1 << 40), N: 1000, Refund: true}},
		Slots:   []admission.Slot{{Key: "par", Limit: 1 << 20}},
		Budgets: []budget.Scope{sc, acct}, Cost: 100}
	ctx := context.Background()
	run := func() {
		res, err := m.Reserve(ctx, r)
		if err != nil || !res.Allowed {
			t.Fatalf("reserve: %+v %v", res, err)
		}
		if _, err := m.Settle(ctx, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{1, 300}, Cost: 40}); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		run()
	}
	if got := testing.AllocsPerRun(1000, run); got != 0 {
		t.Fatalf("%v allocations per reserve and settle, want 0", got)
	}
}
