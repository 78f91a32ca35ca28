// Package admissiontest is the conformance suite every admission.Store in
// gatekit passes: sequences of reservations and settlements at fixed
// instants, with the answers every store must give, in the manner of
// testing/fstest. A store that passes can replace another without
// changing any decision.
package admissiontest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/ratelimit"
)

// Config is what a store under test is made with.
type Config struct {
	// Now is the store's clock, which the suite moves.
	Now func() time.Time
	// TTL and SettleGrace are the store's.
	TTL, SettleGrace time.Duration
	// Location is the time zone of calendar periods.
	Location *time.Location
}

// NewStore makes an empty store configured by cfg. Stores sharing a
// backend must start it empty for each call (a fresh key prefix, say).
type NewStore func(t *testing.T, cfg Config) admission.Store

// Suite's fixed settings.
const (
	ttl   = 10 * time.Minute
	grace = time.Hour
)

// start is the suite's first instant: a Monday, 10:00 UTC.
var start = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(start.UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) config() Config {
	return Config{Now: c.Now, TTL: ttl, SettleGrace: grace, Location: time.UTC}
}
func (c *clock) store(t *testing.T, n NewStore) admission.Store { return n(t, c.config()) }

// Run runs every test of the suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("RateTakesUntilEmptyThenWaitsExactly", func(t *testing.T) { testRate(t, newStore) })
	t.Run("AllOrNothing", func(t *testing.T) { testAllOrNothing(t, newStore) })
	t.Run("RefundGivesBackUnused", func(t *testing.T) { testRefund(t, newStore) })
	t.Run("EachRefundClaimSettlesOnItsOwn", func(t *testing.T) { testSplitRefund(t, newStore) })
	t.Run("OverrunIsClampedToTheReservation", func(t *testing.T) { testOverrun(t, newStore) })
	t.Run("SlotsHoldUntilSettleOrExpiry", func(t *testing.T) { testSlots(t, newStore) })
	t.Run("BudgetHoldsExpire", func(t *testing.T) { testBudgetExpiry(t, newStore) })
	t.Run("SettleOnce", func(t *testing.T) { testSettleOnce(t, newStore) })
	t.Run("PeriodsStartOver", func(t *testing.T) { testPeriods(t, newStore) })
	t.Run("NeverFits", func(t *testing.T) { testNever(t, newStore) })
	t.Run("InvalidRequests", func(t *testing.T) { testInvalid(t, newStore) })
	t.Run("ConcurrentRequestsNeverExceedACap", func(t *testing.T) { testConcurrent(t, newStore) })
}

var ctx = context.Background()

func reserve(t *testing.T, s admission.Store, r *admission.Request) admission.Result {
	t.Helper()
	res, err := s.Reserve(ctx, r)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	return res
}

func settle(t *testing.T, s admission.Store, r *admission.Request, id admission.ID, u admission.Usage) admission.SettleResult {
	t.Helper()
	res, err := s.Settle(ctx, r, id, u)
	if err != nil {
		t.Fatalf("Settle(%v): %v", id, err)
	}
	return res
}

func balance(t *testing.T, s admission.Store, sc budget.Scope) budget.Balance {
	t.Helper()
	b, err := s.Balance(ctx, sc)
	if err != nil {
		t.Fatalf("Balance(%v): %v", sc, err)
	}
	return b
}

func scope(tag, id string, limit budget.Micros, p budget.Period) budget.Scope {
	return budget.Scope{Tag: tag, Kind: "key", ID: id, Limit: limit, Period: p}
}

