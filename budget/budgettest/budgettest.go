// Package budgettest is the conformance suite every budget.Ledger in gatekit
// passes, and the fake clock it drives them with.
//
// A ledger's test calls Run with a constructor; Run then replays sequences of
// holds, settlements, releases and balance checks at fixed instants, in
// America/New_York (across its clock changes) and in UTC, and compares every
// answer field by field, exactly.
package budgettest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // the suite's time zones, wherever it runs

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/internal/testclock"
)

// Clock is a fake clock, safe for concurrent use, that moves only when told:
// c.Now reads it (pass c.Now where a clock is expected), c.Set(t) moves it to
// t and c.Advance(d) moves it forward by d.
type Clock = testclock.Clock

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// NewLedger makes the Ledger under test. now is the clock and loc the time
// zone it must use (nil means the Ledger's default, UTC); its HoldTTL and
// SettleGrace must be the defaults, budget.DefaultHoldTTL and
// budget.DefaultSettleGrace. Each call must return a Ledger that shares no
// budgets or holds with those returned before (for a shared backend, use a
// fresh key prefix).
type NewLedger func(t *testing.T, now func() time.Time, loc *time.Location) budget.Ledger

// Run runs the conformance suite against ledgers made by newLedger.
func Run(t *testing.T, newLedger NewLedger) {
	t.Run("Sequences", func(t *testing.T) { runSequences(t, newLedger) })
	t.Run("HoldIDsAreUnique", func(t *testing.T) { runUniqueIDs(t, newLedger) })
	t.Run("ConcurrentHoldsNeverOverspend", func(t *testing.T) { runConcurrent(t, newLedger) })
	t.Run("InvalidArgumentsAreErrors", func(t *testing.T) { runInvalid(t, newLedger) })
}

const (
	usd   = budget.Dollar
	cent  = budget.Cent
	micro = budget.Micro
)

// newYork is the suite's zone: its days last 23 hours on 2030-03-10 and 25
// hours on 2030-11-03.
func newYork() *time.Location {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		panic(err) // time/tzdata is linked in: cannot happen
	}
	return loc
}

// The budgets the sequences use: all in one account, so that a hold may
// span any of them.
var (
	keyDaily  = budget.Scope{Tag: "acme", Kind: "key", ID: "k1", Limit: 10 * usd, Period: budget.Daily}
	key2Daily = budget.Scope{Tag: "acme", Kind: "key", ID: "k2", Limit: 10 * usd, Period: budget.Daily}
	acctMonth = budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 15 * usd, Period: budget.Monthly}
	keyWeekly = budget.Scope{Tag: "acme", Kind: "key", ID: "k1", Limit: 10 * usd, Period: budget.Weekly}
	keyMonth  = budget.Scope{Tag: "acme", Kind: "key", ID: "k1", Limit: 20 * usd, Period: budget.Monthly}
	keyLife   = budget.Scope{Tag: "acme", Kind: "key", ID: "k1", Limit: 10 * usd, Period: budget.None}
	keyZero   = budget.Scope{Tag: "acme", Kind: "key", ID: "k0", Limit: 0, Period: budget.Daily}
	acctZero  = budget.Scope{Tag: "zero", Kind: "account", ID: "zero", Limit: 0, Period: budget.Monthly}
	zeroKey   = budget.Scope{Tag: "zero", Kind: "key", ID: "zk", Limit: 10 * usd, Period: budget.Daily}
	// The same kind and id as keyDaily under another Tag: another budget.
	otherTag = budget.Scope{Tag: "beta", Kind: "key", ID: "k1", Limit: 10 * usd, Period: budget.Daily}
)

// with returns s with another Limit.
func with(s budget.Scope, limit budget.Micros) budget.Scope {
	s.Limit = limit
	return s
}

type op uint8

const (
	opHold op = iota
	opSettle
	opRelease
	opBalance
)

func (o op) String() string {
	return [...]string{"Hold", "Settle", "Release", "Balance"}[o]
}

// step is one call at an instant and what it must answer. A zero when
// keeps the previous step's instant.
type step struct {
	when   time.Time
	op     op
	hold   string // the hold the step makes (Hold) or acts on
	scopes []budget.Scope
	amount budget.Micros
	want   want
}

// want is a step's expected answer: the error, or a result whose Scope is
// scope and whose Balance has scope's Limit and spent and held; resets, when
// not zero, is the expected ResetsAt, which otherwise is the end of scope's
// period at the step's instant. A release expects only its error.
type want struct {
	err          error
	allowed      bool
	scope        budget.Scope
	spent, held  budget.Micros
	resets       time.Time
	settledHeld  budget.Micros
	expired      bool
	checkBalance bool // false for done()
}

func hold(name string, amount budget.Micros, scopes ...budget.Scope) step {
	return step{op: opHold, hold: name, scopes: scopes, amount: amount}
}

