package ratelimit

import (
	"context"
	"errors"
	"time"
)

// ErrNegativeUnits is returned by a Limiter asked to take a negative number
// of units.
var ErrNegativeUnits = errors.New("ratelimit: negative number of units")

// Limiter decides, per key, whether a request fits its Policy. Every store in
// gatekit implements it with the same token-bucket semantics, verified by the
// conformance suite in package ratelimittest, so a store can be swapped for
// another without changing a single decision.
//
// A key is an opaque string chosen by the caller, typically an authenticated
// principal's id and a route or limit name. It names one bucket: use one
// Policy per key. (If the Policy for a key changes, for example during a
// rolling deploy, the whole units it held carry over, capped by the new
// burst.) Keys are stored as given, so never use a raw credential as one.
//
// err is non-nil only when no decision could be made: the store failed or
// timed out, ctx ended, p is not valid (the error wraps ErrInvalidPolicy) or
// n is negative (ErrNegativeUnits). A denial is never an error: it is a
// Decision with Allowed false. Callers choose whether to fail open or closed
// on error.
//
// Implementations are safe for concurrent use, and decisions on one key are
// atomic across every process sharing the store.
type Limiter interface {
	// Allow takes n units from key's bucket if all n are available, and
	// none otherwise. n == 0 checks without taking anything: it is allowed
	// when at least one whole unit is available. A request for more than
	// p's burst is always denied (see Decision.RetryAfter). For every
	// Decision, Allowed == (RetryAfter == 0).
	Allow(ctx context.Context, key string, p Policy, n int64) (Decision, error)
}

// Decision is a Limiter's answer for one key at one instant. Durations are
// whole milliseconds.
type Decision struct {
	// Allowed reports whether the units were granted (for n == 0, whether
	// the bucket holds a whole unit).
	Allowed bool
	// Limit is the Policy's Limit: the units granted per window.
	Limit int64
	// Remaining is the whole units left after this decision, never
	// negative.
	Remaining int64
	// ResetAfter is how long until the bucket is full again if nothing more
	// is taken; 0 when it is full.
	ResetAfter time.Duration
	// RetryAfter is 0 when Allowed. Otherwise it is how long until the same
	// request can succeed, never less: retried exactly RetryAfter later
	// (with nothing else taken meanwhile) it is allowed. A request for more
	// than the burst can never succeed; its RetryAfter is the time an empty
	// bucket takes to refill completely, a hint that is not a promise.
	RetryAfter time.Duration
}
