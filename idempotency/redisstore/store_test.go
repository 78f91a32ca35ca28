package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/idempotencytest"
	"github.com/gatekit/gatekit/idempotency/redisstore"
	"github.com/gatekit/gatekit/internal/redistest"
)

// redisServer is this package's redis-server, and redisCluster its Redis
// Cluster (3 masters, 3 replicas), each started by the first test that
// needs it and stopped by TestMain.
var (
	redisServer  = redistest.New()
	redisCluster = redistest.NewCluster()
)

func TestMain(m *testing.M) {
	code := m.Run()
	redisServer.Close()
	redisCluster.Close()
	os.Exit(code)
}

func newStore(tb testing.TB, client redis.UniversalClient, cfg *redisstore.Config) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.New(client, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestStoreConformance(t *testing.T) {
	client := redisServer.Client(t)
	idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
		return newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: now, Timeout: redistest.SlowTimeout})
	})
}

// TestStoreConformanceOnCluster runs the suite on a Redis Cluster of three
// masters and their replicas through redis.NewClusterClient, calls batched
// through its autopipeliner.
func TestStoreConformanceOnCluster(t *testing.T) {
	client := redisCluster.Client(t)
	idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
		return newStore(t, client, &redisstore.Config{Prefix: redisCluster.KeyPrefix(t), Now: now, Timeout: redistest.SlowTimeout})
	})
}