func testRate(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	// 10 per minute: one unit every 6 s.
	r := &admission.Request{Tag: "acct", Rates: []admission.Rate{{Key: "k:rpm", Policy: ratelimit.PerMinute(10), N: 1}}}
	for i := range 10 {
		res := reserve(t, s, r)
		if !res.Allowed || res.Rates[0].Remaining != int64(9-i) || res.Rates[0].Limit != 10 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, res, 9-i)
		}
		// Nothing to give back: no reservation.
		if res.ID != (admission.ID{}) {
			t.Fatalf("request %d: a reservation %v for a request with nothing to settle", i, res.ID)
		}
	}
	res := reserve(t, s, r)
	if res.Allowed || res.Refused != admission.KindRate || res.Index != 0 || res.Never {
		t.Fatalf("11th request: %+v, want refused by rate 0", res)
	}
	if got := res.RetryAfter(); got != 6*time.Second {
		t.Fatalf("RetryAfter = %v, want 6s", got)
	}
	c.Add(6*time.Second - time.Millisecond)
	if res := reserve(t, s, r); res.Allowed {
		t.Fatalf("1 ms early: allowed")
	}
	c.Add(time.Millisecond)
	if res := reserve(t, s, r); !res.Allowed || res.Rates[0].Remaining != 0 {
		t.Fatalf("at RetryAfter: %+v, want allowed with 0 remaining", res)
	}
	// Another key under the same tag is another bucket.
	r2 := &admission.Request{Tag: "acct", Rates: []admission.Rate{{Key: "other", Policy: ratelimit.PerMinute(10), N: 10}}}
	if res := reserve(t, s, r2); !res.Allowed {
		t.Fatalf("other key: %+v", res)
	}
	// n == 0 checks without taking.
	r0 := &admission.Request{Tag: "acct", Rates: []admission.Rate{{Key: "other", Policy: ratelimit.PerMinute(10), N: 0}}}
	if res := reserve(t, s, r0); res.Allowed {
		t.Fatalf("empty bucket, n=0: allowed")
	}
	// A look at a bucket with room makes no reservation.
	look := &admission.Request{Tag: "acct", Rates: []admission.Rate{{Key: "fresh", Policy: ratelimit.PerMinute(10), N: 0}}}
	res = reserve(t, s, look)
	if !res.Allowed || res.ID != (admission.ID{}) || res.Rates[0].Remaining != 10 {
		t.Fatalf("a look: %+v, want allowed, 10 remaining and no reservation", res)
	}
}

func testAllOrNothing(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	sc := scope("acct", "k1", 1000, budget.Monthly)
	rpm := admission.Rate{Key: "rpm", Policy: ratelimit.PerMinute(100), N: 1}
	tpm := admission.Rate{Key: "tpm", Policy: ratelimit.PerMinute(1000), N: 400, Refund: true}
	slot := admission.Slot{Key: "par", Limit: 1}
	full := &admission.Request{Tag: "acct", Rates: []admission.Rate{rpm, tpm}, Slots: []admission.Slot{slot}, Budgets: []budget.Scope{sc}, Cost: 300}

	first := reserve(t, s, full)
	if !first.Allowed || first.InUse[0] != 1 || first.Balance.Held != 300 || first.Rates[1].Remaining != 600 {
		t.Fatalf("first: %+v", first)
	}
	// The slot is taken: the second is refused by it, and takes nothing.
	second := reserve(t, s, full)
	if second.Allowed || second.Refused != admission.KindSlot || second.Index != 0 || second.RetryAfter() != 0 {
		t.Fatalf("second: %+v, want refused by slot 0", second)
	}
	check := func(when string, rpmLeft, tpmLeft int64, held budget.Micros) {
		t.Helper()
		probe := &admission.Request{Tag: "acct", Rates: []admission.Rate{
			{Key: "rpm", Policy: rpm.Policy, N: 0}, {Key: "tpm", Policy: tpm.Policy, N: 0}}}
		res := reserve(t, s, probe)
		if res.Rates[0].Remaining != rpmLeft || res.Rates[1].Remaining != tpmLeft {
			t.Fatalf("%s: rpm %d tpm %d remaining, want %d and %d", when, res.Rates[0].Remaining, res.Rates[1].Remaining, rpmLeft, tpmLeft)
		}
		if b := balance(t, s, sc); b.Held != held {
			t.Fatalf("%s: held %v, want %v", when, b.Held, held)
		}
	}
	check("after a slot refusal", 99, 600, 300)

	// Slot free, budget short: refused by the budget, nothing taken.
	settle(t, s, full, first.ID, admission.Usage{Used: [admission.MaxRates]int64{1, 400}, Cost: 300})
	check("after settle", 99, 600, 0)
	big := *full
	big.Cost = 701
	res := reserve(t, s, &big)
	if res.Allowed || res.Refused != admission.KindBudget || res.Index != 0 || res.Never {
		t.Fatalf("over budget: %+v, want refused by budget 0", res)
	}
	if res.Balance.Spent != 300 || res.Balance.Remaining != 700 {
		t.Fatalf("refusal balance %+v, want spent 300, remaining 700", res.Balance)
	}
	check("after a budget refusal", 99, 600, 0)

	// The last rate claim short: nothing taken from the first.
	greedy := *full
	greedy.Rates = []admission.Rate{rpm, {Key: "tpm", Policy: tpm.Policy, N: 601, Refund: true}}
	res = reserve(t, s, &greedy)
	if res.Allowed || res.Refused != admission.KindRate || res.Index != 1 {
		t.Fatalf("tokens short: %+v, want refused by rate 1", res)
	}
	if !res.Rates[0].Allowed || res.Rates[1].Allowed {
		t.Fatalf("decisions %+v: want the first fitting and the second not", res.Rates[:2])
	}
	check("after a rate refusal", 99, 600, 0)

	// Two budgets: the second refusing takes nothing from the first.
	acct := budget.Scope{Tag: "acct", Kind: "account", ID: "acct", Limit: 100, Period: budget.Monthly}
	two := &admission.Request{Tag: "acct", Budgets: []budget.Scope{sc, acct}, Cost: 101}
	res = reserve(t, s, two)
	if res.Allowed || res.Refused != admission.KindBudget || res.Index != 1 {
		t.Fatalf("account short: %+v, want refused by budget 1", res)
	}
	check("after an account refusal", 99, 600, 0)
	two.Cost = 60
	res = reserve(t, s, two)
	if !res.Allowed || res.Budget != 1 || res.Balance.Remaining != 40 {
		t.Fatalf("both fit: %+v, want the account (40 left) as the tightest", res)
	}
}

