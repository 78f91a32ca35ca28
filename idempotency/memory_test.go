package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/idempotencytest"
)

func newMemory(tb testing.TB, cfg *idempotency.MemoryConfig) *idempotency.Memory {
	tb.Helper()
	m, err := idempotency.NewMemory(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestMemoryConformance(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
		return newMemory(t, &idempotency.MemoryConfig{Now: now})
	})
}

func TestMemoryConformanceWithOneSmallShard(t *testing.T) {
	idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
		return newMemory(t, &idempotency.MemoryConfig{Now: now, MaxEntries: 1000})
	})
}

func TestNewMemoryRejectsNegativeMaxEntries(t *testing.T) {
	if _, err := idempotency.NewMemory(&idempotency.MemoryConfig{MaxEntries: -1}); err == nil {
		t.Fatal("NewMemory accepted MaxEntries -1")
	}
	if _, err := idempotency.NewMemory(nil); err != nil {
		t.Fatalf("NewMemory(nil): %v", err)
	}
}

// mustBegin calls Begin and fails the test unless it answers want.
func mustBegin(tb testing.TB, st idempotency.Store, key string, lease time.Duration, want idempotency.State) idempotency.Begin {
	tb.Helper()
	b, err := st.Begin(context.Background(), key, idempotencytest.Fingerprint(key), lease)
	if err != nil {
		tb.Fatalf("Begin(%q): %v", key, err)
	}
	if b.State != want {
		tb.Fatalf("Begin(%q): %v, want %v", key, b.State, want)
	}
	return b
}

// completeNew begins and completes key, kept for ttl.
func completeNew(tb testing.TB, st idempotency.Store, key string, ttl time.Duration) {
	tb.Helper()
	b := mustBegin(tb, st, key, time.Minute, idempotency.Started)
	if err := st.Complete(context.Background(), key, b.Token, idempotency.Record{Status: 200, Body: []byte(key)}, ttl); err != nil {
		tb.Fatalf("Complete(%q): %v", key, err)
	}
}

