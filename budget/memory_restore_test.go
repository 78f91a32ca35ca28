package budget_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/budget/budgettest"
)

func TestMemoryTakeSettledReportsWhatSettlementsAdded(t *testing.T) {
	clock := budgettest.NewClock(epoch) // Tuesday 2030-01-15 10:00 UTC
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now, TrackSettled: true})
	ctx := context.Background()
	key := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 10 * budget.Dollar, Period: budget.Daily}
	acct := budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 10 * budget.Dollar, Period: budget.Monthly}
	life := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 10 * budget.Dollar}
	other := budget.Scope{Tag: "beta", Kind: "key", ID: "k", Limit: 10 * budget.Dollar, Period: budget.Daily}
	settle := func(amount budget.Micros, scopes ...budget.Scope) {
		t.Helper()
		r, err := m.Hold(ctx, scopes, budget.Dollar)
		if err != nil || !r.Allowed {
			t.Fatalf("Hold: %+v, %v", r, err)
		}
		if _, err := m.Settle(ctx, r.ID, amount); err != nil {
			t.Fatal(err)
		}
	}
	noLimit := func(s budget.Scope) budget.Scope { s.Limit = 0; return s }
	sorted := func(sp []budget.Spend) []budget.Spend {
		return slices.SortedFunc(slices.Values(sp), func(a, b budget.Spend) int {
			return strings.Compare(a.Scope.String()+a.Scope.Tag, b.Scope.String()+b.Scope.Tag)
		})
	}
	same := func(a, b budget.Spend) bool {
		return a.Scope == b.Scope && a.Start.Equal(b.Start) && a.Amount == b.Amount
	}
	day := time.Date(2030, 1, 15, 0, 0, 0, 0, time.UTC)
	month := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	settle(70*budget.Cent, key, acct, life)
	settle(20*budget.Cent, key, acct)
	settle(5*budget.Cent, other)
	// Nothing spent, nothing reported: a settlement of 0, a release.
	settle(0, key)
	r, _ := m.Hold(ctx, []budget.Scope{acct}, budget.Dollar)
	m.Release(ctx, r.ID)

	got := sorted(m.TakeSettled(nil))
	want := []budget.Spend{
		{Scope: noLimit(acct), Start: month, Amount: 90 * budget.Cent},
		{Scope: noLimit(key), Start: day, Amount: 90 * budget.Cent},
		{Scope: noLimit(other), Start: day, Amount: 5 * budget.Cent},
		{Scope: noLimit(life), Amount: 70 * budget.Cent},
	}
	if !slices.EqualFunc(got, want, same) {
		t.Fatalf("TakeSettled:\n%+v\nwant\n%+v", got, want)
	}
	if again := m.TakeSettled(nil); len(again) != 0 {
		t.Fatalf("a second TakeSettled reported %+v again", again)
	}
	settle(1, life)
	buf := m.TakeSettled(got[:0])
	if want := []budget.Spend{{Scope: noLimit(life), Amount: 1}}; !slices.EqualFunc(buf, want, same) || &buf[0] != &got[0] {
		t.Fatalf("TakeSettled(buf[:0]) = %+v, want %+v in buf", buf, want)
	}
	// Spending is what the ledger holds, taken or not.
	if b, _ := m.Balance(ctx, key); b.Spent != 90*budget.Cent {
		t.Fatalf("%v after TakeSettled: %+v", key, b)
	}
}

func TestMemoryTakeSettledReportsNothingUntracked(t *testing.T) {
	m := newMemory(t, nil)
	ctx := context.Background()
	sc := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: budget.Dollar}
	r, _ := m.Hold(ctx, []budget.Scope{sc}, budget.Cent)
	m.Settle(ctx, r.ID, budget.Cent)
	if got := m.TakeSettled(nil); got != nil {
		t.Fatalf("TakeSettled without TrackSettled: %+v", got)
	}
}