func settle(name string, actual budget.Micros) step {
	return step{op: opSettle, hold: name, amount: actual}
}

func release(name string) step { return step{op: opRelease, hold: name} }

func balance(s budget.Scope) step { return step{op: opBalance, scopes: []budget.Scope{s}} }

// at returns s made at t.
func (s step) at(t time.Time) step {
	s.when = t
	return s
}

// is returns s expecting w.
func (s step) is(w want) step {
	s.want = w
	return s
}

// ok: allowed, and scope's balance is spent and held afterwards.
func ok(scope budget.Scope, spent, held budget.Micros) want {
	return want{allowed: true, scope: scope, spent: spent, held: held, checkBalance: true}
}

// refused: refused by scope, whose balance is spent and held.
func refused(scope budget.Scope, spent, held budget.Micros) want {
	return want{scope: scope, spent: spent, held: held, checkBalance: true}
}

// bal: scope's Balance is spent and held.
func bal(scope budget.Scope, spent, held budget.Micros) want {
	return want{scope: scope, spent: spent, held: held, checkBalance: true}
}

// settled: a settlement of a hold that had reserved heldWas, after which
// scope's balance is spent and held.
func settled(heldWas budget.Micros, expired bool, scope budget.Scope, spent, held budget.Micros) want {
	return want{settledHeld: heldWas, expired: expired, scope: scope, spent: spent, held: held, checkBalance: true}
}

// unknown: the call fails with ErrUnknownHold.
func unknown() want { return want{err: budget.ErrUnknownHold} }

// done: the call succeeds (for Release, which answers nothing else).
func done() want { return want{} }

// resetting returns w expecting ResetsAt t.
func (w want) resetting(t time.Time) want {
	w.resets = t
	return w
}

type sequence struct {
	name  string
	loc   *time.Location
	steps []step
}

