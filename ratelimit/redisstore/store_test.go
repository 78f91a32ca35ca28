package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/ratelimit"
	"github.com/gatekit/gatekit/ratelimit/ratelimittest"
	"github.com/gatekit/gatekit/ratelimit/redisstore"
)

// redisServer is this package's redis-server, started by the first test that
// needs it and stopped by TestMain.
var redisServer = redistest.New()

func TestMain(m *testing.M) {
	m.Run()
	redisServer.Close()
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
	ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
		return newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: now, Timeout: redistest.SlowTimeout})
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	client := redistest.Unreachable(t)
	for name, cfg := range map[string]*redisstore.Config{
		"braces in prefix": {Prefix: "rl:{x}:"},
		"negative timeout": {Timeout: -time.Second},
	} {
		if _, err := redisstore.New(client, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := redisstore.New(nil, nil); err == nil {
		t.Error("New accepted a nil client")
	}
}

func TestStoreKeepsRealTimeOnlyOnRedisClock(t *testing.T) {
	client := redistest.Unreachable(t)
	own, err := redisstore.New(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	test, err := redisstore.New(client, &redisstore.Config{Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !own.RealTime() || test.RealTime() {
		t.Fatalf("RealTime: Redis's clock %v, a configured clock %v; want true, false", own.RealTime(), test.RealTime())
	}
}

// TestStoreMatchesMemory replays random sequences of Allow on a few keys,
// with the clock jumping, policies changing and values near the largest a
// policy allows, against the Redis store and the memory store: the Lua
// script must reproduce the Go arithmetic exactly.
func TestStoreMatchesMemory(t *testing.T) {
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	mem, err := ratelimit.NewMemory(&ratelimit.MemoryConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t, redisServer.Client(t), &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: clock.Now, Timeout: redistest.SlowTimeout})
	policies := []ratelimit.Policy{
		ratelimit.PerSecond(10),
		ratelimit.PerMinute(60).WithBurst(10),
		ratelimit.PerHour(7),
		ratelimit.PerMinute(1000),
		ratelimit.PerSecond(5000),
		// About the largest bucket a policy may have: 2^51 scaled units.
		{Limit: 999_983, Window: 24 * time.Hour, Burst: 26_000_000},
		{Limit: 1 << 40, Window: time.Millisecond, Burst: 2047},
		// One unit in 35 years: the key's TTL reaches 2^52 ms, 16 digits.
		{Limit: 1, Window: (1 << 40) * time.Millisecond, Burst: 2047},
		// One scaled unit per unit, 2^51 of them: Remaining shows any
		// digit lost on the way through Lua.
		{Limit: 1 << 50, Window: 1024 * time.Millisecond, Burst: 1 << 51},
	}
	keys := []string{"a", "b", "c"}
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	for i := range 3000 {
		switch rng.IntN(10) {
		case 0:
			clock.Advance(time.Duration(rng.Int64N(int64(48 * time.Hour))))
		case 1, 2, 3:
			clock.Advance(time.Duration(rng.Int64N(int64(2 * time.Second))))
		}
		key := keys[rng.IntN(len(keys))]
		p := policies[rng.IntN(len(policies))]
		burst := p.Burst
		if burst == 0 {
			burst = p.Limit
		}
		var n int64
		switch rng.IntN(4) {
		case 0:
			n = rng.Int64N(3)
		case 1:
			n = rng.Int64N(burst + 1)
		case 2:
			n = burst + rng.Int64N(2*burst+1)
		default:
			n = 1
		}
		want, err := mem.Allow(ctx, key, p, n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := store.Allow(ctx, key, p, n)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("step %d: Allow(%q, %+v, %d) at +%v:\nredis  %+v\nmemory %+v", i, key, p, n, clock.Now().Sub(ratelimittest.Epoch()), got, want)
		}
	}
}

func TestStoreUsesRedisClockAndExpiresKeys(t *testing.T) {
	client := redisServer.Client(t)
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	ctx := context.Background()
	p := ratelimit.PerMinute(60).WithBurst(10) // a second per unit

	d, err := store.Allow(ctx, "alice", p, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ratelimit.Decision{Allowed: true, Limit: 60, Remaining: 6, ResetAfter: 4 * time.Second}); d != want {
		t.Fatalf("first Allow: %+v, want %+v", d, want)
	}
	key := store.Key("alice")
	if !strings.HasSuffix(key, "{alice}") {
		t.Fatalf("Key(%q) = %q: not hash-tagged", "alice", key)
	}
	ttl, err := client.PTTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Refill time (4s) plus a second's margin.
	if ttl <= 4*time.Second || ttl > 5*time.Second {
		t.Fatalf("PTTL %s = %v, want in (4s, 5s]", key, ttl)
	}
	// Checks and denials write nothing.
	store.Allow(ctx, "alice", p, 0)
	store.Allow(ctx, "alice", p, 11)
	store.Allow(ctx, "bob", p, 0)
	if n, _ := client.Exists(ctx, store.Key("bob")).Result(); n != 0 {
		t.Fatal("a check on an untracked key created it")
	}
	// Time passes on the Redis server's clock.
	time.Sleep(20 * time.Millisecond)
	d, err = store.Allow(ctx, "alice", p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.ResetAfter > 4*time.Second-20*time.Millisecond || d.ResetAfter < 3*time.Second {
		t.Fatalf("20ms later ResetAfter = %v, want just under 3.98s", d.ResetAfter)
	}
}

// TestStoreIgnoresBucketsOfTheHashFormat: versions before v2 kept a bucket
// in a hash under Prefix + "{" + key + "}". During a rolling upgrade both
// versions run on one Redis: neither may fail on the other's keys, so the
// store keeps its buckets under other keys and leaves the old ones alone.
func TestStoreIgnoresBucketsOfTheHashFormat(t *testing.T) {
	client := redisServer.Client(t)
	prefix := redisServer.KeyPrefix(t)
	store := newStore(t, client, &redisstore.Config{Prefix: prefix})
	ctx := context.Background()
	p := ratelimit.PerMinute(60).WithBurst(10)

	// An empty bucket, as the old script wrote it (scaled by 1000 per unit).
	old := prefix + "{alice}"
	if err := client.HSet(ctx, old, "b", "0", "t", "1000", "u", "1000").Err(); err != nil {
		t.Fatal(err)
	}
	if store.Key("alice") == old {
		t.Fatalf("Key(%q) = %q, the key of the hash format", "alice", old)
	}
	d, err := store.Allow(ctx, "alice", p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Remaining != 9 {
		t.Fatalf("Allow beside an old empty bucket: %+v, want a full bucket of its own", d)
	}
	if got, err := client.HGetAll(ctx, old).Result(); err != nil || got["b"] != "0" || len(got) != 3 {
		t.Fatalf("old bucket after Allow: %v, %v; want it untouched", got, err)
	}
	if v, err := client.Get(ctx, store.Key("alice")).Result(); err != nil || len(v) != 24 {
		t.Fatalf("bucket: %q, %v; want 24 bytes", v, err)
	}
}

func TestStoreKeysUseHashTags(t *testing.T) {
	client := redistest.Unreachable(t)
	store := newStore(t, client, nil)
	if got, want := store.Key("user_42:/v1/chat"), "gatekit:rl:v2:{user_42:/v1/chat}"; got != want {
		t.Fatalf("Key = %q, want %q", got, want)
	}
}

// batching names the two ways a Store sends its decisions, for tests
// that run in both.
var batching = []struct {
	name      string
	unbatched bool
}{{"batched", false}, {"unbatched", true}}

func TestRedisExactAcrossInstances(t *testing.T) {
	for _, b := range batching {
		t.Run(b.name, func(t *testing.T) { testRedisExactAcrossInstances(t, b.unbatched) })
	}
}

func testRedisExactAcrossInstances(t *testing.T, unbatched bool) {
	redisServer.Ready(t)
	key := redisServer.KeyPrefix(t) + "hot"
	p := ratelimit.PerSecond(200).WithBurst(20) // one unit every 5ms
	ctx := context.Background()
	const instances, goroutines = 3, 32

	// Separate instances: a client and a Store each, with their
	// connections open before the clock starts.
	var stores []*redisstore.Store
	for range instances {
		client := redisServer.Client(t)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() { client.Ping(ctx) })
		}
		wg.Wait()
		stores = append(stores, newStore(t, client, &redisstore.Config{Timeout: redistest.SlowTimeout, Unbatched: unbatched}))
	}
	admin := redisServer.Client(t)

	// Elapsed time is measured on the Redis server's clock, the one the
	// script uses, bracketing the first decision (which creates the
	// bucket) and the last (which reads what is left).
	now := func() time.Time {
		t.Helper()
		tm, err := admin.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	var allowed atomic.Int64
	beforeFirst := now()
	if d, err := stores[0].Allow(ctx, key, p, 1); err != nil || !d.Allowed {
		t.Fatalf("first request: %+v, %v", d, err)
	}
	afterFirst := now()
	allowed.Add(1)
	stop := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for _, s := range stores {
		for range goroutines {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if !countAllowed(t, s, key, p, &allowed) {
						return
					}
				}
			})
		}
	}
	wg.Wait()
	beforeLast := now()
	last, err := stores[0].Allow(ctx, key, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	afterLast := now()

	// Units granted over an interval: the burst plus the refill. The script
	// counts whole milliseconds of Redis's clock, so the first decision may
	// be dated up to the start of the millisecond it happened in.
	granted := func(d time.Duration) float64 { return float64(p.Burst) + float64(p.Limit)*d.Seconds() }
	most := granted(afterLast.Sub(beforeFirst.Truncate(time.Millisecond)))
	least := granted(beforeLast.Truncate(time.Millisecond).Sub(afterFirst))
	got := allowed.Load()
	t.Logf("%d instances x %d goroutines: %d allowed in %v (Redis clock), %d left unclaimed; burst + rate*elapsed = %.2f",
		instances, goroutines, got, afterLast.Sub(beforeFirst), last.Remaining, most)
	// Never more than the bucket gave out, and, counting the whole units
	// left at the end (that no one asked for), not one unit lost.
	if float64(got) > most {
		t.Errorf("%d allowed, more than burst + rate*elapsed = %.2f", got, most)
	}
	if sum := float64(got + last.Remaining); sum > most || sum < least-1 {
		t.Errorf("allowed %d + left %d = %.0f, want within one of %.2f (at least %.2f): units were lost or minted",
			got, last.Remaining, sum, most, least-1)
	}
}

func TestStoreFailsFastWhileRedisIsDownAndRecovers(t *testing.T) {
	for _, b := range batching {
		t.Run(b.name, func(t *testing.T) { testStoreFailsFastWhileRedisIsDownAndRecovers(t, b.unbatched) })
	}
}

func testStoreFailsFastWhileRedisIsDownAndRecovers(t *testing.T, unbatched bool) {
	srv := redistest.Start(t)
	store := newStore(t, srv.ClientWithDefaults(t, true), &redisstore.Config{Timeout: redistest.OutageTimeout, Unbatched: unbatched})
	ctx := context.Background()
	p := ratelimit.PerSecond(100)
	if _, err := store.Allow(ctx, "k", p, 1); err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		redistest.FailsFastWhileStopped(t, fmt.Sprint("call ", i), redistest.OutageTimeout, func() error {
			_, err := store.Allow(ctx, "k", p, 1)
			return err
		})
	}

	// The restarted server has an empty script cache too: EVALSHA fails
	// with NOSCRIPT and the script is sent again.
	var d ratelimit.Decision
	srv.RestartAndRetry(t, func() (err error) {
		d, err = store.Allow(ctx, "k", p, 1)
		return err
	})
	if !d.Allowed || d.Remaining != 99 {
		t.Fatalf("first decision after restart: %+v, want a full bucket", d)
	}
}

func TestStoreFailsFastWhileRedisHangs(t *testing.T) {
	srv := redistest.Start(t)
	for _, b := range batching {
		for _, ctxTimeouts := range []bool{true, false} {
			store := newStore(t, srv.ClientWithDefaults(t, ctxTimeouts), &redisstore.Config{Timeout: redistest.OutageTimeout, Unbatched: b.unbatched})
			ctx := context.Background()
			p := ratelimit.PerSecond(100)
			if _, err := store.Allow(ctx, "k", p, 1); err != nil {
				t.Fatal(err)
			}
			srv.WhilePaused(t, func() {
				redistest.TimesOutWhileHung(t, fmt.Sprintf("%s, ContextTimeoutEnabled=%v", b.name, ctxTimeouts), redistest.OutageTimeout, func() error {
					_, err := store.Allow(ctx, "k", p, 1)
					return err
				})
			})
			// Redis answers what it was sent while it hung, and the store
			// decides again at once, not after go-redis's ReadTimeout.
			start := time.Now()
			if _, err := store.Allow(ctx, "k", p, 1); err != nil {
				t.Errorf("%s, ContextTimeoutEnabled=%v: first decision after Redis came back: %v", b.name, ctxTimeouts, err)
			} else if took := time.Since(start); took > redistest.Slack {
				t.Errorf("%s, ContextTimeoutEnabled=%v: first decision after Redis came back took %v", b.name, ctxTimeouts, took)
			}
		}
	}
}

// TestStoreRecoversAtOnceWhenAConnectionStopsAnswering: a decision sent
// while the network dropped everything times out, and the next ones, once
// it forwards again, are decided at once, batched or not: not after the
// client's ReadTimeout, which alone ends a batch stuck on a connection
// whose reply was lost.
func TestStoreRecoversAtOnceWhenAConnectionStopsAnswering(t *testing.T) {
	srv := redistest.Start(t)
	proxy := srv.Proxy(t)
	for _, b := range batching {
		for _, ctxTimeouts := range []bool{true, false} {
			what := fmt.Sprintf("%s, ContextTimeoutEnabled=%v", b.name, ctxTimeouts)
			// A ReadTimeout of a second, not the default three, keeps the test short
			// (closing the client waits for the stuck batch) and still far above
			// redistest.Slack.
			client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: ctxTimeouts, ReadTimeout: time.Second})
			t.Cleanup(func() { client.Close() })
			store := newStore(t, client, &redisstore.Config{Timeout: redistest.OutageTimeout, Unbatched: b.unbatched})
			ctx := context.Background()
			p := ratelimit.PerSecond(1000)
			if _, err := store.Allow(ctx, "k", p, 1); err != nil {
				t.Fatal(err)
			}
			proxy.Drop()
			redistest.TimesOutWhileHung(t, what, redistest.OutageTimeout, func() error {
				_, err := store.Allow(ctx, "k", p, 1)
				return err
			})
			proxy.Forward()
			start := time.Now()
			if _, err := store.Allow(ctx, "k", p, 1); err != nil {
				t.Errorf("%s: first decision after the network came back: %v", what, err)
			} else if took := time.Since(start); took > redistest.Slack {
				t.Errorf("%s: first decision after the network came back took %v", what, took)
			}
		}
	}
}

