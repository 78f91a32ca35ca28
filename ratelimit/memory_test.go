package ratelimit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/gatekit/gatekit/ratelimit"
	"github.com/gatekit/gatekit/ratelimit/ratelimittest"
)

func newMemory(tb testing.TB, cfg *ratelimit.MemoryConfig) *ratelimit.Memory {
	tb.Helper()
	m, err := ratelimit.NewMemory(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestMemoryConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
		return newMemory(t, &ratelimit.MemoryConfig{Now: now})
	})
}

func TestNewMemoryRejectsNegativeMaxKeys(t *testing.T) {
	if _, err := ratelimit.NewMemory(&ratelimit.MemoryConfig{MaxKeys: -1}); err == nil {
		t.Fatal("NewMemory accepted MaxKeys -1")
	}
}

func TestMemoryDefaultClockMeasuresElapsedTime(t *testing.T) {
	m := newMemory(t, nil)
	ctx := context.Background()
	p := ratelimit.PerHour(1)
	d, err := m.Allow(ctx, "k", p, 1)
	if err != nil || !d.Allowed || d.ResetAfter != time.Hour {
		t.Fatalf("first request: %+v, %v; want allowed, full again in an hour", d, err)
	}
	d, err = m.Allow(ctx, "k", p, 1)
	if err != nil || d.Allowed || d.RetryAfter > time.Hour || d.RetryAfter < 59*time.Minute {
		t.Fatalf("second request: %+v, %v; want denied, retry in just under an hour", d, err)
	}
}

func TestMemoryDecisionsOnATrackedKeyAllocateNothing(t *testing.T) {
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	m := newMemory(t, &ratelimit.MemoryConfig{Now: clock.Now})
	ctx := context.Background()
	p := ratelimit.PerSecond(1000)
	if _, err := m.Allow(ctx, "tracked", p, 1); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(){
		"Allow":      func() { m.Allow(ctx, "tracked", p, 1) },
		"AllowCheck": func() { m.Allow(ctx, "tracked", p, 0) },
		"Denied":     func() { m.Allow(ctx, "tracked", p, 5000) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per decision, want 0", name, n)
		}
	}
}

// recordingClock is the real clock, remembering the latest millisecond it
// returned, that can be stopped there.
type recordingClock struct {
	max    atomic.Int64 // latest UnixMilli returned
	frozen atomic.Bool
}

func (c *recordingClock) Now() time.Time {
	if c.frozen.Load() {
		return time.UnixMilli(c.max.Load())
	}
	t := time.Now()
	ms := t.UnixMilli()
	for {
		m := c.max.Load()
		if ms <= m || c.max.CompareAndSwap(m, ms) {
			return t
		}
	}
}

func (c *recordingClock) freeze() { c.frozen.Store(true) }

// 64 goroutines on one key.
func TestMemoryExactUnderConcurrency(t *testing.T) {
	testMemoryExactUnderConcurrency(t, func(m *ratelimit.Memory, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
		return m.Allow(context.Background(), "hot", p, n)
	})
}

func testMemoryExactUnderConcurrency(t *testing.T, allow func(m *ratelimit.Memory, p ratelimit.Policy, n int64) (ratelimit.Decision, error)) {
	clock := &recordingClock{}
	m := newMemory(t, &ratelimit.MemoryConfig{Now: clock.Now})
	// One unit a millisecond, a burst that no scheduling hiccup can refill.
	p := ratelimit.PerSecond(1000)

	// The first decision creates the bucket: time starts there. It takes
	// half the burst, so that the bucket, which refills no further than
	// full, cannot fill up before the goroutines start taking from it (on
	// a loaded machine, starting them took 4ms once, which a bucket left
	// nearly full refilled past the brim).
	first := p.Limit / 2
	if d, _ := allow(m, p, first); !d.Allowed {
		t.Fatal("first request denied")
	}
	start := clock.max.Load()
	var allowed atomic.Int64
	allowed.Add(first)
	stop := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			var n int64
			for time.Now().Before(stop) {
				d, err := allow(m, p, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					n++
				}
			}
			allowed.Add(n)
		})
	}
	wg.Wait()
	clock.freeze()
	d, _ := allow(m, p, 0)
	elapsed := clock.max.Load() - start // ms, as the limiter saw them

	want := p.Limit + elapsed*p.Limit/p.Window.Milliseconds()
	got := allowed.Load()
	t.Logf("%d allowed over %dms with a burst of %d at 1/ms: burst + rate*elapsed = %d; %d left unclaimed",
		got, elapsed, p.Limit, want, d.Remaining)
	// Never more than the bucket gave out; and counting the whole units
	// left at the end (refilled after the last request, which a straggling
	// goroutine may have made a few ms after the others stopped), exactly
	// what it gave out: no unit lost or minted.
	if got > want {
		t.Errorf("%d allowed, more than burst + rate*elapsed = %d", got, want)
	}
	if got+d.Remaining != want {
		t.Errorf("allowed %d + left %d = %d, want exactly %d: units were lost or minted", got, d.Remaining, got+d.Remaining, want)
	}
}

