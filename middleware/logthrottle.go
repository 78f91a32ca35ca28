package middleware

import (
	"context"
	"log/slog"
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
