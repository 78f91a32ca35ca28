package redislog_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatekit/gatekit/redislog"
)

func TestLoggerWritesGoRedisLinesAsStructuredWarnings(t *testing.T) {
	var buf bytes.Buffer
	l := redislog.New(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.Printf(context.Background(), "redis: %s:%d: connection pool: failed to dial\n", "127.0.0.1", 6379)
	for range 10 {
		l.Printf(context.Background(), "redis: again")
	}
	out := buf.String()
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("want one line for a burst:\n%s", out)
	}
	for _, want := range []string{`"level":"WARN"`, `"msg":"redis"`, `"message":"redis: 127.0.0.1:6379: connection pool: failed to dial"`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in %s", want, out)
		}
	}
}