func sequences() []sequence {
	ny := newYork()
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, ny) }
	t0 := at(2030, time.January, 15, 10, 0) // a Tuesday
	ttl := budget.DefaultHoldTTL
	grace := budget.DefaultSettleGrace
	const ms = time.Millisecond

	return []sequence{
		{"HoldWithinAndOverTheLimit", ny, []step{
			hold("a", 4*usd, keyDaily).at(t0).is(ok(keyDaily, 0, 4*usd)),
			hold("b", 6*usd, keyDaily).is(ok(keyDaily, 0, 10*usd)),
			hold("c", 1*micro, keyDaily).is(refused(keyDaily, 0, 10*usd)),
			hold("d", 0, keyDaily).is(refused(keyDaily, 0, 10*usd)),
			balance(keyDaily).is(bal(keyDaily, 0, 10*usd)),
			settle("a", 4*usd).is(settled(4*usd, false, keyDaily, 4*usd, 6*usd)),
			balance(keyDaily).is(bal(keyDaily, 4*usd, 6*usd)),
		}},
		{"ZeroHoldsAreAllowedUntilTheBudgetIsExhausted", ny, []step{
			hold("a", 0, keyDaily).at(t0).is(ok(keyDaily, 0, 0)),
			hold("b", 10*usd-1, keyDaily).is(ok(keyDaily, 0, 10*usd-1)),
			hold("c", 0, keyDaily).is(ok(keyDaily, 0, 10*usd-1)),
			hold("e", 1, keyDaily).is(ok(keyDaily, 0, 10*usd)),
			hold("d", 0, keyDaily).is(refused(keyDaily, 0, 10*usd)),
			settle("a", 0).is(settled(0, false, keyDaily, 0, 10*usd)),
			release("e").is(done()),
			settle("c", 2*usd).is(settled(0, false, keyDaily, 2*usd, 10*usd-1)),
			balance(keyDaily).is(bal(keyDaily, 2*usd, 10*usd-1)),
		}},
		{"AllOrNothingAcrossScopes", ny, []step{
			hold("a", 8*usd, keyDaily, acctMonth).at(t0).is(ok(keyDaily, 0, 8*usd)),
			// The account has 7 left: it refuses though key 2 has room.
			hold("b", 8*usd, key2Daily, acctMonth).is(refused(acctMonth, 0, 8*usd)),
			balance(key2Daily).is(bal(key2Daily, 0, 0)),
			hold("c", 7*usd, key2Daily, acctMonth).is(ok(acctMonth, 0, 15*usd)),
			hold("d", 1*usd, keyDaily, acctMonth).is(refused(acctMonth, 0, 15*usd)),
			balance(keyDaily).is(bal(keyDaily, 0, 8*usd)),
			release("c").is(done()),
			// Key 1 has 2 left: it refuses though the account has room,
			// wherever it is in the list.
			hold("e", 3*usd, keyDaily, acctMonth).is(refused(keyDaily, 0, 8*usd)),
			hold("f", 3*usd, acctMonth, keyDaily).is(refused(keyDaily, 0, 8*usd)),
			balance(acctMonth).is(bal(acctMonth, 0, 8*usd)),
			// The first scope that refuses is the one named.
			hold("g", 9*usd, keyDaily, acctMonth).is(refused(keyDaily, 0, 8*usd)),
			hold("h", 9*usd, acctMonth, keyDaily).is(refused(acctMonth, 0, 8*usd)),
			settle("a", 5*usd).is(settled(8*usd, false, keyDaily, 5*usd, 0)),
			balance(acctMonth).is(bal(acctMonth, 5*usd, 0)),
			balance(key2Daily).is(bal(key2Daily, 0, 0)),
		}},
		{"SettleLowerAndHigherThanHeld", ny, []step{
			hold("a", 4*usd, keyDaily, acctMonth).at(t0).is(ok(keyDaily, 0, 4*usd)),
			settle("a", 3*usd).is(settled(4*usd, false, keyDaily, 3*usd, 0)),
			balance(acctMonth).is(bal(acctMonth, 3*usd, 0)),
			hold("b", 5*usd, keyDaily).is(ok(keyDaily, 3*usd, 5*usd)),
			settle("b", 6*usd+50*cent).is(settled(5*usd, false, keyDaily, 9*usd+50*cent, 0)),
			hold("c", 1*usd, keyDaily).is(refused(keyDaily, 9*usd+50*cent, 0)),
			hold("d", 50*cent, keyDaily).is(ok(keyDaily, 9*usd+50*cent, 50*cent)),
			// Costs above the hold are recorded in full: Spent exceeds
			// the Limit and Remaining stays at 0.
			settle("d", 2*usd).is(settled(50*cent, false, keyDaily, 11*usd+50*cent, 0)),
			balance(keyDaily).is(bal(keyDaily, 11*usd+50*cent, 0)),
			settle("d", 1*usd).is(unknown()),
			hold("e", 0, keyDaily).is(refused(keyDaily, 11*usd+50*cent, 0)),
			balance(keyDaily).is(bal(keyDaily, 11*usd+50*cent, 0)),
		}},
		{"Release", ny, []step{
			hold("a", 5*usd, keyDaily, acctMonth).at(t0).is(ok(keyDaily, 0, 5*usd)),
			release("a").is(done()),
			balance(keyDaily).is(bal(keyDaily, 0, 0)),
			balance(acctMonth).is(bal(acctMonth, 0, 0)),
			release("a").is(unknown()),
			settle("a", 1*usd).is(unknown()),
			balance(keyDaily).is(bal(keyDaily, 0, 0)),
		}},
		{"SettleNamesTheLimitsGivenToHold", ny, []step{
			hold("a", 4*usd, with(keyDaily, 5*usd)).at(t0).is(ok(with(keyDaily, 5*usd), 0, 4*usd)),
			// Another request sees a higher limit: the hold keeps its own.
			hold("b", 4*usd, keyDaily).is(ok(keyDaily, 0, 8*usd)),
			settle("a", 4*usd).is(settled(4*usd, false, with(keyDaily, 5*usd), 4*usd, 4*usd)),
		}},
		{"HoldsExpireAfterTheirTTL", ny, []step{
			hold("a", 4*usd, keyDaily, acctMonth).at(t0).is(ok(keyDaily, 0, 4*usd)),
			hold("b", 3*usd, keyDaily).at(t0.Add(time.Minute)).is(ok(keyDaily, 0, 7*usd)),
			balance(keyDaily).at(t0.Add(ttl - ms)).is(bal(keyDaily, 0, 7*usd)),
			balance(keyDaily).at(t0.Add(ttl)).is(bal(keyDaily, 0, 3*usd)),
			balance(acctMonth).is(bal(acctMonth, 0, 0)),
			balance(keyDaily).at(t0.Add(time.Minute + ttl)).is(bal(keyDaily, 0, 0)),
			hold("c", 10*usd, keyDaily, acctMonth).is(ok(keyDaily, 0, 10*usd)),
		}},
		{"ExpiryIsNoticedByEveryCall", ny, []step{
			hold("a", 10*usd, keyDaily).at(t0).is(ok(keyDaily, 0, 10*usd)),
			hold("b", 10*usd, keyDaily).at(t0.Add(ttl - ms)).is(refused(keyDaily, 0, 10*usd)),
			hold("c", 10*usd, keyDaily).at(t0.Add(ttl)).is(ok(keyDaily, 0, 10*usd)),
		}},
		{"SettleAfterExpiryRecordsTheSpend", ny, []step{
			hold("a", 4*usd, keyDaily, acctMonth).at(t0).is(ok(keyDaily, 0, 4*usd)),
			balance(keyDaily).at(t0.Add(ttl)).is(bal(keyDaily, 0, 0)),
			settle("a", 3*usd).at(t0.Add(30 * time.Minute)).is(settled(4*usd, true, keyDaily, 3*usd, 0)),
			balance(acctMonth).is(bal(acctMonth, 3*usd, 0)),
			settle("a", 3*usd).is(unknown()),
			// Up to the end of the grace.
			hold("b", 1*usd, keyDaily).at(t0.Add(time.Hour)).is(ok(keyDaily, 3*usd, 1*usd)),
			settle("b", 2*usd).at(t0.Add(time.Hour + ttl + grace - ms)).is(settled(1*usd, true, keyDaily, 5*usd, 0)),
			// Not after.
			hold("c", 1*usd, keyDaily).at(t0.Add(3 * time.Hour)).is(ok(keyDaily, 5*usd, 1*usd)),
			settle("c", 2*usd).at(t0.Add(3*time.Hour + ttl + grace)).is(unknown()),
			balance(keyDaily).is(bal(keyDaily, 5*usd, 0)),
			// Releasing an expired hold forgets it.
			hold("d", 1*usd, keyDaily).at(t0.Add(5 * time.Hour)).is(ok(keyDaily, 5*usd, 1*usd)),
			release("d").at(t0.Add(5*time.Hour + ttl)).is(done()),
			settle("d", 1*usd).is(unknown()),
			balance(keyDaily).is(bal(keyDaily, 5*usd, 0)),
		}},
		{"ALimitOfZeroRefusesEverything", ny, []step{
			balance(keyZero).at(t0).is(bal(keyZero, 0, 0)),
			hold("a", 1*micro, keyZero).is(refused(keyZero, 0, 0)),
			hold("b", 0, keyZero).is(refused(keyZero, 0, 0)),
			hold("c", 1*usd, zeroKey, acctZero).is(refused(acctZero, 0, 0)),
			hold("d", 0, zeroKey, acctZero).is(refused(acctZero, 0, 0)),
			balance(zeroKey).is(bal(zeroKey, 0, 0)),
		}},
		{"AnUntouchedBudgetIsWhole", ny, []step{
			balance(keyDaily).at(t0).is(bal(keyDaily, 0, 0).resetting(at(2030, time.January, 16, 0, 0))),
			balance(keyWeekly).is(bal(keyWeekly, 0, 0).resetting(at(2030, time.January, 21, 0, 0))),
			balance(acctMonth).is(bal(acctMonth, 0, 0).resetting(at(2030, time.February, 1, 0, 0))),
			balance(keyLife).is(bal(keyLife, 0, 0)),
		}},
		{"ALimitChangeAppliesToWhatWasSpent", ny, []step{
			hold("a", 10*usd, keyDaily).at(t0).is(ok(keyDaily, 0, 10*usd)),
			settle("a", 6*usd).is(settled(10*usd, false, keyDaily, 6*usd, 0)),
			hold("b", 1*usd, with(keyDaily, 5*usd)).is(refused(with(keyDaily, 5*usd), 6*usd, 0)),
			hold("c", 1*usd, with(keyDaily, 20*usd)).is(ok(with(keyDaily, 20*usd), 6*usd, 1*usd)),
			balance(with(keyDaily, 20*usd)).is(bal(with(keyDaily, 20*usd), 6*usd, 1*usd)),
		}},
		{"BudgetsAreIdentifiedByTagKindIDAndPeriod", ny, []step{
			hold("a", 10*usd, keyDaily).at(t0).is(ok(keyDaily, 0, 10*usd)),
			hold("b", 10*usd, otherTag).is(ok(otherTag, 0, 10*usd)),
			hold("c", 1*usd, keyMonth).is(ok(keyMonth, 0, 1*usd)),
			hold("d", 1*usd, keyLife).is(ok(keyLife, 0, 1*usd)),
			hold("e", 1*usd, keyWeekly).is(ok(keyWeekly, 0, 1*usd)),
			balance(keyDaily).is(bal(keyDaily, 0, 10*usd)),
		}},
		{"DailyAndMonthlyBudgetsOnTheFirstOfTheMonth", ny, []step{
			// Both periods start at the same instant: still two budgets.
			hold("a", 3*usd, keyDaily, keyMonth).at(at(2030, time.February, 1, 0, 0)).is(ok(keyDaily, 0, 3*usd)),
			settle("a", 3*usd).is(settled(3*usd, false, keyDaily, 3*usd, 0)),
			hold("b", 7*usd, keyDaily, keyMonth).is(ok(keyDaily, 3*usd, 7*usd)),
			settle("b", 7*usd).is(settled(7*usd, false, keyDaily, 10*usd, 0)),
			balance(keyMonth).is(bal(keyMonth, 10*usd, 0)),
			// A new day; the same month.
			hold("c", 5*usd, keyMonth, keyDaily).at(at(2030, time.February, 2, 0, 0)).is(ok(keyMonth, 10*usd, 5*usd)),
			hold("d", 6*usd, keyMonth, keyDaily).is(refused(keyMonth, 10*usd, 5*usd)),
		}},
		{"DailyAcrossTheSpringClockChange", ny, []step{
			hold("a", 4*usd, keyDaily).at(at(2030, time.March, 9, 23, 59)).
				is(ok(keyDaily, 0, 4*usd).resetting(utc(2030, time.March, 10, 5, 0))),
			settle("a", 4*usd).is(settled(4*usd, false, keyDaily, 4*usd, 0).resetting(utc(2030, time.March, 10, 5, 0))),
			// 2030-03-10 lasts 23 hours, from 05:00 to 04:00 UTC.
			balance(keyDaily).at(at(2030, time.March, 10, 0, 0)).
				is(bal(keyDaily, 0, 0).resetting(utc(2030, time.March, 11, 4, 0))),
			hold("b", 10*usd, keyDaily).at(at(2030, time.March, 10, 22, 30)).
				is(ok(keyDaily, 0, 10*usd).resetting(utc(2030, time.March, 11, 4, 0))),
			settle("b", 10*usd).is(settled(10*usd, false, keyDaily, 10*usd, 0).resetting(utc(2030, time.March, 11, 4, 0))),
			balance(keyDaily).at(utc(2030, time.March, 11, 4, 0).Add(-ms)).
				is(bal(keyDaily, 10*usd, 0).resetting(utc(2030, time.March, 11, 4, 0))),
			balance(keyDaily).at(utc(2030, time.March, 11, 4, 0)).
				is(bal(keyDaily, 0, 0).resetting(utc(2030, time.March, 12, 4, 0))),
		}},
		{"DailyAcrossTheAutumnClockChange", ny, []step{
			// 2030-11-03 lasts 25 hours, from 04:00 to 05:00 UTC.
			hold("a", 6*usd, keyDaily).at(at(2030, time.November, 3, 0, 0)).
				is(ok(keyDaily, 0, 6*usd).resetting(utc(2030, time.November, 4, 5, 0))),
			settle("a", 6*usd).is(settled(6*usd, false, keyDaily, 6*usd, 0).resetting(utc(2030, time.November, 4, 5, 0))),
			// 23:30 EST, 24.5 hours after midnight: still November 3.
			hold("b", 5*usd, keyDaily).at(utc(2030, time.November, 4, 4, 30)).
				is(refused(keyDaily, 6*usd, 0).resetting(utc(2030, time.November, 4, 5, 0))),
			hold("c", 5*usd, keyDaily).at(utc(2030, time.November, 4, 5, 0)).
				is(ok(keyDaily, 0, 5*usd).resetting(utc(2030, time.November, 5, 5, 0))),
		}},
		{"SpendingCountsInThePeriodOfItsHold", ny, []step{
			hold("a", 4*usd, keyDaily, acctMonth).at(at(2030, time.January, 31, 23, 59)).is(ok(keyDaily, 0, 4*usd)),
			// A new day and a new month: the hold is not in them.
			balance(keyDaily).at(at(2030, time.February, 1, 0, 1)).is(bal(keyDaily, 0, 0)),
			balance(acctMonth).is(bal(acctMonth, 0, 0)),
			settle("a", 3*usd).is(settled(4*usd, false, keyDaily, 3*usd, 0).resetting(at(2030, time.February, 1, 0, 0))),
			balance(keyDaily).is(bal(keyDaily, 0, 0)),
			balance(acctMonth).is(bal(acctMonth, 0, 0)),
			hold("b", 15*usd, acctMonth).is(ok(acctMonth, 0, 15*usd)),
		}},
		{"WeeksStartOnMonday", ny, []step{
			balance(keyWeekly).at(at(2030, time.March, 4, 0, 0)). // a Monday
										is(bal(keyWeekly, 0, 0).resetting(at(2030, time.March, 11, 0, 0))),
			hold("a", 7*usd, keyWeekly).at(at(2030, time.March, 10, 23, 0)). // Sunday, 23:00 EDT
												is(ok(keyWeekly, 0, 7*usd).resetting(utc(2030, time.March, 11, 4, 0))),
			settle("a", 7*usd).is(settled(7*usd, false, keyWeekly, 7*usd, 0).resetting(utc(2030, time.March, 11, 4, 0))),
			hold("b", 4*usd, keyWeekly).is(refused(keyWeekly, 7*usd, 0)),
			hold("c", 4*usd, keyWeekly).at(at(2030, time.March, 11, 0, 0)).
				is(ok(keyWeekly, 0, 4*usd).resetting(at(2030, time.March, 18, 0, 0))),
			// The hold has long expired.
			balance(keyWeekly).at(at(2030, time.March, 17, 23, 59)).
				is(bal(keyWeekly, 0, 0).resetting(at(2030, time.March, 18, 0, 0))),
		}},
		{"MonthsFollowTheCalendar", ny, []step{
			hold("a", 20*usd, keyMonth).at(at(2030, time.October, 31, 23, 59)).
				is(ok(keyMonth, 0, 20*usd).resetting(utc(2030, time.November, 1, 4, 0))),
			settle("a", 20*usd).is(settled(20*usd, false, keyMonth, 20*usd, 0)),
			// November starts in EDT and ends in EST.
			hold("b", 20*usd, keyMonth).at(at(2030, time.November, 1, 0, 0)).
				is(ok(keyMonth, 0, 20*usd).resetting(utc(2030, time.December, 1, 5, 0))),
			settle("b", 1*usd).is(settled(20*usd, false, keyMonth, 1*usd, 0)),
			balance(keyMonth).at(at(2030, time.December, 31, 23, 59)).
				is(bal(keyMonth, 0, 0).resetting(at(2031, time.January, 1, 0, 0))),
			balance(keyMonth).at(at(2031, time.February, 28, 12, 0)).
				is(bal(keyMonth, 0, 0).resetting(at(2031, time.March, 1, 0, 0))),
		}},
		{"ALifetimeBudgetNeverResets", ny, []step{
			hold("a", 6*usd, keyLife).at(t0).is(ok(keyLife, 0, 6*usd)),
			settle("a", 6*usd).is(settled(6*usd, false, keyLife, 6*usd, 0)),
			balance(keyLife).at(at(2035, time.June, 1, 0, 0)).is(bal(keyLife, 6*usd, 0)),
			hold("b", 5*usd, keyLife).is(refused(keyLife, 6*usd, 0)),
			hold("c", 4*usd, keyLife).is(ok(keyLife, 6*usd, 4*usd)),
		}},
		{"TheDefaultZoneIsUTC", nil, []step{
			hold("a", 10*usd, keyDaily).at(utc(2030, time.January, 15, 23, 59)).
				is(ok(keyDaily, 0, 10*usd).resetting(utc(2030, time.January, 16, 0, 0))),
			settle("a", 10*usd).is(settled(10*usd, false, keyDaily, 10*usd, 0)),
			hold("b", 10*usd, keyDaily).at(utc(2030, time.January, 16, 0, 0)).
				is(ok(keyDaily, 0, 10*usd).resetting(utc(2030, time.January, 17, 0, 0))),
			balance(keyWeekly).is(bal(keyWeekly, 0, 0).resetting(utc(2030, time.January, 21, 0, 0))),
		}},
	}
}

