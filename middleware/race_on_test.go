//go:build race

package middleware_test

// raceEnabled reports whether the tests run under the race detector, whose
// sync.Pool drops pooled values at random, so that counts of allocations
// through a pool mean nothing there.
const raceEnabled = true