func testRefund(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	r := &admission.Request{Tag: "a", Rates: []admission.Rate{
		{Key: "rpm", Policy: ratelimit.PerMinute(60), N: 1},
		{Key: "tpm", Policy: ratelimit.PerMinute(60_000), N: 5000, Refund: true}}}
	res := reserve(t, s, r)
	if !res.Allowed || res.Rates[1].Remaining != 55_000 {
		t.Fatalf("reserve: %+v", res)
	}
	settle(t, s, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{0, 1200}})
	probe := &admission.Request{Tag: "a", Rates: []admission.Rate{
		{Key: "rpm", Policy: ratelimit.PerMinute(60), N: 0}, {Key: "tpm", Policy: ratelimit.PerMinute(60_000), N: 0}}}
	got := reserve(t, s, probe)
	// The request is not given back; the 3,800 unused tokens are.
	if got.Rates[0].Remaining != 59 || got.Rates[1].Remaining != 58_800 {
		t.Fatalf("after settle: rpm %d, tpm %d remaining, want 59 and 58800", got.Rates[0].Remaining, got.Rates[1].Remaining)
	}
	// A refund never fills past the burst.
	c.Add(time.Minute)
	res = reserve(t, s, r)
	c.Add(time.Minute)
	settle(t, s, r, res.ID, admission.Usage{})
	if got := reserve(t, s, probe); got.Rates[1].Remaining != 60_000 {
		t.Fatalf("after a refund into a refilled bucket: %d remaining, want 60000", got.Rates[1].Remaining)
	}
}

// testSplitRefund is a request on input and output token limits beside
// a combined one and a requests limit: each Refund claim gets back what
// its own Used did not take, all or nothing at reserve.
func testSplitRefund(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	rates := func(rpm, tpm, in, out int64) []admission.Rate {
		return []admission.Rate{
			{Key: "rpm", Policy: ratelimit.PerMinute(60), N: rpm},
			{Key: "tpm", Policy: ratelimit.PerMinute(60_000), N: tpm, Refund: true},
			{Key: "itpm", Policy: ratelimit.PerMinute(40_000), N: in, Refund: true},
			{Key: "otpm", Policy: ratelimit.PerMinute(8_000), N: out, Refund: true},
		}
	}
	r := &admission.Request{Tag: "a", Holder: "k", Rates: rates(1, 3000, 2000, 1000)}
	res := reserve(t, s, r)
	if !res.Allowed || res.Rates[1].Remaining != 57_000 || res.Rates[2].Remaining != 38_000 || res.Rates[3].Remaining != 7_000 {
		t.Fatalf("reserve: %+v", res.Rates[:4])
	}
	// 500 prompt and 100 completion tokens used.
	settle(t, s, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{0, 600, 500, 100}})
	probe := &admission.Request{Tag: "a", Holder: "k", Rates: rates(0, 0, 0, 0)}
	got := reserve(t, s, probe)
	if got.Rates[0].Remaining != 59 || got.Rates[1].Remaining != 59_400 || got.Rates[2].Remaining != 39_500 || got.Rates[3].Remaining != 7_900 {
		t.Fatalf("after settle: %+v, want 59, 59400, 39500 and 7900 remaining", got.Rates[:4])
	}
	// The output claim alone does not fit: nothing is taken from the others.
	big := &admission.Request{Tag: "a", Holder: "k", Rates: rates(1, 8000, 100, 7950)}
	if res := reserve(t, s, big); res.Allowed || res.Refused != admission.KindRate || res.Index != 3 || res.Never {
		t.Fatalf("an output claim above what is left: %+v", res)
	}
	if got := reserve(t, s, probe); got.Rates[0].Remaining != 59 || got.Rates[1].Remaining != 59_400 || got.Rates[2].Remaining != 39_500 {
		t.Fatalf("a refusal took something: %+v", got.Rates[:4])
	}
}