func utc(y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, time.UTC)
}

func runSequences(t *testing.T, newLedger NewLedger) {
	for _, sq := range sequences() {
		t.Run(sq.name, func(t *testing.T) {
			clock := NewClock(sq.steps[0].when)
			l := newLedger(t, clock.Now, sq.loc)
			loc := sq.loc
			if loc == nil {
				loc = time.UTC
			}
			ids := map[string]budget.HoldID{}
			for i, st := range sq.steps {
				if !st.when.IsZero() {
					clock.Set(st.when)
				}
				now := clock.Now()
				desc := fmt.Sprintf("step %d at %v: %v %q", i, now.In(loc).Format("2006-01-02 15:04:05.000 MST"), st.op, st.hold)
				if len(st.scopes) > 0 {
					desc += fmt.Sprintf(" %v", st.scopes)
				}
				if st.op != opRelease && st.op != opBalance {
					desc += " " + st.amount.String()
				}
				var got result
				var err error
				switch st.op {
				case opHold:
					var r budget.HoldResult
					r, err = l.Hold(context.Background(), st.scopes, st.amount)
					got = result{allowed: r.Allowed, scope: r.Scope, bal: r.Balance}
					switch {
					case err != nil:
					case r.Allowed && r.ID == (budget.HoldID{}):
						t.Errorf("%s: allowed with the zero HoldID", desc)
					case r.Allowed:
						ids[st.hold] = r.ID
					case r.ID != (budget.HoldID{}):
						t.Errorf("%s: refused with HoldID %v", desc, r.ID)
					}
				case opSettle:
					var r budget.SettleResult
					r, err = l.Settle(context.Background(), ids[st.hold], st.amount)
					got = result{scope: r.Scope, bal: r.Balance, settledHeld: r.Held, expired: r.Expired}
				case opRelease:
					err = l.Release(context.Background(), ids[st.hold])
				case opBalance:
					got.scope = st.scopes[0]
					got.bal, err = l.Balance(context.Background(), st.scopes[0])
				}
				w := st.want
				if w.err != nil || err != nil {
					if !errors.Is(err, w.err) || (w.err == nil) != (err == nil) {
						t.Fatalf("%s: err = %v, want %v", desc, err, w.err)
					}
					continue
				}
				if !w.checkBalance {
					continue
				}
				if msg := compare(got, w, now, loc); msg != "" {
					t.Errorf("%s:\n%s", desc, msg)
				}
			}
		})
	}
}

