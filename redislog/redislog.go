// Package redislog routes go-redis's own log lines (a pool that failed to
// dial, a node that moved) through log/slog, so that they reach the
// service's structured log instead of unstructured lines on stderr.
//
// go-redis keeps one logger for the whole process: [Use] replaces it and
// is meant to be called once, by main, before any client is made. Nothing
// in gatekit calls it for you.
//
//	redislog.Use(logger)
//	client := redis.NewClient(opts)
package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/internal/logthrottle"
)

// Logger is a go-redis logger (what redis.SetLogger takes) writing each
// line to an slog.Logger at warn level as "redis", its text in the
// attribute "message", at most one line a second (the next line counts
// those left out): during an outage go-redis logs on every failed dial.
// It is safe for concurrent use.
type Logger struct {
	logger   *slog.Logger
	throttle logthrottle.Throttle
}

// New returns a Logger writing to logger (slog.Default() when nil).
func New(logger *slog.Logger) *Logger {
	if logger == nil {
		logger = slog.Default()
	}
	return &Logger{logger: logger}
}

// Printf logs one go-redis line.
func (l *Logger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.throttle.Log(ctx, l.logger, slog.LevelWarn, "redis", slog.String("message", msg))
}

// Use makes logger (through a [Logger]) go-redis's logger for the whole
// process.
func Use(logger *slog.Logger) { redis.SetLogger(New(logger)) }
