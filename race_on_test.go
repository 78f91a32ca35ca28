//go:build race

package gatekit_test

// raceEnabled reports whether the tests run under the race detector, whose
// sync.Pool drops pooled values at random (the binder pools its decoders),
// so that counts of allocations through a pool mean nothing there.
const raceEnabled = true