// result is what a step's call answered.
type result struct {
	allowed     bool
	scope       budget.Scope
	bal         budget.Balance
	settledHeld budget.Micros
	expired     bool
}

// compare returns the differences between got and w, one per line, or "".
func compare(got result, w want, now time.Time, loc *time.Location) string {
	resets := w.resets
	if resets.IsZero() {
		resets = w.scope.Period.End(now, loc)
	}
	wantBal := budget.NewBalance(w.scope.Limit, w.spent, w.held, resets)
	var diff string
	if got.allowed != w.allowed {
		diff += fmt.Sprintf("  Allowed %v, want %v\n", got.allowed, w.allowed)
	}
	if got.scope != w.scope {
		diff += fmt.Sprintf("  Scope %+v, want %+v\n", got.scope, w.scope)
	}
	if !got.bal.ResetsAt.Equal(wantBal.ResetsAt) {
		diff += fmt.Sprintf("  ResetsAt %v, want %v\n", got.bal.ResetsAt, wantBal.ResetsAt)
	}
	got.bal.ResetsAt, wantBal.ResetsAt = time.Time{}, time.Time{}
	if got.bal != wantBal {
		diff += fmt.Sprintf("  Balance %s, want %s\n", show(got.bal), show(wantBal))
	}
	if got.settledHeld != w.settledHeld || got.expired != w.expired {
		diff += fmt.Sprintf("  settled Held %v Expired %v, want %v %v\n", got.settledHeld, got.expired, w.settledHeld, w.expired)
	}
	return diff
}

