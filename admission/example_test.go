package admission_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/ratelimit"
)

// One request reserves a request, 1,000 tokens, a slot and 50 micro-USD,
// all at once; it used 400 tokens and cost 20, so Settle gives back the
// rest. A second request that asks for more tokens than are left takes
// nothing.
func ExampleMemory() {
	// A fixed clock keeps the printed wait exact; a service leaves Now unset.
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	store, _ := admission.NewMemory(&admission.MemoryConfig{Now: func() time.Time { return now }})
	ctx := context.Background()
	r := &admission.Request{
		Tag: "acme",
		Rates: []admission.Rate{
			{Key: "key-1/rpm", Policy: ratelimit.PerMinute(60), N: 1},
			{Key: "key-1/tpm", Policy: ratelimit.PerMinute(1500), N: 1000, Refund: true},
		},
		Slots:   []admission.Slot{{Key: "key-1/parallel", Limit: 2}},
		Budgets: []budget.Scope{{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000, Period: budget.Monthly}},
		Cost:    50,
	}
	res, _ := store.Reserve(ctx, r)
	fmt.Println("allowed:", res.Allowed, "tokens left:", res.Rates[1].Remaining, "in flight:", res.InUse[0])

	again, _ := store.Reserve(ctx, r)
	fmt.Println("allowed:", again.Allowed, "refused by:", again.Refused, again.Index, "wait:", again.RetryAfter())

	var u admission.Usage
	u.Used[1], u.Cost = 400, 20
	_, _ = store.Settle(ctx, r, res.ID, u)
	b, _ := store.Balance(ctx, r.Budgets[0])
	fmt.Println("spent:", b.Spent, "held:", b.Held)
	// Output:
	// allowed: true tokens left: 500 in flight: 1
	// allowed: false refused by: rate 1 wait: 20s
	// spent: 0.00002 USD held: 0.00 USD
}
