package middleware

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/testclock"
)

func TestLineThrottleLetsOneLineASecondThroughAndCountsTheRest(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l := &lineThrottle{now: clock.Now}
	for range 5 {
		l.log(context.Background(), logger, slog.LevelWarn, "failed")
	}
	clock.Advance(999 * time.Millisecond)
	l.log(context.Background(), logger, slog.LevelWarn, "failed")
	clock.Advance(time.Millisecond)
	l.log(context.Background(), logger, slog.LevelWarn, "failed")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(lines[0], "not_logged") || !strings.Contains(lines[1], "similar_lines_not_logged=5") {
		t.Fatalf("lines:\n%s", buf.String())
	}
}

func TestCodeThrottlesKeepCodesApart(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	c := &codeThrottles{now: clock.Now}
	for range 3 {
		c.get("service_unavailable").log(context.Background(), logger, slog.LevelError, "request failed")
	}
	c.get("internal_error").log(context.Background(), logger, slog.LevelError, "request failed")
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want one per code:\n%s", n, buf.String())
	}
}
