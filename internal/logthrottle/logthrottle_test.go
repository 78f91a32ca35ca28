package logthrottle

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/testclock"
)

func TestThrottleLetsOneLineASecondThroughAndCountsTheRest(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l := &Throttle{Now: clock.Now}
	for range 5 {
		l.Log(context.Background(), logger, slog.LevelWarn, "failed")
	}
	clock.Advance(999 * time.Millisecond)
	l.Log(context.Background(), logger, slog.LevelWarn, "failed")
	clock.Advance(time.Millisecond)
	l.Log(context.Background(), logger, slog.LevelWarn, "failed")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(lines[0], "not_logged") || !strings.Contains(lines[1], "similar_lines_not_logged=5") {
		t.Fatalf("lines:\n%s", buf.String())
	}
}

func TestByKeyKeepsKeysApart(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	c := &ByKey{Now: clock.Now}
	for range 3 {
		c.Get("service_unavailable").Log(context.Background(), logger, slog.LevelError, "request failed")
	}
	c.Get("internal_error").Log(context.Background(), logger, slog.LevelError, "request failed")
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want one per code:\n%s", n, buf.String())
	}
}
