package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/ratelimit"
)

func ExampleNew() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{"localhost:6379"},
		// Let go-redis stop waiting at the store's Timeout.
		ContextTimeoutEnabled: true,
	})
	defer client.Close()

	store, err := redisstore.New(client, nil) // 100ms timeout, 10m TTL, UTC periods
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	r := &admission.Request{
		Tag: "acct_42",
		Rates: []admission.Rate{
			{Key: "key_7:rpm", Policy: ratelimit.PerMinute(60), N: 1},
			{Key: "key_7:tpm", Policy: ratelimit.PerMinute(100_000), N: 4096, Refund: true},
		},
		Slots:   []admission.Slot{{Key: "key_7:parallel", Limit: 4}},
		Budgets: []budget.Scope{{Tag: "acct_42", Kind: "account", ID: "acct_42", Limit: 50 * budget.Dollar, Period: budget.Monthly}},
		Cost:    2 * budget.Cent,
	}
	res, err := store.Reserve(ctx, r)
	if err != nil {
		// Redis is unreachable: fail open or closed, as configured.
		log.Printf("admission store: %v", err)
		return
	}
	if !res.Allowed {
		fmt.Printf("refused by %v claim %d, retry in %v\n", res.Refused, res.Index, res.RetryAfter())
		return
	}
	// ... the handler runs, and reports what it used ...
	used := admission.Usage{Used: [admission.MaxRates]int64{1, 1200}, Cost: 6000}
	if _, err := store.Settle(ctx, r, res.ID, used); err != nil {
		log.Printf("settle %v: %v", res.ID, err)
	}
}

// An idempotent request: its key is looked up and claimed with its
// reservation, and ended with its settlement, one script each. (gatekit's
// middleware does this itself when the admission store is a
// redisstore.Store and no other idempotency store is set.)
func ExampleStore_ReserveOnce() {
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	store, err := redisstore.New(client, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	r := &admission.Request{
		Tag:   "acct_42",
		Rates: []admission.Rate{{Key: "key_7:tpm", Policy: ratelimit.PerMinute(100_000), N: 4096, Refund: true}},
	}
	once := admission.Once{Key: "key_7\x00order-1001", Fingerprint: "sha256 of the payload", Lease: 5 * time.Minute}
	res, begin, err := store.ReserveOnce(ctx, r, once)
	switch {
	case err != nil:
		log.Printf("admission store: %v", err)
		return
	case begin.State == idempotency.Completed:
		fmt.Println("replay the kept response:", begin.Record.Status)
		return
	case begin.State == idempotency.InProgress:
		fmt.Println("409: the first request with this key is still running")
		return
	case begin.State == idempotency.Mismatch:
		fmt.Println("422: this key was used with another payload")
		return
	case !res.Allowed:
		fmt.Println("429, retry in", res.RetryAfter(), "(the key stays free)")
		return
	}
	// ... the handler runs ...
	kept := &idempotency.Record{Status: 200, Body: []byte(`{"ok":true}`)}
	used := admission.Usage{Used: [admission.MaxRates]int64{1200}}
	if _, err := store.SettleOnce(ctx, r, res.ID, used, admission.Done{Key: once.Key, Token: begin.Token, Record: kept, TTL: 24 * time.Hour}); err != nil {
		log.Printf("settle %v: %v", res.ID, err)
	}
}
