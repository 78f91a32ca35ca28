package redisstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/budget/redisstore"
)

func ExampleNew() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{"localhost:6379"},
		// Let go-redis stop waiting at the ledger's Timeout.
		ContextTimeoutEnabled: true,
	})
	defer client.Close()

	ledger, err := redisstore.New(client, nil) // UTC periods, 10m holds, 100ms timeout
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// The Tag, the account, keeps both budgets in one Redis Cluster slot.
	scopes := []budget.Scope{
		{Tag: "acme", Kind: "key", ID: "key_acme_prod", Limit: 5 * budget.Dollar, Period: budget.Daily},
		{Tag: "acme", Kind: "account", ID: "acme", Limit: 100 * budget.Dollar, Period: budget.Monthly},
	}
	h, err := ledger.Hold(ctx, scopes, 50*budget.Cent)
	if err != nil {
		// Redis is unreachable: fail open or closed, as configured.
		log.Printf("budget store: %v", err)
		return
	}
	if !h.Allowed {
		fmt.Printf("402: %v has %v left\n", h.Scope, h.Balance.Remaining)
		return
	}
	// ... do the work, then record what it cost.
	s, err := ledger.Settle(ctx, h.ID, 12*budget.Cent)
	if err != nil {
		log.Printf("budget store: %v", err)
		return
	}
	fmt.Printf("spent %v; %v left\n", s.Balance.Spent, s.Balance.Remaining)
}