func TestMemoryRestoreAddsSpendingToItsPeriod(t *testing.T) {
	clock := budgettest.NewClock(epoch) // Tuesday 2030-01-15 10:00 UTC
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now, TrackSettled: true})
	ctx := context.Background()
	day := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 10 * budget.Dollar, Period: budget.Daily}
	month := budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 10 * budget.Dollar, Period: budget.Monthly}
	life := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 10 * budget.Dollar}
	today := time.Date(2030, 1, 15, 0, 0, 0, 0, time.UTC)

	for _, sp := range []budget.Spend{
		{Scope: day, Start: today, Amount: 2 * budget.Dollar},
		{Scope: day, Start: today, Amount: 1 * budget.Dollar},                   // adds up
		{Scope: day, Start: today.AddDate(0, 0, -1), Amount: 5 * budget.Dollar}, // yesterday: over
		{Scope: month, Start: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Amount: 4 * budget.Dollar},
		{Scope: month, Start: time.Date(2029, 12, 1, 0, 0, 0, 0, time.UTC), Amount: 9 * budget.Dollar}, // last month
		{Scope: life, Start: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), Amount: 6 * budget.Dollar},   // Start unused
	} {
		if err := m.Restore(sp); err != nil {
			t.Fatalf("Restore(%+v): %v", sp, err)
		}
	}
	for _, c := range []struct {
		scope budget.Scope
		spent budget.Micros
	}{{day, 3 * budget.Dollar}, {month, 4 * budget.Dollar}, {life, 6 * budget.Dollar}} {
		if b, _ := m.Balance(ctx, c.scope); b.Spent != c.spent || b.Held != 0 {
			t.Errorf("%v after Restore: %+v, want Spent %v", c.scope, b, c.spent)
		}
	}
	// Restored spending counts against holds like any other...
	if r, _ := m.Hold(ctx, []budget.Scope{day, month}, 6*budget.Dollar+1); r.Allowed || r.Scope != month {
		t.Errorf("Hold over the restored month: %+v, want refused by %v", r, month)
	}
	// ...and ends with its period.
	clock.Advance(14 * time.Hour)
	if b, _ := m.Balance(ctx, day); b.Spent != 0 {
		t.Errorf("the next day: %+v, want nothing spent", b)
	}
	if sp := m.TakeSettled(nil); len(sp) != 0 {
		t.Errorf("TakeSettled reported restored spending: %+v", sp)
	}
}

func TestMemoryRestoreRejectsInvalidSpending(t *testing.T) {
	m := newMemory(t, nil)
	good := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Period: budget.Daily}
	bad := good
	bad.Kind = "a:b"
	if err := m.Restore(budget.Spend{Scope: bad, Start: time.Now(), Amount: 1}); !errors.Is(err, budget.ErrInvalidScope) {
		t.Errorf("invalid scope: err = %v, want ErrInvalidScope", err)
	}
	if err := m.Restore(budget.Spend{Scope: good, Start: time.Now(), Amount: -1}); !errors.Is(err, budget.ErrInvalidAmount) {
		t.Errorf("negative amount: err = %v, want ErrInvalidAmount", err)
	}
}

func TestMemoryTrackingSettledAllocatesNothing(t *testing.T) {
	clock := budgettest.NewClock(epoch)
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now, TrackSettled: true})
	ctx := context.Background()
	scopes := []budget.Scope{
		{Tag: "acme", Kind: "key", ID: "k", Limit: 1000 * budget.Dollar, Period: budget.Daily},
		{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000 * budget.Dollar, Period: budget.Monthly},
	}
	buf := make([]budget.Spend, 0, 2)
	settle := func() {
		r, _ := m.Hold(ctx, scopes, budget.Cent)
		m.Settle(ctx, r.ID, budget.Micro)
	}
	settle()
	buf = m.TakeSettled(buf[:0])
	if n := testing.AllocsPerRun(1000, settle); n != 0 {
		t.Errorf("Hold and Settle: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		settle()
		buf = m.TakeSettled(buf[:0])
	}); n != 0 {
		t.Errorf("TakeSettled: %v allocations, want 0", n)
	}
	if len(buf) != 2 || buf[0].Amount != budget.Micro {
		t.Errorf("TakeSettled after a settlement: %+v", buf)
	}
}

func TestMemoryTakeSettledReportsForgottenBudgets(t *testing.T) {
	clock := budgettest.NewClock(epoch)
	m := newMemory(t, &budget.MemoryConfig{Now: clock.Now, TrackSettled: true})
	ctx := context.Background()
	day := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: budget.Dollar, Period: budget.Daily}
	r, _ := m.Hold(ctx, []budget.Scope{day}, budget.Cent)
	m.Settle(ctx, r.ID, budget.Cent)
	// Two days on, the budget's period has ended and a call drops it...
	clock.Advance(48 * time.Hour)
	m.Balance(ctx, day)
	if n := budget.MemoryCounters(m); n != 0 {
		t.Fatalf("%d budgets tracked, want the ended one dropped", n)
	}
	// ...but what it spent is still reported, once.
	got := m.TakeSettled(nil)
	if len(got) != 1 || got[0].Amount != budget.Cent || !got[0].Start.Equal(time.Date(2030, 1, 15, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("TakeSettled: %+v, want the cent spent on January 15", got)
	}
}
