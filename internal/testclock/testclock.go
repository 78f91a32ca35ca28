// Package testclock is the fake clock of gatekit's conformance suites
// (ratelimittest, budgettest, idempotencytest), which export it as their own
// Clock.
package testclock

import (
	"sync/atomic"
	"time"
)

// Clock is a fake clock, safe for concurrent use, that moves only when told.
type Clock struct {
	ns atomic.Int64
}

// New returns a Clock reading t.
func New(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now returns the clock's time. Pass c.Now where a clock is expected.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
