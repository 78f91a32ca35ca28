package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gatekit/gatekit/idempotency"
)

func ExampleNewMemory() {
	// A fixed clock, so that the output does not depend on timing.
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	store, err := idempotency.NewMemory(&idempotency.MemoryConfig{
		Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	// The middleware scopes the client's Idempotency-Key to its principal.
	key := "principal-42\x00" + "6f1c2a90-retry-me"
	body := []byte(`{"model":"gpt-4o","messages":[]}`)
	fp := idempotency.Fingerprint("POST", "/v1/chat/completions", body)

	// The first request claims the key and runs.
	b, err := store.Begin(ctx, key, fp, time.Minute)
	if err != nil {
		panic(err) // a store failure; Memory never fails
	}
	fmt.Println("first:", b.State)

	// A duplicate arrives while it runs: 409.
	dup, _ := store.Begin(ctx, key, fp, time.Minute)
	fmt.Println("duplicate:", dup.State)

	// The first request finishes: keep its response for a day.
	err = store.Complete(ctx, key, b.Token, idempotency.Record{
		Status: http.StatusOK,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   []byte(`{"id":"chatcmpl-1"}`),
	}, 24*time.Hour)
	if err != nil {
		panic(err)
	}

	// A retry is answered from the record; a different payload is refused.
	retry, _ := store.Begin(ctx, key, fp, time.Minute)
	fmt.Println("retry:", retry.State, retry.Record.Status, string(retry.Record.Body))
	other := idempotency.Fingerprint("POST", "/v1/chat/completions", []byte(`{}`))
	reuse, _ := store.Begin(ctx, key, other, time.Minute)
	fmt.Println("other payload:", reuse.State)

	// A day later the key is free again.
	now = now.Add(24 * time.Hour)
	later, _ := store.Begin(ctx, key, fp, time.Minute)
	fmt.Println("a day later:", later.State)
	// Output:
	// first: Started
	// duplicate: InProgress
	// retry: Completed 200 {"id":"chatcmpl-1"}
	// other payload: Mismatch
	// a day later: Started
}