func TestMemoryNeverTracksMoreThanMaxKeys(t *testing.T) {
	const maxKeys, flood = 10_000, 1_000_000
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: maxKeys, Now: clock.Now})
	ctx := context.Background()
	p := ratelimit.PerMinute(10)
	buf := make([]byte, 0, 32)
	for i := range flood {
		buf = strconv.AppendInt(append(buf[:0], "flood:"...), int64(i), 10)
		if _, err := m.Allow(ctx, string(buf), p, 1); err != nil {
			t.Fatal(err)
		}
		if i%4096 == 0 {
			clock.Advance(time.Millisecond)
			if n := m.Len(); n > maxKeys {
				t.Fatalf("after %d keys: %d tracked, more than MaxKeys %d", i+1, n, maxKeys)
			}
		}
	}
	if n := m.Len(); n != maxKeys {
		t.Fatalf("after %d keys: %d tracked, want MaxKeys %d", flood, n, maxKeys)
	}
}

func TestMemoryFindsEveryKeyItTracksThroughEvictions(t *testing.T) {
	for _, maxKeys := range []int{1, 63, 1000, 3000} {
		clock := ratelimittest.NewClock(ratelimittest.Epoch())
		m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: maxKeys, Now: clock.Now})
		ctx := context.Background()
		p := ratelimit.PerHour(10) // the clock stands still: no refill
		keys := make([]string, 8*maxKeys)
		for i := range keys {
			keys[i] = "key:" + strconv.Itoa(i)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for round := range 4 {
			// Take one unit from random keys, mostly new ones at first.
			for range 4 * maxKeys {
				m.Allow(ctx, keys[rng.IntN(len(keys))], p, 1)
			}
			// A tracked key has units missing; an evicted one is full.
			tracked := 0
			for _, k := range keys {
				if d, _ := m.Allow(ctx, k, p, 0); d.Remaining < 10 {
					tracked++
				}
			}
			if n := m.Len(); tracked != n || n > maxKeys {
				t.Fatalf("MaxKeys %d, round %d: %d keys found with units taken, Len %d", maxKeys, round, tracked, n)
			}
		}
	}
}

func TestMemoryKeepsItsCapUnderConcurrentEvictions(t *testing.T) {
	const maxKeys = 1000
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: maxKeys, Now: clock.Now})
	ctx := context.Background()
	p := ratelimit.PerHour(10) // the clock stands still: no refill
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				key := "g" + strconv.Itoa(g) + ":" + strconv.Itoa(i%3000)
				if _, err := m.Allow(ctx, key, p, 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	tracked := 0
	for g := range 8 {
		for i := range 3000 {
			if d, _ := m.Allow(ctx, "g"+strconv.Itoa(g)+":"+strconv.Itoa(i), p, 0); d.Remaining < 10 {
				tracked++
			}
		}
	}
	if n := m.Len(); tracked != n || n != maxKeys {
		t.Fatalf("%d keys found with units taken, Len %d, want both MaxKeys %d", tracked, n, maxKeys)
	}
}

func TestMemoryEvictionSparesKeysFarFromFull(t *testing.T) {
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: 10_000, Now: clock.Now})
	ctx := context.Background()
	// A drained bucket a unit of which takes six minutes to refill.
	slow := ratelimit.PerHour(10)
	if d, _ := m.Allow(ctx, "big-spender", slow, 10); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("draining the bucket: %+v", d)
	}
	// One-off keys whose buckets are full again a second later.
	for i := range 200_000 {
		if i%1000 == 0 {
			clock.Advance(100 * time.Millisecond)
		}
		m.Allow(ctx, "once:"+strconv.Itoa(i), ratelimit.PerSecond(1), 1)
	}
	if d, _ := m.Allow(ctx, "big-spender", slow, 0); d.Allowed {
		t.Fatal("the drained key was evicted (and so refilled) while one-off keys were kept")
	}
}

