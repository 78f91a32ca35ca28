package durable_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "gatekit-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	// A fixed clock, so that the output does not depend on the day.
	cfg := &durable.Config{Now: func() time.Time { return time.Date(2030, time.January, 15, 12, 0, 0, 0, time.UTC) }}
	ctx := context.Background()
	scopes := []budget.Scope{
		{Tag: "acme", Kind: "key", ID: "key_acme_prod", Limit: 5 * budget.Dollar, Period: budget.Daily},
		{Tag: "acme", Kind: "account", ID: "acme", Limit: 100 * budget.Dollar, Period: budget.Monthly},
	}

	// A service opens its store on start...
	store, err := durable.Open(dir, cfg)
	if err != nil {
		panic(err) // a damaged file names itself here
	}
	ledger := store.Ledger() // and store.Idempotency(), for the middleware
	h, _ := ledger.Hold(ctx, scopes, 2*budget.Dollar)
	ledger.Settle(ctx, h.ID, 1_234_500*budget.Micro)
	// ...and closes it on the way out, which writes what is queued.
	if err := store.Close(); err != nil {
		panic(err)
	}

	// The next start finds the spending where it was.
	store, err = durable.Open(dir, cfg)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	b, _ := store.Ledger().Balance(ctx, scopes[0])
	fmt.Println("spent:", b.Spent, "remaining:", b.Remaining)
	// Output:
	// spent: 1.2345 USD remaining: 3.7655 USD
}
