package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/redisstore"
)

func ExampleNew() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{"localhost:6379"},
		// Let go-redis stop waiting at the store's Timeout.
		ContextTimeoutEnabled: true,
	})
	defer client.Close()

	store, err := redisstore.New(client, nil) // Redis's clock, 100ms timeout
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	key := "principal-42\x00" + "6f1c2a90-retry-me"
	fp := idempotency.Fingerprint("POST", "/v1/chat/completions", []byte(`{"model":"gpt-4o"}`))

	b, err := store.Begin(ctx, key, fp, 5*time.Minute)
	if err != nil {
		// Redis is unreachable: run without idempotency, or refuse, as
		// configured.
		log.Printf("idempotency store: %v", err)
		return
	}
	switch b.State {
	case idempotency.Completed:
		fmt.Printf("replay: %d, %d bytes\n", b.Record.Status, len(b.Record.Body))
	case idempotency.InProgress:
		fmt.Println("409 idempotency_conflict")
	case idempotency.Mismatch:
		fmt.Println("422 idempotency_mismatch")
	case idempotency.Started:
		// Run the handler, then keep its response for a day.
		rec := idempotency.Record{Status: 200, Body: []byte(`{"id":"chatcmpl-1"}`)}
		if err := store.Complete(ctx, key, b.Token, rec, 24*time.Hour); err != nil {
			log.Printf("not kept for replay: %v", err)
		}
	}
}
