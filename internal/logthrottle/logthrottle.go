// Package logthrottle holds back log lines that a failure repeated on every
// request would flood a log with.
package logthrottle

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Throttle lets one log line through per second and counts the lines it
// holds back, reporting their number (as similar_lines_not_logged) on the
// next line it lets through: a failure that repeats on every request (a
// store outage, a client guessing keys) then costs a line a second, not a
// line a request. The zero value reads time.Now; it is safe for
// concurrent use.
type Throttle struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	last    atomic.Int64 // unix nanoseconds of the last line
	skipped atomic.Int64
}

// Log logs msg at level with attrs, unless a line was let through less
// than a second ago.
func (l *Throttle) Log(ctx context.Context, logger *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
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

// ByKey holds a Throttle per key (an error code, say), so that a flood of
// one failure never hides the first line of another. At most MaxKeys keys
// are kept apart; further keys share one Throttle. The zero value is
// ready to use.
type ByKey struct {
	// Now is the clock of every Throttle; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	m  map[string]*Throttle
}

// MaxKeys bounds the keys a ByKey throttles apart.
const MaxKeys = 64

// Get returns the Throttle for key.
func (b *ByKey) Get(key string) *Throttle {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*Throttle{}
	}
	if l, ok := b.m[key]; ok {
		return l
	}
	if len(b.m) >= MaxKeys {
		key = ""
		if l, ok := b.m[key]; ok {
			return l
		}
	}
	l := &Throttle{Now: b.Now}
	b.m[key] = l
	return l
}
