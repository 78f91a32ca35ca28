package redistest

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Timeouts for tests of stores that bound each call to Redis.
const (
	// SlowTimeout is the Timeout of stores in tests that are not about
	// timeouts: long enough for a loaded CI machine.
	SlowTimeout = 5 * time.Second
	// OutageTimeout is the Timeout of stores in tests that stop or hang
	// Redis: short, so that those tests are quick, yet long enough for a
	// live local server.
	OutageTimeout = 100 * time.Millisecond
	// Slack is how much later than its Timeout a call to a dead or hung
	// Redis may return: scheduling delay, not waiting on Redis (go-redis's
	// own timeouts are seconds).
	Slack = 200 * time.Millisecond
)

// FailsFastWhileStopped runs call, which must fail because Redis is
// stopped, and fails the test at once unless it returns an error within
// timeout + Slack. what names the call in messages. It returns the error,
// for the caller's own checks.
func FailsFastWhileStopped(tb testing.TB, what string, timeout time.Duration, call func() error) error {
	tb.Helper()
	start := time.Now()
	err := call()
	took := time.Since(start)
	if err == nil {
		tb.Fatalf("%s succeeded with Redis stopped", what)
	}
	if took > timeout+Slack {
		tb.Fatalf("%s with Redis stopped took %v (Timeout %v): %v", what, took, timeout, err)
	}
	tb.Logf("%s with Redis stopped: %v after %v", what, err, took.Round(time.Millisecond))
	return err
}

// TimesOutWhileHung runs call, which must give up because Redis hangs (see
// Pause), and marks the test failed unless it returns an error wrapping
// context.DeadlineExceeded within timeout + Slack. what names the call in
// messages.
func TimesOutWhileHung(tb testing.TB, what string, timeout time.Duration, call func() error) {
	tb.Helper()
	start := time.Now()
	err := call()
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		tb.Errorf("%s: err = %v, want one wrapping context.DeadlineExceeded", what, err)
	}
	if took > timeout+Slack {
		tb.Errorf("%s: hung Redis held the call for %v (Timeout %v)", what, took, timeout)
	}
	tb.Logf("%s: %v after %v", what, err, took.Round(time.Millisecond))
}

// WhilePaused pauses the server, runs f, and resumes the server, failing
// the test if it cannot do either.
func (s *Server) WhilePaused(tb testing.TB, f func()) {
	tb.Helper()
	if err := s.Pause(); err != nil {
		tb.Fatal(err)
	}
	f()
	if err := s.Resume(); err != nil {
		tb.Fatal(err)
	}
}

// RestartAndRetry restarts the server, with no data and an empty script
// cache, and retries call until it succeeds, failing the test if it has not
// 5s after the restart.
func (s *Server) RestartAndRetry(tb testing.TB, call func() error) {
	tb.Helper()
	if err := s.Restart(); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := call()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no answer 5s after Restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