func testOverrun(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	sc := scope("a", "k", 10_000, budget.Monthly)
	tpm := ratelimit.PerMinute(1000)
	r := &admission.Request{Tag: "a", Rates: []admission.Rate{{Key: "tpm", Policy: tpm, N: 100, Refund: true}},
		Budgets: []budget.Scope{sc}, Cost: 500}
	res := reserve(t, s, r)
	// The handler reports ten times what it was allowed.
	settle(t, s, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{1000}, Cost: 5000})
	if b := balance(t, s, sc); b.Spent != 500 || b.Held != 0 {
		t.Fatalf("balance %+v, want spent clamped to the 500 reserved", b)
	}
	probe := &admission.Request{Tag: "a", Rates: []admission.Rate{{Key: "tpm", Policy: tpm, N: 0}}}
	if got := reserve(t, s, probe); got.Rates[0].Remaining != 900 {
		t.Fatalf("tokens: %d remaining, want 900 (the 100 reserved, no more)", got.Rates[0].Remaining)
	}
}

func testSlots(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	r := &admission.Request{Tag: "a", Slots: []admission.Slot{{Key: "par", Limit: 2}}}
	a, b := reserve(t, s, r), reserve(t, s, r)
	if !a.Allowed || !b.Allowed || b.InUse[0] != 2 {
		t.Fatalf("two slots: %+v %+v", a, b)
	}
	if res := reserve(t, s, r); res.Allowed || res.Refused != admission.KindSlot || res.InUse[0] != 2 {
		t.Fatalf("third: %+v, want refused with 2 in use", res)
	}
	settle(t, s, r, a.ID, admission.Usage{})
	cres := reserve(t, s, r)
	if !cres.Allowed {
		t.Fatalf("after a settle: refused")
	}
	// b and c are never settled: they expire after the TTL.
	c.Add(ttl - time.Millisecond)
	if res := reserve(t, s, r); res.Allowed {
		t.Fatalf("before the TTL: allowed")
	}
	c.Add(time.Millisecond)
	if res := reserve(t, s, r); !res.Allowed || res.InUse[0] != 1 {
		t.Fatalf("at the TTL: %+v, want allowed with 1 in use", res)
	}
	// A slot limit is per key.
	other := &admission.Request{Tag: "a", Slots: []admission.Slot{{Key: "par2", Limit: 1}}}
	if res := reserve(t, s, other); !res.Allowed {
		t.Fatalf("other key: refused")
	}
}

func testBudgetExpiry(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	sc := scope("a", "k", 1000, budget.None)
	r := &admission.Request{Tag: "a", Budgets: []budget.Scope{sc}, Slots: []admission.Slot{{Key: "par", Limit: 1}}, Cost: 800}
	res := reserve(t, s, r)
	if !res.Allowed {
		t.Fatalf("reserve: %+v", res)
	}
	c.Add(ttl)
	if b := balance(t, s, sc); b.Held != 0 {
		t.Fatalf("after the TTL: held %v, want 0", b.Held)
	}
	again := reserve(t, s, r)
	if !again.Allowed {
		t.Fatalf("after the TTL: %+v", again)
	}
	// The expired one is settled late: its spend is recorded all the same.
	got := settle(t, s, r, res.ID, admission.Usage{Cost: 150})
	if !got.Expired {
		t.Fatalf("late settle: Expired false")
	}
	if b := balance(t, s, sc); b.Spent != 150 || b.Held != 800 {
		t.Fatalf("after the late settle: %+v, want spent 150, held 800", b)
	}
	// Past the grace it is forgotten.
	c.Add(ttl + grace)
	if _, err := s.Settle(ctx, r, again.ID, admission.Usage{Cost: 1}); !errors.Is(err, admission.ErrUnknownReservation) {
		t.Fatalf("settle past the grace: %v, want ErrUnknownReservation", err)
	}
	if b := balance(t, s, sc); b.Spent != 150 || b.Held != 0 {
		t.Fatalf("at the end: %+v, want spent 150", b)
	}
}

