// Package ratelimittest is the conformance suite every ratelimit.Limiter in
// gatekit passes, and the fake clock it drives them with.
//
// A store's test calls Run with a constructor; Run then replays request
// sequences at fixed instants and compares every Decision field by field,
// exactly. The expected values follow the token-bucket model documented on
// ratelimit.Policy, computed to the millisecond.
package ratelimittest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/testclock"
	"github.com/gatekit/gatekit/ratelimit"
)

// Clock is a fake clock, safe for concurrent use, that moves only when told:
// c.Now reads it (pass c.Now where a clock is expected), c.Set(t) moves it to
// t and c.Advance(d) moves it forward by d.
type Clock = testclock.Clock

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// Epoch returns the instant at which Run starts each clock. It is
// deliberately a quarter of a millisecond past a whole second, so that a store
// rounding the time up rather than down shows up as a RetryAfter that is early.
func Epoch() time.Time { return time.Date(2030, time.January, 1, 0, 0, 0, 250_000, time.UTC) }

// NewLimiter makes the Limiter under test. now is the clock it must use;
// each call must return a Limiter that shares no buckets with those returned
// before (for a shared backend, use a fresh key prefix).
type NewLimiter func(t *testing.T, now func() time.Time) ratelimit.Limiter

// step is one Allow at an instant (measured from Epoch()) and its expected
// Decision.
type step struct {
	at   time.Duration
	key  string
	p    ratelimit.Policy
	n    int64
	want ratelimit.Decision
}

func ok(limit, remaining int64, reset time.Duration) ratelimit.Decision {
	return ratelimit.Decision{Allowed: true, Limit: limit, Remaining: remaining, ResetAfter: reset}
}

func deny(limit, remaining int64, reset, retry time.Duration) ratelimit.Decision {
	return ratelimit.Decision{Limit: limit, Remaining: remaining, ResetAfter: reset, RetryAfter: retry}
}

const (
	ms = time.Millisecond
	s  = time.Second
)

// Run runs the conformance suite against limiters made by newLimiter.
func Run(t *testing.T, newLimiter NewLimiter) {
	t.Run("Sequences", func(t *testing.T) { runSequences(t, newLimiter) })
	t.Run("RetryAfterIsNeverEarly", func(t *testing.T) { runRetryAfterNeverEarly(t, newLimiter) })
	t.Run("ResetAfterIsExact", func(t *testing.T) { runResetAfterExact(t, newLimiter) })
	t.Run("ConcurrentAllowsNeverExceedTheBucket", func(t *testing.T) { runConcurrent(t, newLimiter) })
	t.Run("InvalidArgumentsAreErrors", func(t *testing.T) { runInvalid(t, newLimiter) })
}

