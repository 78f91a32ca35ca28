// Package bucket is the token-bucket arithmetic shared by every store that
// keeps buckets: ratelimit.Memory and admission.Memory run it in Go, and
// admission/redisstore runs a line-by-line Lua transcription of it
// (admission/redisstore/lua/common.lua), so all give the same decision to
// the millisecond.
//
// All quantities are integers. Time is in whole milliseconds. A balance is
// kept in scaled units: one whole unit is worth Params.Unit, and every
// millisecond adds Params.Rate, so a policy of L units per W milliseconds
// refills exactly (Unit/Rate = W/L after dividing both by gcd(L, W)) without
// fractions or drift. Policies are limited so that every intermediate value
// stays below 2^53, which keeps the Lua transcription exact in Lua's float64
// numbers too.
package bucket

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// MaxScaled bounds the capacity of a bucket in scaled units. Intermediate
// values never exceed 4*MaxScaled = 2^53, the largest range in which float64
// (Lua's only number type) represents every integer exactly.
const MaxScaled = 1 << 51

// ErrInvalidPolicy is wrapped by every error about a policy that cannot be
// enforced. ratelimit re-exports it as ratelimit.ErrInvalidPolicy.
var ErrInvalidPolicy = errors.New("ratelimit: invalid policy")

// Params is a policy in the bucket's integer terms.
type Params struct {
	Unit  int64 // scaled value of one whole unit
	Rate  int64 // scaled value refilled per millisecond
	Burst int64 // capacity in whole units
}

// Cap is the capacity of the bucket in scaled units.
func (p Params) Cap() int64 { return p.Burst * p.Unit }

// New converts a policy of limit units per window, holding at most burst
// units (0 means limit), to Params. The error wraps ErrInvalidPolicy.
func New(limit int64, window time.Duration, burst int64) (Params, error) {
	switch {
	case limit <= 0:
		return Params{}, fmt.Errorf("%w: limit %d is not positive", ErrInvalidPolicy, limit)
	case window < time.Millisecond || window%time.Millisecond != 0:
		return Params{}, fmt.Errorf("%w: window %v is not a positive whole number of milliseconds", ErrInvalidPolicy, window)
	case burst < 0:
		return Params{}, fmt.Errorf("%w: burst %d is negative", ErrInvalidPolicy, burst)
	case limit > MaxScaled:
		return Params{}, fmt.Errorf("%w: limit %d is above %d", ErrInvalidPolicy, limit, int64(MaxScaled))
	}
	if burst == 0 {
		burst = limit
	}
	ms := int64(window / time.Millisecond)
	g := gcd(limit, ms)
	p := Params{Unit: ms / g, Rate: limit / g, Burst: burst}
	// burst*Unit > MaxScaled, without a division or an overflow.
	if hi, lo := bits.Mul64(uint64(burst), uint64(p.Unit)); hi != 0 || lo > MaxScaled {
		return Params{}, fmt.Errorf("%w: burst %d over a window of %v is too large to count exactly", ErrInvalidPolicy, burst, window)
	}
	return p, nil
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// State is what a store keeps per key. A key without state is a full bucket.
type State struct {
	Bal  int64 // balance in scaled units
	TS   int64 // the millisecond at which Bal was true
	Unit int64 // Params.Unit of the policy Bal was scaled by
}

// Op is the operation a decision performs.
type Op uint8

// The operations of ratelimit.Limiter.
const (
	OpAllow  Op = iota // take n units if all are there (n == 0: check for one)
	OpRefund           // give back n units, up to a full bucket
)

// Result is a decision, durations in milliseconds.
type Result struct {
	Allowed    bool
	Remaining  int64 // whole units left, never negative
	ResetAfter int64 // until the bucket is full again
	RetryAfter int64 // 0 when allowed; else until the request can succeed
	// Write reports that the state changed and must be stored as State
	// (when false, storing it or not makes no difference).
	Write bool
	State State
	// FullAt is the millisecond at which State refills to full; a store may
	// forget the key from then on.
	FullAt int64
}

// Decide applies op for n units at millisecond now to st (nil, or a zero
// State, for a key the store does not hold) under p. It does not modify st. p must come from New
// and n must not be negative.
func Decide(st *State, p Params, now int64, op Op, n int64) Result {
	full := p.Cap()
	bal, ts := full, now
	if st != nil && st.Unit > 0 {
		bal, ts = st.Bal, st.TS
		if st.Unit != p.Unit {
			// The policy for this key changed: carry whole units over.
			bal = min(max(floorDiv(bal, st.Unit), -p.Burst), p.Burst) * p.Unit
		}
		bal = min(bal, full)
		if now > ts {
			// Refill, comparing before multiplying so that a long idle
			// key cannot overflow.
			if need := full - bal; now-ts >= ceilDiv(need, p.Rate) {
				bal = full
			} else {
				bal += (now - ts) * p.Rate
			}
			ts = now
		}
	}
	// lag > 0 when the stored state is ahead of this caller's clock (another
	// instance's clock runs ahead); waits are measured from the caller's now.
	lag := ts - now
	wait := func(deficit int64) int64 { return lag + ceilDiv(deficit, p.Rate) }

	// The result is assembled from locals at the end rather than field by
	// field in a Result, which the return would copy back out of memory.
	var allowed, write bool
	var retry int64
	switch op {
	case OpAllow:
		switch {
		case n > p.Burst:
			// Never possible: hint the time a whole bucket takes to refill.
			retry = wait(full)
		case n == 0:
			if bal >= p.Unit {
				allowed = true
			} else {
				retry = wait(p.Unit - bal)
			}
		case bal >= n*p.Unit:
			bal -= n * p.Unit
			allowed, write = true, true
		default:
			retry = wait(n*p.Unit - bal)
		}
	case OpRefund:
		if n > 0 {
			// n is at most a burst's worth in any refund worth making;
			// capping it first keeps n*Unit within MaxScaled.
			bal = min(bal+min(n, p.Burst)*p.Unit, full)
			write = true
		}
		allowed = bal >= p.Unit
		if !allowed {
			retry = wait(p.Unit - bal)
		}
	}
	remaining := max(bal, 0) / p.Unit
	// The time to refill what is missing gives both the reset and the
	// instant the bucket is full: one division for the two.
	refill := ceilDiv(full-bal, p.Rate)
	var reset int64
	if bal < full {
		reset = lag + refill
	}
	return Result{
		Allowed:    allowed,
		Remaining:  remaining,
		ResetAfter: reset,
		RetryAfter: retry,
		Write:      write,
		State:      State{Bal: bal, TS: ts, Unit: p.Unit},
		FullAt:     ts + refill,
	}
}

// ceilDiv is ⌈a/b⌉ for a >= 0, b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// floorDiv is ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