func testSettleOnce(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	sc := scope("a", "k", 1000, budget.None)
	r := &admission.Request{Tag: "a", Budgets: []budget.Scope{sc}, Cost: 100,
		Rates: []admission.Rate{{Key: "tpm", Policy: ratelimit.PerMinute(100), N: 100, Refund: true}},
		Slots: []admission.Slot{{Key: "par", Limit: 1}}}
	res := reserve(t, s, r)
	settle(t, s, r, res.ID, admission.Usage{Cost: 40})
	if _, err := s.Settle(ctx, r, res.ID, admission.Usage{Cost: 40}); !errors.Is(err, admission.ErrUnknownReservation) {
		t.Fatalf("second settle: %v, want ErrUnknownReservation", err)
	}
	if _, err := s.Settle(ctx, r, admission.ID{Tag: "a", Seq: res.ID.Seq + 1000}, admission.Usage{}); !errors.Is(err, admission.ErrUnknownReservation) {
		t.Fatalf("unknown id: %v, want ErrUnknownReservation", err)
	}
	if b := balance(t, s, sc); b.Spent != 40 {
		t.Fatalf("spent %v, want 40", b.Spent)
	}
	probe := &admission.Request{Tag: "a", Rates: []admission.Rate{{Key: "tpm", Policy: ratelimit.PerMinute(100), N: 0}},
		Slots: []admission.Slot{{Key: "par", Limit: 1}}}
	got := reserve(t, s, probe)
	if got.Rates[0].Remaining != 100 || !got.Allowed {
		t.Fatalf("after settles: %+v, want all tokens back once and the slot free", got)
	}
}

func testPeriods(t *testing.T, n NewStore) {
	c := newClock()
	c.Set(time.Date(2026, 3, 2, 23, 55, 0, 0, time.UTC))
	s := c.store(t, n)
	daily := scope("a", "k", 1000, budget.Daily)
	r := &admission.Request{Tag: "a", Budgets: []budget.Scope{daily}, Cost: 600}
	res := reserve(t, s, r)
	settle(t, s, r, res.ID, admission.Usage{Cost: 600})
	if got := reserve(t, s, r); got.Allowed {
		t.Fatalf("same day: allowed past the limit")
	}
	// Reserved before midnight, settled after: charged to the day it was made in.
	lr := &admission.Request{Tag: "a", Budgets: []budget.Scope{daily}, Cost: 300}
	late := reserve(t, s, lr)
	if !late.Allowed {
		t.Fatalf("300 more: refused")
	}
	c.Set(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC))
	settle(t, s, lr, late.ID, admission.Usage{Cost: 300})
	if b := balance(t, s, daily); b.Spent != 0 || b.Remaining != 1000 {
		t.Fatalf("the next day: %+v, want a fresh budget", b)
	}
	if got := reserve(t, s, r); !got.Allowed || got.Balance.Remaining != 400 {
		t.Fatalf("the next day: %+v, want allowed with 400 left", got)
	}
}

func testNever(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	tpm := ratelimit.PerMinute(10_000)
	r := &admission.Request{Tag: "a", Rates: []admission.Rate{{Key: "tpm", Policy: tpm, N: 10_001, Refund: true}}}
	if res := reserve(t, s, r); res.Allowed || !res.Never || res.Refused != admission.KindRate {
		t.Fatalf("more than the burst: %+v, want never", res)
	}
	sc := scope("a", "k", 1000, budget.Monthly)
	if res := reserve(t, s, &admission.Request{Tag: "a", Budgets: []budget.Scope{sc}, Cost: 1001}); res.Allowed || !res.Never || res.Refused != admission.KindBudget {
		t.Fatalf("more than the limit: %+v, want never", res)
	}
	zero := scope("a", "z", 0, budget.Monthly)
	if res := reserve(t, s, &admission.Request{Tag: "a", Budgets: []budget.Scope{zero}}); res.Allowed || !res.Never {
		t.Fatalf("a zero limit: %+v, want never", res)
	}
	// Exactly the burst fits.
	r.Rates[0].N = 10_000
	if res := reserve(t, s, r); !res.Allowed {
		t.Fatalf("exactly the burst: %+v", res)
	}
}