func runSequences(t *testing.T, newLimiter NewLimiter) {
	perMin3 := ratelimit.PerMinute(3)                    // one unit every 20s
	perSec10 := ratelimit.PerSecond(10)                  // one unit every 100ms
	perMin60b10 := ratelimit.PerMinute(60).WithBurst(10) // one unit a second, at most 10
	perSec2 := ratelimit.PerSecond(2)                    // one unit every 500ms
	perSec1 := ratelimit.PerSecond(1)
	slowBurst := ratelimit.Policy{Limit: 1, Window: time.Second, Burst: 5}
	perMin10 := ratelimit.PerMinute(10)   // one unit every 6s
	perMin100 := ratelimit.PerMinute(100) // one unit every 600ms
	perHour7 := ratelimit.PerHour(7)      // one unit every 514285.71…ms

	cases := []struct {
		name  string
		steps []step
	}{
		{"BurstThenDeny", []step{
			{0, "k", perMin3, 1, ok(3, 2, 20*s)},
			{0, "k", perMin3, 1, ok(3, 1, 40*s)},
			{0, "k", perMin3, 1, ok(3, 0, 60*s)},
			{0, "k", perMin3, 1, deny(3, 0, 60*s, 20*s)},
			{10 * s, "k", perMin3, 1, deny(3, 0, 50*s, 10*s)},
		}},
		{"RefillOverTime", []step{
			{0, "k", perSec10, 10, ok(10, 0, 1*s)},
			{50 * ms, "k", perSec10, 1, deny(10, 0, 950*ms, 50*ms)},
			{100 * ms, "k", perSec10, 1, ok(10, 0, 1*s)},
			{350 * ms, "k", perSec10, 1, ok(10, 1, 850*ms)},
			{10 * s, "k", perSec10, 0, ok(10, 10, 0)},
		}},
		{"RefillStopsAtTheBurst", []step{
			{0, "k", perMin60b10, 5, ok(60, 5, 5*s)},
			{1000 * time.Hour, "k", perMin60b10, 0, ok(60, 10, 0)},
			{1000 * time.Hour, "k", perMin60b10, 10, ok(60, 0, 10*s)},
			{1000 * time.Hour, "k", perMin60b10, 1, deny(60, 0, 10*s, 1*s)},
		}},
		{"SeveralUnitsAllOrNothing", []step{
			{0, "k", perMin60b10, 4, ok(60, 6, 4*s)},
			{0, "k", perMin60b10, 7, deny(60, 6, 4*s, 1*s)},
			{0, "k", perMin60b10, 6, ok(60, 0, 10*s)},
			{2500 * ms, "k", perMin60b10, 3, deny(60, 2, 7500*ms, 500*ms)},
			{3 * s, "k", perMin60b10, 3, ok(60, 0, 10*s)},
		}},
		{"MoreThanTheBurstIsAlwaysDenied", []step{
			{0, "k", perMin60b10, 11, deny(60, 10, 0, 10*s)},
			{0, "k", perMin60b10, 10, ok(60, 0, 10*s)},
			{0, "k", perMin60b10, 11, deny(60, 0, 10*s, 10*s)},
		}},
		{"BurstAboveLimit", []step{
			{0, "k", slowBurst, 5, ok(1, 0, 5*s)},
			{0, "k", slowBurst, 1, deny(1, 0, 5*s, 1*s)},
			{2 * s, "k", slowBurst, 2, ok(1, 0, 5*s)},
		}},
		{"ZeroUnitsChecksForOneAndTakesNothing", []step{
			{0, "k", perSec2, 0, ok(2, 2, 0)},
			{0, "k", perSec2, 2, ok(2, 0, 1*s)},
			{0, "k", perSec2, 0, deny(2, 0, 1*s, 500*ms)},
			{499 * ms, "k", perSec2, 0, deny(2, 0, 501*ms, 1*ms)},
			{500 * ms, "k", perSec2, 0, ok(2, 1, 500*ms)},
			{500 * ms, "k", perSec2, 0, ok(2, 1, 500*ms)},
			{500 * ms, "k", perSec2, 1, ok(2, 0, 1*s)},
		}},
		{"KeysAreIndependent", []step{
			{0, "alice", perSec1, 1, ok(1, 0, 1*s)},
			{0, "alice", perSec1, 1, deny(1, 0, 1*s, 1*s)},
			{0, "bob", perSec1, 1, ok(1, 0, 1*s)},
			{0, "bob", perSec1, 1, deny(1, 0, 1*s, 1*s)},
			{0, "dave", perSec1, 1, ok(1, 0, 1*s)},
		}},
		{"PoliciesApplyPerKey", []step{
			{0, "rpm", perMin3, 3, ok(3, 0, 60*s)},
			{0, "rps", perSec10, 3, ok(10, 7, 300*ms)},
			{1 * s, "rpm", perMin3, 1, deny(3, 0, 59*s, 19*s)},
			{1 * s, "rps", perSec10, 10, ok(10, 0, 1*s)},
			{2 * s, "hour", perHour7, 7, ok(7, 0, time.Hour)},
			// The next unit is due 514285.714…ms later: rounded up.
			{2 * s, "hour", perHour7, 1, deny(7, 0, time.Hour, 514286*ms)},
			// 2 scaled units over: the bucket is full 2/7ms sooner, which
			// rounds up to the same millisecond.
			{2*s + 514286*ms, "hour", perHour7, 1, ok(7, 0, time.Hour)},
		}},
		{"PolicyChangeCarriesWholeUnits", []step{
			{0, "k", perMin10, 4, ok(10, 6, 24*s)},
			{0, "k", perMin100, 1, ok(100, 5, 57*s)},
			{0, "k", perMin10, 0, ok(10, 5, 30*s)},
			// Refill runs at the rate of the policy in force.
			{3 * s, "k", perMin10, 0, ok(10, 5, 27*s)},
			{3 * s, "k", perMin10, 5, ok(10, 0, 57*s)},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := NewClock(Epoch())
			lim := newLimiter(t, clock.Now)
			for i, st := range tc.steps {
				clock.Set(Epoch().Add(st.at))
				got, err := lim.Allow(context.Background(), st.key, st.p, st.n)
				if err != nil {
					t.Fatalf("step %d: Allow(%q, %+v, %d) at +%v: %v", i, st.key, st.p, st.n, st.at, err)
				}
				if got != st.want {
					t.Errorf("step %d: Allow(%q, %+v, %d) at +%v\n got %s\nwant %s", i, st.key, st.p, st.n, st.at, show(got), show(st.want))
				}
			}
		})
	}
}

// awkward returns policies whose refill interval is not a whole number of
// milliseconds, or is less than one.
func awkward() []ratelimit.Policy {
	return []ratelimit.Policy{
		ratelimit.PerHour(7),
		{Limit: 7, Window: time.Second, Burst: 3},
		{Limit: 3, Window: 10 * time.Second, Burst: 5},
		ratelimit.PerMinute(1000),
		ratelimit.PerSecond(5000),
		{Limit: 999_983, Window: 24 * time.Hour, Burst: 10_000},
	}
}