func TestMemoryBytesPerTrackedKey(t *testing.T) {
	const keys = 100_000
	clock := ratelimittest.NewClock(ratelimittest.Epoch())
	ctx := context.Background()
	p := ratelimit.PerMinute(60)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newMemory(t, &ratelimit.MemoryConfig{MaxKeys: keys, Now: clock.Now})
	for i := range keys {
		m.Allow(ctx, fmt.Sprintf("key_%016x:chat", i), p, 1) // 25-byte keys
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := m.Len(); n < keys*95/100 {
		t.Fatalf("%d keys tracked out of %d", n, keys)
	}
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / float64(m.Len())
	runtime.KeepAlive(m)
	t.Logf("%.0f bytes per tracked key (25-byte keys, %d keys)", perKey, m.Len())
	if perKey > 256 {
		t.Errorf("%.0f bytes per tracked key, want at most 256", perKey)
	}
}

// TestMemoryAgreesWithXTimeRate replays random requests against Memory and
// against golang.org/x/time/rate's Limiter, the reference token bucket:
// wherever the two models overlap (Allow of 1 to burst units) they must agree.
func TestMemoryAgreesWithXTimeRate(t *testing.T) {
	policies := []ratelimit.Policy{
		ratelimit.PerSecond(10),
		ratelimit.PerMinute(60).WithBurst(10),
		ratelimit.PerHour(7),
		{Limit: 7, Window: time.Second, Burst: 3},
		ratelimit.PerMinute(1000),
		{Limit: 1, Window: time.Second, Burst: 5},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range policies {
		clock := ratelimittest.NewClock(ratelimittest.Epoch())
		m := newMemory(t, &ratelimit.MemoryConfig{Now: clock.Now})
		burst := p.Burst
		if burst == 0 {
			burst = p.Limit
		}
		ref := rate.NewLimiter(p.Rate(), int(burst))
		interval := p.Window.Milliseconds() / p.Limit
		agree := 0
		for i := range 5000 {
			clock.Advance(time.Duration(rng.Int64N(2*interval+2)) * time.Millisecond)
			n := 1 + rng.Int64N(min(burst, 4))
			if rng.IntN(20) == 0 {
				n = burst
			}
			d, err := m.Allow(context.Background(), "k", p, n)
			if err != nil {
				t.Fatal(err)
			}
			if want := ref.AllowN(clock.Now(), int(n)); d.Allowed != want {
				t.Fatalf("%+v, request %d (n=%d at +%v): Memory allowed=%v, x/time/rate allowed=%v",
					p, i, n, clock.Now().Sub(ratelimittest.Epoch()), d.Allowed, want)
			}
			if d.Allowed {
				agree++
			}
		}
		t.Logf("%+v: agreed on 5000 requests, %d allowed", p, agree)
	}
}

// BenchmarkMemoryAllow decides on tracked keys in the order they were added,
// which keeps the entries of keys added together in the cache together.
func BenchmarkMemoryAllow(b *testing.B) { benchmarkMemoryAllow(b, 1) }

// BenchmarkMemoryAllowScattered decides on tracked keys in an order unrelated
// to the one they were added in, as requests from many clients arrive.
func BenchmarkMemoryAllowScattered(b *testing.B) { benchmarkMemoryAllow(b, 7919) }

func benchmarkMemoryAllow(b *testing.B, stride int) {
	for _, keys := range []int{1024, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			// Room for every key, so that the benchmark measures decisions
			// on tracked keys, not evictions.
			m := newMemory(b, &ratelimit.MemoryConfig{MaxKeys: 2 * keys})
			ctx := context.Background()
			p := ratelimit.PerSecond(1_000_000)
			names := make([]string, keys)
			for i := range names {
				names[i] = fmt.Sprintf("principal_%08d:/v1/chat", i)
				m.Allow(ctx, names[i], p, 1)
			}
			step := stride % keys // coprime with keys: every key is visited
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919)) % keys
				for pb.Next() {
					m.Allow(ctx, names[i], p, 1)
					if i += step; i >= keys {
						i -= keys
					}
				}
			})
		})
	}
}
