package ratelimit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/limitref"
	"github.com/gatekit/gatekit/ratelimit"
	"github.com/gatekit/gatekit/ratelimit/ratelimittest"
)

// decideRef is how the middleware decides on a Memory's key through a
// limitref.Ref.
var decideRef = limitref.MemoryDecide.(func(*ratelimit.Memory, *limitref.Ref, string, ratelimit.Policy, int64, bool) (ratelimit.Decision, error))

// Deciding through Refs gives exactly the decisions of Allow and
// Charge, while the shards' tables grow and entries move.
func TestMemoryRefDecidesAsAllowAndCharge(t *testing.T) {
	ctx := context.Background()
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	plain := newMemory(t, &ratelimit.MemoryConfig{Now: clock.Now})
	viaRef := newMemory(t, &ratelimit.MemoryConfig{Now: clock.Now})
	const keys = 400
	refs := make([]limitref.Ref, keys)
	policies := []ratelimit.Policy{ratelimit.PerMinute(30), ratelimit.PerSecond(5).WithBurst(8), ratelimit.PerHour(1000)}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 30_000 {
		k := rng.IntN(keys)
		key := fmt.Sprintf("key-%d", k)
		p := policies[k%len(policies)]
		n := rng.Int64N(4)
		var want, got ratelimit.Decision
		var werr, gerr error
		if rng.IntN(5) == 0 {
			want, werr = plain.Charge(ctx, key, p, n)
			got, gerr = decideRef(viaRef, &refs[k], key, p, n, true)
		} else {
			want, werr = plain.Allow(ctx, key, p, n)
			got, gerr = decideRef(viaRef, &refs[k], key, p, n, false)
		}
		if werr != nil || gerr != nil || got != want {
			t.Fatalf("op %d on %s: through the ref %+v (%v), plain %+v (%v)", i, key, got, gerr, want, werr)
		}
		if rng.IntN(10) == 0 {
			clock.Advance(time.Duration(rng.Int64N(3000)) * time.Millisecond)
		}
	}
	if plain.Len() != viaRef.Len() {
		t.Fatalf("%d keys tracked through refs, %d plainly", viaRef.Len(), plain.Len())
	}
}

// With keys evicted and put back all the time, a Ref still only ever
// reaches its own key's bucket: what it decides is what a plain look-up of
// the same key sees right after.
func TestMemoryRefNeverReachesAnotherKeysBucket(t *testing.T) {
	ctx := context.Background()
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: 64, Now: clock.Now})
	const keys = 1000
	refs := make([]limitref.Ref, keys)
	p := ratelimit.PerMinute(10)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 50_000 {
		k := rng.IntN(keys)
		key := fmt.Sprintf("key-%d", k)
		d, err := decideRef(m, &refs[k], key, p, 1+int64(k%3), false)
		if err != nil {
			t.Fatal(err)
		}
		seen, err := m.Allow(ctx, key, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		if seen.Remaining != d.Remaining {
			t.Fatalf("op %d on %s: the ref's decision left %d, the key's bucket holds %d", i, key, d.Remaining, seen.Remaining)
		}
	}
}

// Many goroutines deciding through shared Refs while keys are evicted:
// for the race detector, and for a lost update or a decision on a wrong
// bucket, which would let through more than a key's quota.
func TestMemoryRefConcurrent(t *testing.T) {
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: 4096, Now: clock.Now})
	const keys = 256
	refs := make([]limitref.Ref, keys)
	p := ratelimit.PerMinute(50)
	allowed := make([][keys]int, 16)
	var wg sync.WaitGroup
	for g := range allowed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 4000 {
				k := rng.IntN(keys)
				d, err := decideRef(m, &refs[k], fmt.Sprintf("key-%d", k), p, 1, false)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed[g][k]++
				}
			}
		}()
	}
	wg.Wait()
	for k := range keys {
		total := 0
		for g := range allowed {
			total += allowed[g][k]
		}
		if total > int(p.Limit) {
			t.Fatalf("key-%d: %d requests allowed on a frozen clock, quota %d", k, total, p.Limit)
		}
	}
}