// TestStoreStopsAtTheCallersEarlierDeadline: a caller's deadline before the
// store's Timeout bounds the call, with or without ContextTimeoutEnabled.
func TestStoreStopsAtTheCallersEarlierDeadline(t *testing.T) {
	srv := redistest.Start(t)
	for _, b := range batching {
		for _, ctxTimeouts := range []bool{true, false} {
			store := newStore(t, srv.ClientWithDefaults(t, ctxTimeouts), &redisstore.Config{Timeout: redistest.SlowTimeout, Unbatched: b.unbatched})
			p := ratelimit.PerSecond(100)
			if _, err := store.Allow(context.Background(), "k", p, 1); err != nil {
				t.Fatal(err)
			}
			srv.WhilePaused(t, func() {
				redistest.TimesOutWhileHung(t, fmt.Sprintf("%s, ContextTimeoutEnabled=%v", b.name, ctxTimeouts), redistest.OutageTimeout, func() error {
					ctx, cancel := context.WithTimeout(context.Background(), redistest.OutageTimeout)
					defer cancel()
					_, err := store.Allow(ctx, "k", p, 1)
					return err
				})
			})
		}
	}
}

func TestStoreHonoursTheCallersDeadline(t *testing.T) {
	client := redisServer.Client(t)
	for _, b := range batching {
		store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Unbatched: b.unbatched})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := store.Allow(ctx, "k", ratelimit.PerSecond(1), 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: Allow with a cancelled context: err = %v, want context.Canceled", b.name, err)
		}
	}
}