func show(b budget.Balance) string {
	return fmt.Sprintf("{Limit:%v Spent:%v Held:%v Remaining:%v}", b.Limit, b.Spent, b.Held, b.Remaining)
}

func runUniqueIDs(t *testing.T, newLedger NewLedger) {
	clock := NewClock(time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC))
	l := newLedger(t, clock.Now, nil)
	ctx := context.Background()
	seen := map[budget.HoldID]bool{}
	var live []budget.HoldID
	var ended []budget.HoldID
	tags := []string{"acme", "beta"}
	for i := range 300 {
		sc := budget.Scope{Tag: tags[i%2], Kind: "key", ID: "k", Limit: 1000 * usd, Period: budget.Daily}
		r, err := l.Hold(ctx, []budget.Scope{sc}, 1*cent)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Allowed {
			t.Fatalf("hold %d refused: %+v", i, r)
		}
		if seen[r.ID] {
			t.Fatalf("hold %d: HoldID %v issued twice", i, r.ID)
		}
		seen[r.ID] = true
		live = append(live, r.ID)
		// End holds as fast as they are made, so that an implementation
		// reusing storage does reuse it.
		if i%3 != 0 {
			id := live[0]
			live = live[1:]
			if i%2 == 0 {
				_, err = l.Settle(ctx, id, 1*cent)
			} else {
				err = l.Release(ctx, id)
			}
			if err != nil {
				t.Fatal(err)
			}
			ended = append(ended, id)
		}
		clock.Advance(time.Second)
	}
	// An ended hold's id never ends another.
	for _, id := range ended {
		if _, err := l.Settle(ctx, id, 1*usd); !errors.Is(err, budget.ErrUnknownHold) {
			t.Fatalf("Settle of ended hold %v: err = %v, want ErrUnknownHold", id, err)
		}
		if err := l.Release(ctx, id); !errors.Is(err, budget.ErrUnknownHold) {
			t.Fatalf("Release of ended hold %v: err = %v, want ErrUnknownHold", id, err)
		}
	}
	// An id under another Tag names nothing.
	for _, id := range live {
		other := id
		other.Tag = "gamma"
		if _, err := l.Settle(ctx, other, 1*usd); !errors.Is(err, budget.ErrUnknownHold) {
			t.Fatalf("Settle of %v (made as %v): err = %v, want ErrUnknownHold", other, id, err)
		}
	}
	for _, id := range live {
		if err := l.Release(ctx, id); err != nil {
			t.Fatalf("Release of live hold %v: %v", id, err)
		}
	}
	var spent budget.Micros
	for _, tag := range tags {
		sc := budget.Scope{Tag: tag, Kind: "key", ID: "k", Limit: 1000 * usd, Period: budget.Daily}
		b, err := l.Balance(ctx, sc)
		if err != nil {
			t.Fatal(err)
		}
		if b.Held != 0 {
			t.Fatalf("%s: %+v, want nothing held", tag, b)
		}
		spent += b.Spent
	}
	// 100 settlements of a cent each, and nothing more.
	if spent != 100*cent {
		t.Fatalf("%v spent in all, want 1.00 USD", spent)
	}
}

