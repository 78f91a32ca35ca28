package budget_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gatekit/gatekit/budget"
)

func ExampleNewMemory() {
	// A fixed clock, so that the output does not depend on the day.
	now := time.Date(2030, time.January, 15, 12, 0, 0, 0, time.UTC)
	ledger, err := budget.NewMemory(&budget.MemoryConfig{
		Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	// A request counts against its key's daily budget and its account's
	// monthly one.
	scopes := []budget.Scope{
		{Tag: "acme", Kind: "key", ID: "key_acme_prod", Limit: 5 * budget.Dollar, Period: budget.Daily},
		{Tag: "acme", Kind: "account", ID: "acme", Limit: 100 * budget.Dollar, Period: budget.Monthly},
	}

	// Before the work: hold the most it may cost.
	h, err := ledger.Hold(ctx, scopes, 2*budget.Dollar)
	if err != nil {
		panic(err) // a store failure; Memory never fails
	}
	fmt.Println("held:", h.Allowed, "remaining:", h.Balance.Remaining, "for", h.Scope)

	// After it: settle to what it actually cost.
	s, _ := ledger.Settle(ctx, h.ID, 1_234_500*budget.Micro)
	fmt.Println("spent:", s.Balance.Spent, "remaining:", s.Balance.Remaining)

	// A request that does not fit is refused, naming the budget.
	h, _ = ledger.Hold(ctx, scopes, 4*budget.Dollar)
	if !h.Allowed {
		fmt.Printf("402: %v has %v left of %v, until %v\n",
			h.Scope, h.Balance.Remaining, h.Scope.Limit, h.Balance.ResetsAt.Format(time.RFC3339))
	}
	// Output:
	// held: true remaining: 3.00 USD for key key_acme_prod (daily)
	// spent: 1.2345 USD remaining: 3.7655 USD
	// 402: key key_acme_prod (daily) has 3.7655 USD left of 5.00 USD, until 2030-01-16T00:00:00Z
}

func ExampleParseMicros() {
	limit, err := budget.ParseMicros("12.50")
	if err != nil {
		panic(err)
	}
	fmt.Println(int64(limit), limit)
	// Output: 12500000 12.50 USD
}