func testInvalid(t *testing.T, n NewStore) {
	c := newClock()
	s := c.store(t, n)
	sc := scope("a", "k", 1000, budget.Monthly)
	bad := map[string]*admission.Request{
		"no tag":          {Rates: []admission.Rate{{Key: "k", Policy: ratelimit.PerMinute(1), N: 1}}},
		"brace tag":       {Tag: "a{b}"},
		"empty rate key":  {Tag: "a", Rates: []admission.Rate{{Policy: ratelimit.PerMinute(1), N: 1}}},
		"bad policy":      {Tag: "a", Rates: []admission.Rate{{Key: "k", N: 1}}},
		"negative units":  {Tag: "a", Rates: []admission.Rate{{Key: "k", Policy: ratelimit.PerMinute(1), N: -1}}},
		"zero slot limit": {Tag: "a", Slots: []admission.Slot{{Key: "p"}}},
		"other tag":       {Tag: "b", Budgets: []budget.Scope{sc}},
		"negative cost":   {Tag: "a", Budgets: []budget.Scope{sc}, Cost: -1},
		"huge cost":       {Tag: "a", Budgets: []budget.Scope{sc}, Cost: budget.MaxMicros + 1},
		"twice":           {Tag: "a", Slots: []admission.Slot{{Key: "p", Limit: 1}, {Key: "p", Limit: 1}}},
	}
	for name, r := range bad {
		if _, err := s.Reserve(ctx, r); !errors.Is(err, admission.ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
}

// testConcurrent runs many goroutines whose reservations together ask for
// three times every cap, and checks that none is ever exceeded.
func testConcurrent(t *testing.T, n NewStore) {
	s := n(t, Config{Now: time.Now, TTL: ttl, SettleGrace: grace, Location: time.UTC})
	const (
		workers  = 32
		each     = 25
		parallel = 8
		tokens   = 10_000
		limit    = 50_000
	)
	sc := budget.Scope{Tag: "c", Kind: "account", ID: "c", Limit: limit, Period: budget.Monthly}
	// The tokens refill by a few per second at most: the test is over
	// long before they could matter.
	tpm := ratelimit.Policy{Limit: tokens, Window: 24 * time.Hour}
	// 800 requests x 40 tokens = 32,000 asked of 10,000; x 200 micros =
	// 160,000 of 50,000.
	r := &admission.Request{Tag: "c", Rates: []admission.Rate{{Key: "tpm", Policy: tpm, N: 40, Refund: true}},
		Slots: []admission.Slot{{Key: "par", Limit: parallel}}, Budgets: []budget.Scope{sc}, Cost: 200}
	var inFlight, most atomic.Int64
	var admitted, costs atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				res, err := s.Reserve(ctx, r)
				if err != nil {
					errs <- err
					return
				}
				if !res.Allowed {
					continue
				}
				now := inFlight.Add(1)
				for {
					m := most.Load()
					if now <= m || most.CompareAndSwap(m, now) {
						break
					}
				}
				if res.InUse[0] > parallel {
					errs <- errors.New("a reservation saw more slots in use than the limit")
				}
				admitted.Add(1)
				time.Sleep(50 * time.Microsecond) // hold the slot a little
				inFlight.Add(-1)
				// Every handler reports more than it was allowed.
				if _, err := s.Settle(ctx, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{400}, Cost: 2000}); err != nil {
					errs <- err
					return
				}
				costs.Add(200)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if most.Load() > parallel {
		t.Fatalf("%d requests in flight at once, limit %d", most.Load(), parallel)
	}
	b := balance(t, s, sc)
	if b.Spent > limit || b.Spent != budget.Micros(costs.Load()) {
		t.Fatalf("spent %v of %v; settled %d", b.Spent, sc.Limit, costs.Load())
	}
	if got := admitted.Load() * 40; got > tokens+40 {
		// Refills during the run add a unit every 8.64 s at most.
		t.Fatalf("%d tokens taken of %d", got, tokens)
	}
	if admitted.Load() == 0 {
		t.Fatalf("nothing admitted")
	}
}