// TestStoreConformanceWithoutGoroutineTimeouts runs the suite with a client
// that does not honour context deadlines, so that every call takes the
// Store's other path.
func TestStoreConformanceWithoutGoroutineTimeouts(t *testing.T) {
	client := redisServer.ClientWithDefaults(t, false)
	idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
		return newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: now, Timeout: redistest.SlowTimeout})
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	client := redistest.Unreachable(t)
	for name, cfg := range map[string]*redisstore.Config{
		"braces in prefix": {Prefix: "idem:{x}:"},
		"negative timeout": {Timeout: -time.Second},
	} {
		if _, err := redisstore.New(client, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := redisstore.New(nil, nil); err == nil {
		t.Error("New accepted a nil client")
	}
	if _, err := redisstore.New(client, nil); err != nil {
		t.Errorf("New(client, nil): %v", err)
	}
}

func TestKeysAreHashedAndHashTagged(t *testing.T) {
	client := redistest.Unreachable(t)
	store := newStore(t, client, nil)
	seen := map[string]string{}
	for _, key := range []string{"", "k", "principal\x00key", "principal\x00key\x00", "{k}", "}{", "a}b{c",
		strings.Repeat("\xff", 10_000), "\x00"} {
		got := store.Key(key)
		hash, ok := strings.CutPrefix(got, redisstore.DefaultPrefix+"{")
		if !ok || !strings.HasSuffix(hash, "}") {
			t.Fatalf("Key(%q) = %q: not DefaultPrefix + {hash}", key, got)
		}
		hash = strings.TrimSuffix(hash, "}")
		if len(hash) != 43 || strings.ContainsAny(hash, "{}\x00") {
			t.Fatalf("Key(%q) = %q: the tag is not a 43-character base64url hash", key, got)
		}
		if other, dup := seen[got]; dup {
			t.Fatalf("Key(%q) = Key(%q) = %q", key, other, got)
		}
		seen[got] = key
	}
	// Fixed, so that every instance, old or new, finds the same entry.
	if got, want := store.Key("principal\x00key"), redisstore.DefaultPrefix+"{"+"571cIxJvmvpaXqZIWBNPvl9EjTL6fGErQdf8QMTdqHE"+"}"; got != want {
		t.Fatalf("Key = %q, want %q", got, want)
	}
}

func TestStoreExpiresEntriesByRedisClock(t *testing.T) {
	client := redisServer.Client(t)
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	ctx := context.Background()
	fp := idempotencytest.Fingerprint("redis-clock")

	b, err := store.Begin(ctx, "k", fp, 30*time.Second)
	if err != nil || b.State != idempotency.Started {
		t.Fatalf("Begin: %v, %v", b.State, err)
	}
	checkTTL := func(what string, max time.Duration) {
		t.Helper()
		ttl, err := client.PTTL(ctx, store.Key("k")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > max || ttl < max-time.Second {
			t.Fatalf("%s: PTTL %v, want just under %v", what, ttl, max)
		}
	}
	checkTTL("in progress", 30*time.Second)
	fields, err := client.HKeys(ctx, store.Key("k")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(fields, ","), "e") {
		t.Fatalf("fields %v: an expiry timestamp was written without Config.Now", fields)
	}
	if err := store.Complete(ctx, "k", b.Token, idempotency.Record{Status: 200, Body: []byte("ok")}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	checkTTL("completed", 24*time.Hour)
	r, err := store.Begin(ctx, "k", fp, 30*time.Second)
	if err != nil || r.State != idempotency.Completed || string(r.Record.Body) != "ok" {
		t.Fatalf("replay: %+v, %v", r, err)
	}
	if r.Record.CreatedAt.IsZero() || time.Since(r.Record.CreatedAt) > time.Minute {
		t.Fatalf("CreatedAt %v: not set to the time of Complete", r.Record.CreatedAt)
	}
	checkTTL("after a replay", 24*time.Hour)

	// A short lease runs out on Redis's clock: the key is free again.
	if b, err := store.Begin(ctx, "short", fp, 20*time.Millisecond); err != nil || b.State != idempotency.Started {
		t.Fatalf("Begin: %v, %v", b.State, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := store.Begin(ctx, "short", fp, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if b.State == idempotency.Started {
			break
		}
		if b.State != idempotency.InProgress || time.Now().After(deadline) {
			t.Fatalf("2s after a 20ms lease: %v", b.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStoreWithAClockAlsoSetsRedisExpiry(t *testing.T) {
	client := redisServer.Client(t)
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: clock.Now})
	ctx := context.Background()
	b, err := store.Begin(ctx, "k", "fp", 10*time.Second)
	if err != nil || b.State != idempotency.Started {
		t.Fatalf("Begin: %v, %v", b.State, err)
	}
	ttl, err := client.PTTL(ctx, store.Key("k")).Result()
	if err != nil || ttl > 10*time.Second || ttl < 9*time.Second {
		t.Fatalf("PTTL %v, %v: want the lease as a backstop", ttl, err)
	}
	if err := store.Complete(ctx, "k", b.Token, idempotency.Record{Status: 200}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ttl, err = client.PTTL(ctx, store.Key("k")).Result()
	if err != nil || ttl > time.Hour || ttl < time.Hour-time.Second {
		t.Fatalf("PTTL %v, %v: want the retention as a backstop", ttl, err)
	}
}

func TestStoreReportsACorruptRecord(t *testing.T) {
	client := redisServer.Client(t)
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Timeout: redistest.SlowTimeout})
	ctx := context.Background()
	b, err := store.Begin(ctx, "k", "fp", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Complete(ctx, "k", b.Token, idempotency.Record{Status: 200, Body: []byte("ok")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := client.HSet(ctx, store.Key("k"), "r", "\x07garbage").Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := store.Begin(ctx, "k", "fp", time.Minute); err == nil {
		t.Fatalf("replay of a corrupt record: %+v, no error", r)
	}
}

func TestStoreFailsFastWhileRedisIsDownAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	store := newStore(t, srv.ClientWithDefaults(t, true), &redisstore.Config{Timeout: redistest.OutageTimeout})
	ctx := context.Background()
	b, err := store.Begin(ctx, "k", "fp", time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Begin": func() error { _, err := store.Begin(ctx, "k2", "fp", time.Minute); return err },
		"Complete": func() error {
			return store.Complete(ctx, "k", b.Token, idempotency.Record{Status: 200}, time.Hour)
		},
		"Abort": func() error { return store.Abort(ctx, "k", b.Token) },
	}
	for name, call := range calls {
		for i := range 3 {
			what := fmt.Sprint(name, " ", i)
			err := redistest.FailsFastWhileStopped(t, what, redistest.OutageTimeout, call)
			if errors.Is(err, idempotency.ErrLeaseLost) {
				t.Fatalf("%s with Redis stopped: %v; a failure is not a lost lease", what, err)
			}
		}
	}

	// The restarted server is empty, its script cache too: EVALSHA fails
	// with NOSCRIPT and the script is sent again.
	srv.RestartAndRetry(t, func() (err error) {
		b, err = store.Begin(ctx, "k", "fp", time.Minute)
		return err
	})
	if b.State != idempotency.Started {
		t.Fatalf("first Begin after restart: %v, want Started on an empty server", b.State)
	}
}

func TestStoreFailsFastWhileRedisHangs(t *testing.T) {
	srv := redistest.Start(t)
	for _, ctxTimeouts := range []bool{true, false} {
		store := newStore(t, srv.ClientWithDefaults(t, ctxTimeouts), &redisstore.Config{Timeout: redistest.OutageTimeout})
		ctx := context.Background()
		b, err := store.Begin(ctx, fmt.Sprint("k", ctxTimeouts), "fp", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		srv.WhilePaused(t, func() {
			for name, call := range map[string]func() error{
				"Begin":    func() error { _, err := store.Begin(ctx, "k2", "fp", time.Minute); return err },
				"Complete": func() error { return store.Complete(ctx, "k", b.Token, idempotency.Record{}, time.Hour) },
				"Abort":    func() error { return store.Abort(ctx, "k", b.Token) },
			} {
				redistest.TimesOutWhileHung(t, fmt.Sprintf("ContextTimeoutEnabled=%v: %s", ctxTimeouts, name), redistest.OutageTimeout, call)
			}
		})
	}
}

func TestStoreHonoursTheCallersDeadline(t *testing.T) {
	client := redisServer.Client(t)
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := store.Begin(ctx, "k", "fp", time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Begin with a cancelled context: err = %v, want context.Canceled", err)
	}
}

func TestEveryOperationIsOneRoundTrip(t *testing.T) {
	client := redisServer.ClientWithDefaults(t, true)
	hook := &redistest.CommandCounter{}
	client.AddHook(hook)
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	ctx := context.Background()
	store.Begin(ctx, "warm-up", "fp", time.Minute) // may load the script: EVALSHA, NOSCRIPT, EVAL
	before := hook.Count()
	for i := range 20 {
		key := strconv.Itoa(i)
		b, err := store.Begin(ctx, key, "fp", time.Minute) // Started
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Begin(ctx, key, "fp", time.Minute); err != nil { // InProgress
			t.Fatal(err)
		}
		if i%2 == 0 {
			err = store.Abort(ctx, key, b.Token)
		} else {
			err = store.Complete(ctx, key, b.Token, idempotency.Record{Status: 200, Body: []byte("x")}, time.Hour)
			if err == nil {
				_, err = store.Begin(ctx, key, "fp", time.Minute) // Completed
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := hook.Count() - before; n != 70 {
		t.Fatalf("70 operations sent %d commands, want 70", n)
	}
}

// benchBody is a response body of 1 KiB.
var benchBody = []byte(strings.Repeat(`{"choices":[{"delta":{"content":"Hello"}}]}`, 24)[:1024])

var benchHeader = http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_0123456789abcdef"}}

func benchStore(b *testing.B) *redisstore.Store {
	return newStore(b, redisServer.ClientWithDefaults(b, true), &redisstore.Config{Prefix: redisServer.KeyPrefix(b), Timeout: redistest.SlowTimeout})
}

func BenchmarkRedisBeginComplete(b *testing.B) {
	store := benchStore(b)
	ctx := context.Background()
	fp := idempotencytest.Fingerprint("bench")
	var next atomic.Int64
	// Enough requests in flight to measure Redis, not the round trip.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := "principal_42\x00key-" + strconv.FormatInt(next.Add(1), 10)
			r, err := store.Begin(ctx, key, fp, time.Minute)
			if err != nil || r.State != idempotency.Started {
				b.Errorf("Begin: %v, %v", r.State, err)
				return
			}
			rec := idempotency.Record{Status: 200, Header: benchHeader, Body: benchBody}
			if err := store.Complete(ctx, key, r.Token, rec, time.Minute); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkRedisReplay(b *testing.B) {
	store := benchStore(b)
	ctx := context.Background()
	fp := idempotencytest.Fingerprint("bench")
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("principal_%04d\x00key", i)
		r, err := store.Begin(ctx, keys[i], fp, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Complete(ctx, keys[i], r.Token, idempotency.Record{Status: 200, Header: benchHeader, Body: benchBody}, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 101
		for pb.Next() {
			r, err := store.Begin(ctx, keys[i%len(keys)], fp, time.Minute)
			if err != nil || r.State != idempotency.Completed || len(r.Record.Body) != 1024 {
				b.Errorf("replay: %v, %v", r.State, err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