func TestStoreDecidesInOneRoundTrip(t *testing.T) {
	for _, b := range batching {
		client := redisServer.ClientWithDefaults(t, true)
		hook := &redistest.CommandCounter{}
		client.AddHook(hook)
		store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Unbatched: b.unbatched})
		ctx := context.Background()
		p := ratelimit.PerMinute(100)
		store.Allow(ctx, "k", p, 1) // may load the script: EVALSHA, NOSCRIPT, EVAL
		commands, trips := hook.Count(), hook.RoundTrips()
		for range 100 {
			if _, err := store.Allow(ctx, "k", p, 1); err != nil {
				t.Fatal(err)
			}
		}
		if n := hook.Count() - commands; n != 100 {
			t.Errorf("%s: 100 decisions sent %d commands, want 100", b.name, n)
		}
		if n := hook.RoundTrips() - trips; n != 100 {
			t.Errorf("%s: 100 decisions, one after another, took %d round trips, want 100", b.name, n)
		}
	}
}

// TestConcurrentDecisionsShareRoundTrips: decisions made at the same time
// go to Redis together, each still one command; unbatched, each takes a
// round trip of its own.
func TestConcurrentDecisionsShareRoundTrips(t *testing.T) {
	const goroutines, each = 64, 50
	for _, b := range batching {
		client := redisServer.ClientWithDefaults(t, true)
		hook := &redistest.CommandCounter{}
		client.AddHook(hook)
		store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Unbatched: b.unbatched, Timeout: redistest.SlowTimeout})
		p := ratelimit.PerMinute(1_000_000)
		var allowed atomic.Int64
		run := func() {
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range each {
						if !countAllowed(t, store, fmt.Sprintf("k%d", (g*each+i)%97), p, &allowed) {
							return
						}
					}
				})
			}
			wg.Wait()
		}
		// The first run loads the script and opens the connections, which
		// sends commands of its own; the second is counted.
		run()
		allowed.Store(0)
		commands, trips := hook.Count(), hook.RoundTrips()
		run()
		const decisions = goroutines * each
		n, rt := hook.Count()-commands, hook.RoundTrips()-trips
		t.Logf("%s: %d decisions, %d commands, %d round trips", b.name, decisions, n, rt)
		if n != decisions || allowed.Load() != decisions {
			t.Errorf("%s: %d decisions sent %d commands and were allowed %d times, want %d of each", b.name, decisions, n, allowed.Load(), decisions)
		}
		switch {
		case b.unbatched && rt != decisions:
			t.Errorf("unbatched: %d decisions took %d round trips, want one each", decisions, rt)
		case !b.unbatched && rt > decisions/2:
			t.Errorf("batched: %d decisions from %d goroutines took %d round trips, want them shared", decisions, goroutines, rt)
		}
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	client := redisServer.ClientWithDefaults(b, true)
	store := newStore(b, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(b), Timeout: redistest.SlowTimeout})
	ctx := context.Background()
	p := ratelimit.PerSecond(1_000_000)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("principal_%04d:/v1/chat", i)
	}
	var next atomic.Int64
	// Enough requests in flight to measure Redis, not the round trip.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 101
		for pb.Next() {
			if _, err := store.Allow(ctx, keys[i%len(keys)], p, 1); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// countAllowed asks s for one unit of key's bucket, adding one to allowed
// if it was granted. It reports false, having marked the test failed, if s
// failed.
func countAllowed(t *testing.T, s *redisstore.Store, key string, p ratelimit.Policy, allowed *atomic.Int64) bool {
	d, err := s.Allow(context.Background(), key, p, 1)
	if err != nil {
		t.Error(err)
		return false
	}
	if d.Allowed {
		allowed.Add(1)
	}
	return true
}
