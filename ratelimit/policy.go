package ratelimit

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/gatekit/gatekit/internal/bucket"
)

// ErrInvalidPolicy is wrapped by the error of Policy.Valid, and by the error a
// Limiter returns when asked to enforce a policy that is not valid.
var ErrInvalidPolicy = bucket.ErrInvalidPolicy

// Policy is a quota of Limit units per Window, of which at most Burst can be
// saved up. It is enforced as a token bucket that holds Burst units, starts
// full, and refills continuously at Limit/Window.
//
// A unit is whatever the caller counts: one per request for a
// requests-per-minute limit, one per token for a tokens-per-minute limit.
// The zero Policy is not valid; build one with PerSecond, PerMinute or
// PerHour, or fill in the fields.
type Policy struct {
	// Limit is the number of units granted per Window. It must be positive.
	Limit int64
	// Window is the period over which Limit units are granted. It must be
	// a positive whole number of milliseconds.
	Window time.Duration
	// Burst is the most units that can accumulate, and so the most a
	// single request can take. 0 means Limit.
	Burst int64
}

// PerSecond returns a policy of n units per second, with a burst of n.
func PerSecond(n int64) Policy { return Policy{Limit: n, Window: time.Second} }

// PerMinute returns a policy of n units per minute, with a burst of n.
func PerMinute(n int64) Policy { return Policy{Limit: n, Window: time.Minute} }

// PerHour returns a policy of n units per hour, with a burst of n.
func PerHour(n int64) Policy { return Policy{Limit: n, Window: time.Hour} }

// WithBurst returns a copy of p that can accumulate at most b units.
func (p Policy) WithBurst(b int64) Policy {
	p.Burst = b
	return p
}

// Valid reports why p cannot be enforced, or nil if it can. The error wraps
// ErrInvalidPolicy. Besides the field rules above, the bucket must be small
// enough to count exactly: Burst × (Window in ms) / gcd(Limit, Window in ms)
// must not exceed 2^51, which allows for example a burst of 2.6 billion per
// hour, or 100 million per day, and far more for round numbers.
func (p Policy) Valid() error {
	_, err := bucket.New(p.Limit, p.Window, p.Burst)
	return err
}

// Rate returns the refill rate of p as a golang.org/x/time/rate limit, for
// code that paces itself in process with a rate.Limiter.
func (p Policy) Rate() rate.Limit {
	if p.Window <= 0 {
		return 0
	}
	return rate.Limit(float64(p.Limit) / p.Window.Seconds())
}
