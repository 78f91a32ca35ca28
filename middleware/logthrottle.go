package middleware

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// storeFailureLog logs a store's failures at most once a second, with the
// number left out since the last line: when Redis goes away under load,
// every request fails the same way, and the metrics count them all.
type storeFailureLog struct {
	last    atomic.Int64 // unix nanoseconds of the last line
	skipped atomic.Int64
}

// warn logs msg with attrs, unless a line was logged less than a second
// ago.
func (l *storeFailureLog) warn(ctx context.Context, logger *slog.Logger, msg string, attrs ...slog.Attr) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		l.skipped.Add(1)
		return
	}
	if n := l.skipped.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("similar_failures_not_logged", n))
	}
	logger.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// lineThrottle lets one log line through per second and counts the lines
// it holds back, reporting their number on the next line it lets through:
// a failure that repeats on every request (a store outage, a client
// guessing keys) then costs a line a second, not a line a request. The
// zero value reads time.Now; it is safe for concurrent use.
type lineThrottle struct {
	now     func() time.Time // nil means time.Now
	last    atomic.Int64     // unix nanoseconds of the last line
	skipped atomic.Int64
}

// log logs msg at level with attrs, unless a line was let through less
// than a second ago.
func (l *lineThrottle) log(ctx context.Context, logger *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	t := now().UnixNano()
	last := l.last.Load()
	if (last != 0 && t-last < int64(time.Second)) || !l.last.CompareAndSwap(last, t) {
		l.skipped.Add(1)
		return
	}
	if n := l.skipped.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("similar_lines_not_logged", n))
	}
	logger.LogAttrs(ctx, level, msg, attrs...)
}

// codeThrottles holds a lineThrottle per error code, so that a flood of
// one failure never hides the first line of another.
type codeThrottles struct {
	now func() time.Time // nil means time.Now
	mu  sync.Mutex
	m   map[string]*lineThrottle
}

// maxThrottledCodes bounds the codes throttled apart; any further code
// shares one throttle.
const maxThrottledCodes = 64

// get returns the throttle for code.
func (c *codeThrottles) get(code string) *lineThrottle {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*lineThrottle{}
	}
	if l, ok := c.m[code]; ok {
		return l
	}
	if len(c.m) >= maxThrottledCodes {
		code = ""
		if l, ok := c.m[code]; ok {
			return l
		}
	}
	l := &lineThrottle{now: c.now}
	c.m[code] = l
	return l
}
