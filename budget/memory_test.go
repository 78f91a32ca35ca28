package budget_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/budget/budgettest"
)

func newMemory(tb testing.TB, cfg *budget.MemoryConfig) *budget.Memory {
	tb.Helper()
	m, err := budget.NewMemory(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestMemoryConformance(t *testing.T) {
	budgettest.Run(t, func(t *testing.T, now func() time.Time, loc *time.Location) budget.Ledger {
		return newMemory(t, &budget.MemoryConfig{Now: now, Location: loc})
	})
}

func TestNewMemoryRejectsNegativeDurations(t *testing.T) {
	for _, cfg := range []*budget.MemoryConfig{{HoldTTL: -time.Second}, {SettleGrace: -time.Second}} {
		if _, err := budget.NewMemory(cfg); err == nil {
			t.Errorf("NewMemory accepted %+v", cfg)
		}
	}
}

// epoch is the instant the memory tests start at.
var epoch = time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC)

func TestMemoryNeverOverspendsUnderConcurrency(t *testing.T) {
	clock := budgettest.NewClock(epoch)
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now})
	key := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 30 * budget.Dollar, Period: budget.Daily}
	acct := budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 25 * budget.Dollar, Period: budget.Monthly}
	scopes := []budget.Scope{key, acct}
	ctx := context.Background()

	const goroutines = 1000
	var spent, held, refused atomic.Int64
	var start, wg sync.WaitGroup
	start.Add(1)
	for g := range goroutines {
		wg.Go(func() {
			start.Wait()
			cost := budget.Micros(5+g%50) * budget.Cent // 5 to 54 cents: 29.5 USD in all
			r, err := m.Hold(ctx, scopes, cost)
			if err != nil {
				t.Error(err)
				return
			}
			if !r.Allowed {
				refused.Add(1)
				return
			}
			held.Add(int64(cost))
			actual := cost - budget.Micros(g%3)*budget.Cent
			if _, err := m.Settle(ctx, r.ID, actual); err != nil {
				t.Error(err)
				return
			}
			spent.Add(int64(actual))
		})
	}
	start.Done()
	wg.Wait()

	for _, sc := range scopes {
		b, err := m.Balance(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		if b.Held != 0 || int64(b.Spent) != spent.Load() {
			t.Errorf("%v: %+v, want nothing held and %v spent", sc, b, budget.Micros(spent.Load()))
		}
	}
	t.Logf("%d goroutines: %d refused, %v held and %v settled against a cap of %v",
		goroutines, refused.Load(), budget.Micros(held.Load()), budget.Micros(spent.Load()), acct.Limit)
	if got := budget.Micros(spent.Load()); got > acct.Limit {
		t.Errorf("settled %v, more than the cap %v", got, acct.Limit)
	}
	if refused.Load() == 0 {
		t.Error("no hold was refused: the test did not exceed the cap")
	}
	if n := m.Holds(); n != 0 {
		t.Errorf("%d holds remembered after every one was settled", n)
	}
}

func TestMemoryForgetsAbandonedHolds(t *testing.T) {
	clock := budgettest.NewClock(epoch)
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now, HoldTTL: time.Minute, SettleGrace: 5 * time.Minute})
	ctx := context.Background()
	key := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 100 * budget.Dollar, Period: budget.Daily}
	acct := budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 100 * budget.Dollar, Period: budget.Daily}
	for i := range 500 {
		if r, err := m.Hold(ctx, []budget.Scope{key, acct}, budget.Cent); err != nil || !r.Allowed {
			t.Fatalf("hold %d: %+v, %v", i, r, err)
		}
		clock.Advance(10 * time.Millisecond)
	}
	clock.Advance(time.Minute)
	for _, sc := range []budget.Scope{key, acct} {
		if b, _ := m.Balance(ctx, sc); b.Held != 0 || b.Spent != 0 {
			t.Fatalf("%v a TTL after 500 abandoned holds: %+v, want nothing held", sc, b)
		}
	}
	if n := m.Holds(); n != 500 {
		t.Fatalf("%d holds remembered within the grace, want 500", n)
	}
	clock.Advance(5 * time.Minute)
	m.Balance(ctx, key) // any call on the Tag notices
	if n := m.Holds(); n != 0 {
		t.Fatalf("%d holds remembered after TTL + grace, want 0", n)
	}
}

func TestMemoryHoldAndSettleAllocateNothing(t *testing.T) {
	clock := budgettest.NewClock(epoch)
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now})
	ctx := context.Background()
	scopes := []budget.Scope{
		{Tag: "acme", Kind: "key", ID: "k", Limit: 1000 * budget.Dollar, Period: budget.Daily},
		{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000 * budget.Dollar, Period: budget.Monthly},
	}
	warm := func() {
		r, _ := m.Hold(ctx, scopes, budget.Cent)
		m.Settle(ctx, r.ID, budget.Cent)
		r, _ = m.Hold(ctx, scopes, budget.Cent)
		m.Release(ctx, r.ID)
	}
	warm()
	for name, f := range map[string]func(){
		"HoldSettle": func() {
			r, _ := m.Hold(ctx, scopes, budget.Cent)
			m.Settle(ctx, r.ID, budget.Micro)
		},
		"HoldRelease": func() {
			r, _ := m.Hold(ctx, scopes, budget.Cent)
			m.Release(ctx, r.ID)
		},
		"Refused": func() { m.Hold(ctx, scopes, budget.MaxMicros) },
		"Balance": func() { m.Balance(ctx, scopes[0]) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}

func TestMemoryDropsEndedPeriods(t *testing.T) {
	clock := budgettest.NewClock(epoch)
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now})
	ctx := context.Background()
	for day := range 30 {
		for k := range 100 {
			sc := budget.Scope{Tag: "acme", Kind: "key", ID: fmt.Sprint(k), Limit: budget.Dollar, Period: budget.Daily}
			r, err := m.Hold(ctx, []budget.Scope{sc}, budget.Cent)
			if err != nil || !r.Allowed {
				t.Fatalf("day %d key %d: %+v, %v", day, k, r, err)
			}
			m.Settle(ctx, r.ID, budget.Cent)
		}
		clock.Advance(24 * time.Hour)
	}
	// Only the last day's budgets are kept, and they are not lost.
	if n := budget.MemoryCounters(m); n > 100 {
		t.Fatalf("%d budgets tracked after 30 days of 100 keys, want at most 100", n)
	}
}