func runConcurrent(t *testing.T, newLedger NewLedger) {
	clock := NewClock(time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC))
	l := newLedger(t, clock.Now, nil)
	key := budget.Scope{Tag: "acme", Kind: "key", ID: "k", Limit: 5 * usd, Period: budget.Daily}
	acct := budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 3 * usd, Period: budget.Monthly}
	const workers, each = 16, 10
	var settled atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				cost := budget.Micros(10+w+i) * cent // 10 to 34 cents
				r, err := l.Hold(context.Background(), []budget.Scope{key, acct}, cost)
				if err != nil {
					errs <- err
					return
				}
				if !r.Allowed {
					continue
				}
				actual := cost * budget.Micros(i%4) / 3 // 0 to all of it
				if _, err := l.Settle(context.Background(), r.ID, actual); err != nil {
					errs <- err
					return
				}
				settled.Add(int64(actual))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, sc := range []budget.Scope{key, acct} {
		b, err := l.Balance(context.Background(), sc)
		if err != nil {
			t.Fatal(err)
		}
		if b.Held != 0 || int64(b.Spent) != settled.Load() {
			t.Fatalf("%v after all settled: %+v, want Held 0 and Spent %v", sc, b, budget.Micros(settled.Load()))
		}
	}
	// Every hold fitted the room left, and settled at most its amount.
	if got := budget.Micros(settled.Load()); got > acct.Limit {
		t.Fatalf("spent %v against a budget of %v", got, acct.Limit)
	}
}