func TestMemoryNeverHoldsMoreThanMaxEntries(t *testing.T) {
	const maxEntries, flood = 10_000, 300_000
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	m := newMemory(t, &idempotency.MemoryConfig{MaxEntries: maxEntries, Now: clock.Now})
	ctx := context.Background()
	buf := make([]byte, 0, 32)
	for i := range flood {
		buf = strconv.AppendInt(append(buf[:0], "flood\x00"...), int64(i), 10)
		b, err := m.Begin(ctx, string(buf), "fp", time.Minute)
		if err != nil || b.State != idempotency.Started {
			t.Fatalf("key %d: %v, %v", i, b.State, err)
		}
		if i%3 == 0 {
			if err := m.Complete(ctx, string(buf), b.Token, idempotency.Record{Status: 200}, 24*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if i%4096 == 0 {
			clock.Advance(time.Millisecond)
			if n := m.Len(); n > maxEntries {
				t.Fatalf("after %d keys: %d held, more than MaxEntries %d", i+1, n, maxEntries)
			}
		}
	}
	if n := m.Len(); n != maxEntries {
		t.Fatalf("after %d keys: %d held, want MaxEntries %d", flood, n, maxEntries)
	}
}

// A Memory of at most 511 entries has a single shard, so that which entry is
// evicted is exactly predictable.
const oneShard = 100

func TestMemoryEvictsExpiredEntriesBeforeLiveOnes(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	m := newMemory(t, &idempotency.MemoryConfig{MaxEntries: oneShard, Now: clock.Now})
	// The oldest: records kept a day.
	for i := range oneShard / 2 {
		completeNew(t, m, fmt.Sprintf("kept-%d", i), 24*time.Hour)
	}
	// Then requests that die without finishing: markers with a short lease.
	for i := range oneShard / 2 {
		mustBegin(t, m, fmt.Sprintf("crashed-%d", i), 10*time.Second, idempotency.Started)
	}
	clock.Advance(10 * time.Second)
	for i := range oneShard / 2 {
		mustBegin(t, m, fmt.Sprintf("new-%d", i), time.Minute, idempotency.Started)
	}
	for i := range oneShard / 2 {
		mustBegin(t, m, fmt.Sprintf("kept-%d", i), time.Minute, idempotency.Completed)
		mustBegin(t, m, fmt.Sprintf("new-%d", i), time.Minute, idempotency.InProgress)
	}
	if n := m.Len(); n != oneShard {
		t.Fatalf("%d entries held, want %d", n, oneShard)
	}
}

func TestMemoryEvictsTheOldestRecordWhenNothingExpired(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	m := newMemory(t, &idempotency.MemoryConfig{MaxEntries: oneShard, Now: clock.Now})
	for i := range oneShard / 2 {
		completeNew(t, m, fmt.Sprintf("record-%d", i), 24*time.Hour)
		clock.Advance(time.Second)
	}
	// Requests still running are spared while there are records to evict.
	for i := range oneShard / 2 {
		mustBegin(t, m, fmt.Sprintf("running-%d", i), time.Hour, idempotency.Started)
	}
	for i := range 10 {
		mustBegin(t, m, fmt.Sprintf("more-%d", i), time.Hour, idempotency.Started)
	}
	// The 10 oldest records were evicted; the rest are kept.
	for i := 10; i < oneShard/2; i++ {
		mustBegin(t, m, fmt.Sprintf("record-%d", i), time.Hour, idempotency.Completed)
	}
	for i := range oneShard / 2 {
		mustBegin(t, m, fmt.Sprintf("running-%d", i), time.Hour, idempotency.InProgress)
	}
	for i := range 10 {
		mustBegin(t, m, fmt.Sprintf("record-%d", i), time.Hour, idempotency.Started) // free again
	}
	// With nothing but markers, the oldest marker goes.
	m2 := newMemory(t, &idempotency.MemoryConfig{MaxEntries: oneShard, Now: clock.Now})
	for i := range oneShard + 1 {
		mustBegin(t, m2, fmt.Sprintf("running-%d", i), time.Hour, idempotency.Started)
	}
	mustBegin(t, m2, "running-1", time.Hour, idempotency.InProgress)
	mustBegin(t, m2, "running-0", time.Hour, idempotency.Started)
}

func TestMemorySweepsExpiredEntriesAsNewOnesArrive(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	m := newMemory(t, &idempotency.MemoryConfig{Now: clock.Now})
	const n = 10_000
	for i := range n {
		if i%2 == 0 {
			mustBegin(t, m, fmt.Sprintf("marker-%d", i), time.Second, idempotency.Started)
		} else {
			completeNew(t, m, fmt.Sprintf("record-%d", i), time.Minute)
		}
	}
	if got := m.Len(); got != n {
		t.Fatalf("%d entries held, want %d", got, n)
	}
	clock.Advance(time.Hour)
	// Far fewer new entries than expired ones, spread over every shard,
	// each sweeping a few: the expired ones are gone, without a scan.
	for i := range n / 2 {
		mustBegin(t, m, fmt.Sprintf("new-%d", i), time.Minute, idempotency.Started)
	}
	if got := m.Len(); got > n/2+n/10 {
		t.Fatalf("%d entries held after %d expired and %d arrived: expired entries linger", got, n, n/2)
	}
}

func TestMemoryReplayAllocatesOnlyTheCopy(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	m := newMemory(t, &idempotency.MemoryConfig{Now: clock.Now})
	ctx := context.Background()
	fp := idempotencytest.Fingerprint("k")
	b, _ := m.Begin(ctx, "k", fp, time.Minute)
	rec := idempotency.Record{Status: 200, Body: make([]byte, 1024),
		Header: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_1"}}}
	if err := m.Complete(ctx, "k", b.Token, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The Record, the header map (two) and its values, the body.
	if n := testing.AllocsPerRun(1000, func() { m.Begin(ctx, "k", fp, time.Minute) }); n > 5 {
		t.Errorf("a replay allocates %v times, want at most 5", n)
	}
	m.Begin(ctx, "running", fp, time.Minute)
	if n := testing.AllocsPerRun(1000, func() { m.Begin(ctx, "running", fp, time.Minute) }); n != 0 {
		t.Errorf("a Begin that finds the request in progress allocates %v times, want 0", n)
	}
}

func TestMemoryBytesPerEntry(t *testing.T) {
	const entries = 50_000
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newMemory(t, &idempotency.MemoryConfig{MaxEntries: entries * 2, Now: clock.Now})
	fp := idempotencytest.Fingerprint("x")
	for i := range entries {
		key := fmt.Sprintf("key_%016x\x00%032x", i, i) // 54 bytes
		b, _ := m.Begin(ctx, key, fp, time.Minute)
		m.Complete(ctx, key, b.Token, idempotency.Record{Status: 200, CreatedAt: clock.Now()}, time.Hour)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(m.Len())
	runtime.KeepAlive(m)
	t.Logf("%.0f bytes per completed entry with an empty body (54-byte key, 64-byte fingerprint)", per)
	if per > 512 {
		t.Errorf("%.0f bytes per entry, want at most 512", per)
	}
}

func TestStateNames(t *testing.T) {
	for s, want := range map[idempotency.State]string{
		idempotency.Started: "Started", idempotency.InProgress: "InProgress",
		idempotency.Completed: "Completed", idempotency.Mismatch: "Mismatch", 0: "State(0)", 9: "State(9)",
	} {
		if s.String() != want {
			t.Errorf("State %d: %q, want %q", uint8(s), s.String(), want)
		}
	}
}

func TestFingerprintSeparatesItsParts(t *testing.T) {
	base := idempotency.Fingerprint("POST", "/v1/chat", []byte(`{"a":1}`))
	if len(base) != 64 {
		t.Fatalf("Fingerprint %q is not hex SHA-256", base)
	}
	for name, fp := range map[string]string{
		"method": idempotency.Fingerprint("PUT", "/v1/chat", []byte(`{"a":1}`)),
		"path":   idempotency.Fingerprint("POST", "/v1/chat2", []byte(`{"a":1}`)),
		"body":   idempotency.Fingerprint("POST", "/v1/chat", []byte(`{"a":2}`)),
		"split":  idempotency.Fingerprint("POST", "/v1/chat{", []byte(`"a":1}`)),
		"shift":  idempotency.Fingerprint("POST/", "v1/chat", []byte(`{"a":1}`)),
	} {
		if fp == base {
			t.Errorf("a different %s gave the same fingerprint", name)
		}
	}
	if again := idempotency.Fingerprint("POST", "/v1/chat", []byte(`{"a":1}`)); again != base {
		t.Error("Fingerprint is not deterministic")
	}
}

// benchBody is a response body of 1 KiB.
var benchBody = []byte(fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"message":{"content":%q}}]}`, make([]byte, 900)))[:1024]

var benchHeader = http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_0123456789abcdef"}}

func BenchmarkMemoryBeginComplete(b *testing.B) {
	m := newMemory(b, nil)
	ctx := context.Background()
	fp := idempotencytest.Fingerprint("bench")
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 64)
		for pb.Next() {
			buf = strconv.AppendInt(append(buf[:0], "principal_42\x00key-"...), next.Add(1), 10)
			key := string(buf)
			r, err := m.Begin(ctx, key, fp, time.Minute)
			if err != nil || r.State != idempotency.Started {
				b.Errorf("Begin: %v, %v", r.State, err)
				return
			}
			rec := idempotency.Record{Status: 200, Header: benchHeader, Body: benchBody}
			if err := m.Complete(ctx, key, r.Token, rec, 24*time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkMemoryReplay(b *testing.B) {
	m := newMemory(b, nil)
	ctx := context.Background()
	fp := idempotencytest.Fingerprint("bench")
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("principal_%04d\x00key", i)
		r, _ := m.Begin(ctx, keys[i], fp, time.Minute)
		m.Complete(ctx, keys[i], r.Token, idempotency.Record{Status: 200, Header: benchHeader, Body: benchBody}, 24*time.Hour)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 101
		for pb.Next() {
			r, err := m.Begin(ctx, keys[i%len(keys)], fp, time.Minute)
			if err != nil || r.State != idempotency.Completed || len(r.Record.Body) != 1024 {
				b.Errorf("replay: %v, %v", r.State, err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