func runRetryAfterNeverEarly(t *testing.T, newLimiter NewLimiter) {
	for _, p := range awkward() {
		t.Run(fmt.Sprintf("%d/%v/%d", p.Limit, p.Window, p.Burst), func(t *testing.T) {
			clock := NewClock(Epoch())
			lim := newLimiter(t, clock.Now)
			burst := p.Burst
			if burst == 0 {
				burst = p.Limit
			}
			for _, n := range []int64{1, 2, burst} {
				if n > burst {
					continue
				}
				// Drain, then retry at RetryAfter-1ms (must fail) and at
				// RetryAfter (must succeed), several times over.
				mustAllow(t, lim, "k", p, burst)
				for round := range 4 {
					d := mustAllow(t, lim, "k", p, n)
					if d.Allowed {
						continue
					}
					retry := d.RetryAfter
					if retry <= 0 || retry%ms != 0 {
						t.Fatalf("n=%d round %d: denied with RetryAfter %v", n, round, retry)
					}
					start := clock.Now()
					clock.Set(start.Add(retry - ms))
					if d := mustAllow(t, lim, "k", p, n); d.Allowed {
						t.Fatalf("n=%d round %d: allowed 1ms before RetryAfter %v", n, round, retry)
					}
					clock.Set(start.Add(retry))
					if d := mustAllow(t, lim, "k", p, n); !d.Allowed {
						t.Fatalf("n=%d round %d: denied at RetryAfter %v: %s", n, round, retry, show(d))
					}
				}
			}
		})
	}
}

func runResetAfterExact(t *testing.T, newLimiter NewLimiter) {
	for _, p := range awkward() {
		t.Run(fmt.Sprintf("%d/%v/%d", p.Limit, p.Window, p.Burst), func(t *testing.T) {
			clock := NewClock(Epoch())
			lim := newLimiter(t, clock.Now)
			burst := p.Burst
			if burst == 0 {
				burst = p.Limit
			}
			for _, take := range []int64{1, burst/2 + 1, burst} {
				d := mustAllow(t, lim, "k", p, take)
				if !d.Allowed || d.RetryAfter != 0 || d.ResetAfter <= 0 {
					t.Fatalf("take %d from a full bucket: %s", take, show(d))
				}
				start := clock.Now()
				clock.Set(start.Add(d.ResetAfter - ms))
				if d := mustAllow(t, lim, "k", p, 0); d.Remaining >= burst || d.ResetAfter != ms {
					t.Fatalf("take %d: 1ms before ResetAfter: %s", take, show(d))
				}
				clock.Set(start.Add(d.ResetAfter))
				if d := mustAllow(t, lim, "k", p, 0); d.Remaining != burst || d.ResetAfter != 0 {
					t.Fatalf("take %d: at ResetAfter the bucket is not full: %s", take, show(d))
				}
			}
		})
	}
}

func runConcurrent(t *testing.T, newLimiter NewLimiter) {
	clock := NewClock(Epoch())
	lim := newLimiter(t, clock.Now)
	p := ratelimit.PerMinute(100)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				d, err := lim.Allow(context.Background(), "shared", p, 1)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != 100 {
		t.Fatalf("320 concurrent requests against a bucket of 100: %d allowed", got)
	}
}

func runInvalid(t *testing.T, newLimiter NewLimiter) {
	lim := newLimiter(t, NewClock(Epoch()).Now)
	ctx := context.Background()
	bad := []ratelimit.Policy{
		{},
		{Limit: 10},
		{Limit: -1, Window: time.Second},
		{Limit: 10, Window: time.Second, Burst: -1},
		{Limit: 10, Window: 1500 * time.Microsecond},
		{Limit: 1, Window: 24 * time.Hour, Burst: 1 << 40},
	}
	for _, p := range bad {
		if _, err := lim.Allow(ctx, "k", p, 1); !errors.Is(err, ratelimit.ErrInvalidPolicy) {
			t.Errorf("Allow with %+v: err = %v, want ErrInvalidPolicy", p, err)
		}
	}
	p := ratelimit.PerSecond(1)
	if _, err := lim.Allow(ctx, "k", p, -1); !errors.Is(err, ratelimit.ErrNegativeUnits) {
		t.Errorf("Allow of -1 units: err = %v, want ErrNegativeUnits", err)
	}
	// The refused calls took nothing.
	if d := mustAllow(t, lim, "k", p, 0); !d.Allowed || d.Remaining != 1 {
		t.Errorf("after refused calls: %s, want the bucket untouched", show(d))
	}
}

// mustAllow calls lim.Allow, failing t on an error or on a Decision whose
// Allowed and RetryAfter disagree.
func mustAllow(t *testing.T, lim ratelimit.Limiter, key string, p ratelimit.Policy, n int64) ratelimit.Decision {
	t.Helper()
	d, err := lim.Allow(context.Background(), key, p, n)
	if err != nil {
		t.Fatalf("Allow(%q, %+v, %d): %v", key, p, n, err)
	}
	if d.Allowed != (d.RetryAfter == 0) {
		t.Fatalf("Allow(%q, %+v, %d): Allowed %v with RetryAfter %v", key, p, n, d.Allowed, d.RetryAfter)
	}
	return d
}

func show(d ratelimit.Decision) string {
	return fmt.Sprintf("{Allowed:%v Limit:%d Remaining:%d ResetAfter:%v RetryAfter:%v}",
		d.Allowed, d.Limit, d.Remaining, d.ResetAfter, d.RetryAfter)
}
