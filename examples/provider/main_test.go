package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/redistest"
)

// startDemo runs the demo as `go run ./examples/provider` would, on a free
// port, and stops it when the test ends.
func startDemo(t *testing.T, args ...string) string {
	t.Helper()
	return startDemoLogging(t, io.Discard, args...)
}

// startDemoLogging is startDemo writing the demo's log to stderr.
func startDemoLogging(t *testing.T, stderr io.Writer, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), func(string) string { return "" }, stderr, func(a string) { addrc <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo exited with %v", err)
		}
	})
	select {
	case a := <-addrc:
		return "http://" + a
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not start in 10s")
	}
	return ""
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestDemoServesWithItsBuiltInConfig(t *testing.T) {
	base := startDemo(t)
	if code, _ := get(t, base+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, base+"/v1/models", ""); code != 401 || !strings.Contains(body, "missing_api_key") {
		t.Fatalf("/v1/models without key: %d %s", code, body)
	}
	if code, body := get(t, base+"/v1/models", "sk-demo-free"); code != 200 || !strings.Contains(body, "gk-echo") {
		t.Fatalf("/v1/models: %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics", ""); code != 200 || !strings.Contains(body, "gatekit_admission") {
		t.Fatalf("/metrics: %d", code)
	}
}

func TestDemoOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	base := startDemo(t, "-redis", "redis://"+rs.Addr()+"/0")
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(`{"model":"gk-echo","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer sk-demo-free")
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
	}
	// The account's state in Redis: token buckets ('r') and budgets ('b').
	fields, err := rs.Client(t).HKeys(context.Background(), "gatekit:adm:{demo}:state").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"r", "b"} {
		if !slices.ContainsFunc(fields, func(f string) bool { return strings.HasPrefix(f, kind) }) {
			t.Fatalf("no %q field in the demo account's state: %q", kind, fields)
		}
	}
}

func TestDemoRejectsABadConfig(t *testing.T) {
	err := run(context.Background(), []string{"-config", "/nonexistent.yaml"}, func(string) string { return "" }, io.Discard, nil)
	if err == nil {
		t.Fatal("no error for a missing config file")
	}
}

// TestDemoWithRedisDownWarnsAndIsNotReady: started while its Redis is down,
// the demo warns at start, stays alive (/healthz 200) and reports itself
// not ready (/readyz 503, naming the store) until Redis is back.
func TestDemoWithRedisDownWarnsAndIsNotReady(t *testing.T) {
	rs := redistest.Start(t)
	addr := rs.Addr()
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	base := startDemoLogging(t, logs, "-redis", "redis://"+addr+"/0")
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "store not answering at start") {
		t.Fatalf("no warning at start with Redis down; logs:\n%s", logs.String())
	}
	if code, _ := get(t, base+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz with Redis down: %d, want 200", code)
	}
	if code, body := get(t, base+"/readyz", ""); code != 503 || !strings.Contains(body, "admission store") {
		t.Fatalf("/readyz with Redis down: %d %q, want 503 naming the admission store", code, body)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"readyz") {
		t.Errorf("the readiness failure was not logged")
	}
	rs.RestartAndRetry(t, func() error {
		if code, body := get(t, base+"/readyz", ""); code != 200 {
			return fmt.Errorf("/readyz: %d %q", code, body)
		}
		return nil
	})
}

// syncBuffer is a bytes.Buffer safe for the demo's log and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