func runInvalid(t *testing.T, newLedger NewLedger) {
	clock := NewClock(time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC))
	l := newLedger(t, clock.Now, nil)
	ctx := context.Background()
	good := keyDaily
	bad := map[string][]budget.Scope{
		"no scopes":       nil,
		"empty tag":       {{Kind: "key", ID: "k", Limit: usd}},
		"brace in tag":    {{Tag: "a{b}", Kind: "key", ID: "k", Limit: usd}},
		"empty kind":      {{Tag: "a", ID: "k", Limit: usd}},
		"colon in kind":   {{Tag: "a", Kind: "key:x", ID: "k", Limit: usd}},
		"empty id":        {{Tag: "a", Kind: "key", Limit: usd}},
		"negative limit":  {{Tag: "a", Kind: "key", ID: "k", Limit: -1}},
		"huge limit":      {{Tag: "a", Kind: "key", ID: "k", Limit: budget.MaxMicros + 1}},
		"unknown period":  {{Tag: "a", Kind: "key", ID: "k", Limit: usd, Period: 9}},
		"different tags":  {good, otherTag},
		"same budget":     {good, with(good, 5*usd)},
		"too many scopes": make([]budget.Scope, budget.MaxScopes+1),
	}
	for i := range bad["too many scopes"] {
		bad["too many scopes"][i] = budget.Scope{Tag: "a", Kind: "key", ID: fmt.Sprint(i), Limit: usd}
	}
	for name, scopes := range bad {
		if _, err := l.Hold(ctx, scopes, usd); !errors.Is(err, budget.ErrInvalidScope) {
			t.Errorf("Hold with %s: err = %v, want ErrInvalidScope", name, err)
		}
		if len(scopes) == 1 {
			if _, err := l.Balance(ctx, scopes[0]); !errors.Is(err, budget.ErrInvalidScope) {
				t.Errorf("Balance with %s: err = %v, want ErrInvalidScope", name, err)
			}
		}
	}
	for _, amount := range []budget.Micros{-1, budget.MaxMicros + 1} {
		if _, err := l.Hold(ctx, []budget.Scope{good}, amount); !errors.Is(err, budget.ErrInvalidAmount) {
			t.Errorf("Hold of %v: err = %v, want ErrInvalidAmount", amount, err)
		}
	}
	r, err := l.Hold(ctx, []budget.Scope{good}, usd)
	if err != nil || !r.Allowed {
		t.Fatalf("Hold: %+v, %v", r, err)
	}
	if _, err := l.Settle(ctx, r.ID, -1); !errors.Is(err, budget.ErrInvalidAmount) {
		t.Errorf("Settle of -1: err = %v, want ErrInvalidAmount", err)
	}
	for _, id := range []budget.HoldID{{}, {Tag: good.Tag}, {Tag: good.Tag, Seq: r.ID.Seq + 1}, {Tag: "a{b}", Seq: r.ID.Seq}, {Tag: "nobody", Seq: 1}} {
		if _, err := l.Settle(ctx, id, 1); !errors.Is(err, budget.ErrUnknownHold) {
			t.Errorf("Settle of %v: err = %v, want ErrUnknownHold", id, err)
		}
		if err := l.Release(ctx, id); !errors.Is(err, budget.ErrUnknownHold) {
			t.Errorf("Release of %v: err = %v, want ErrUnknownHold", id, err)
		}
	}
	// The refused calls changed nothing.
	if b, err := l.Balance(ctx, good); err != nil || b.Held != usd || b.Spent != 0 {
		t.Errorf("after refused calls: %+v, %v; want 1 USD held and nothing spent", b, err)
	}
}
