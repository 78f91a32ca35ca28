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
	_ "time/tzdata"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/budget/budgettest"
	"github.com/gatekit/gatekit/budget/redisstore"
	"github.com/gatekit/gatekit/internal/redistest"
)

// redisServer is this package's redis-server, started by the first test that
// needs it and stopped by TestMain.
var redisServer = redistest.New()

func TestMain(m *testing.M) {
	m.Run()
	redisServer.Close()
}

// epoch is the instant clock-driven tests start at.
var epoch = time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC)

func newLedger(tb testing.TB, client redis.UniversalClient, cfg *redisstore.Config) *redisstore.Ledger {
	tb.Helper()
	l, err := redisstore.New(client, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func TestLedgerConformance(t *testing.T) {
	client := redisServer.Client(t)
	budgettest.Run(t, func(t *testing.T, now func() time.Time, loc *time.Location) budget.Ledger {
		return newLedger(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: now, Location: loc, Timeout: redistest.SlowTimeout})
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	client := redistest.Unreachable(t)
	for name, cfg := range map[string]*redisstore.Config{
		"braces in prefix":     {Prefix: "b:{x}:"},
		"negative timeout":     {Timeout: -time.Second},
		"negative TTL":         {HoldTTL: -time.Second},
		"negative SettleGrace": {SettleGrace: -time.Second},
	} {
		if _, err := redisstore.New(client, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := redisstore.New(nil, nil); err == nil {
		t.Error("New accepted a nil client")
	}
}

// scopes returns a key's daily budget and its account's monthly one.
func scopes(acct, key string, keyLimit, acctLimit budget.Micros) []budget.Scope {
	return []budget.Scope{
		{Tag: acct, Kind: "key", ID: key, Limit: keyLimit, Period: budget.Daily},
		{Tag: acct, Kind: "account", ID: acct, Limit: acctLimit, Period: budget.Monthly},
	}
}

func TestLedgerNeverOverspendsAcrossInstances(t *testing.T) {
	redisServer.Ready(t)
	prefix := redisServer.KeyPrefix(t)
	ctx := context.Background()
	sc := scopes("acme", "k1", 30*budget.Dollar, 25*budget.Dollar)
	const instances, goroutines = 3, 1000

	// Three instances: a client and a Ledger each, on Redis's clock.
	var ledgers []*redisstore.Ledger
	for range instances {
		ledgers = append(ledgers, newLedger(t, redisServer.Client(t), &redisstore.Config{Prefix: prefix, Timeout: redistest.SlowTimeout}))
	}
	var spent, held, refused atomic.Int64
	var start, wg sync.WaitGroup
	start.Add(1)
	for g := range goroutines {
		l := ledgers[g%instances]
		wg.Go(func() {
			start.Wait()
			cost := budget.Micros(5+g%50) * budget.Cent // 5 to 54 cents: 29.5 USD in all
			r, err := l.Hold(ctx, sc, cost)
			if err != nil {
				t.Error(err)
				return
			}
			if !r.Allowed {
				refused.Add(1)
				return
			}
			held.Add(int64(cost))
			actual := cost - budget.Micros(g%3)*budget.Cent
			if _, err := l.Settle(ctx, r.ID, actual); err != nil {
				t.Error(err)
				return
			}
			spent.Add(int64(actual))
		})
	}
	start.Done()
	wg.Wait()

	for _, s := range sc {
		b, err := ledgers[0].Balance(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if b.Held != 0 || int64(b.Spent) != spent.Load() {
			t.Errorf("%v: %+v, want nothing held and %v spent", s, b, budget.Micros(spent.Load()))
		}
	}
	t.Logf("%d instances, %d goroutines: %d refused, %v held and %v settled against a cap of %v",
		instances, goroutines, refused.Load(), budget.Micros(held.Load()), budget.Micros(spent.Load()), sc[1].Limit)
	if got := budget.Micros(spent.Load()); got > sc[1].Limit {
		t.Errorf("settled %v, more than the cap %v", got, sc[1].Limit)
	}
	if refused.Load() == 0 {
		t.Error("no hold was refused: the test did not exceed the cap")
	}
	if n, _ := redisServer.Client(t).Exists(ctx, prefix+"{acme}:holds").Result(); n != 0 {
		t.Error("live holds remain after every hold was settled")
	}
}

// TestLedgerForgetsAbandonedHolds makes holds that are never settled: a TTL
// later nothing is held and the budgets they created are gone; a grace later
// the holds themselves are.
func TestLedgerForgetsAbandonedHolds(t *testing.T) {
	client := redisServer.Client(t)
	prefix := redisServer.KeyPrefix(t)
	clock := budgettest.NewClock(epoch)
	l := newLedger(t, client, &redisstore.Config{Prefix: prefix, Now: clock.Now, Timeout: redistest.SlowTimeout})
	ctx := context.Background()
	sc := scopes("acme", "k1", 100*budget.Dollar, 100*budget.Dollar)
	var ids []budget.HoldID
	for i := range 200 {
		r, err := l.Hold(ctx, sc, budget.Cent)
		if err != nil || !r.Allowed {
			t.Fatalf("hold %d: %+v, %v", i, r, err)
		}
		ids = append(ids, r.ID)
		clock.Advance(time.Millisecond)
	}
	clock.Advance(budget.DefaultHoldTTL)
	for _, s := range sc {
		if b, err := l.Balance(ctx, s); err != nil || b.Held != 0 || b.Spent != 0 {
			t.Fatalf("%v a TTL after 200 abandoned holds: %+v, %v; want nothing held", s, b, err)
		}
		if n, _ := client.Exists(ctx, l.Key(s, clock.Now())).Result(); n != 0 {
			t.Errorf("%v: its key remains with nothing spent or held", s)
		}
	}
	if n, _ := client.Exists(ctx, prefix+"{acme}:holds").Result(); n != 0 {
		t.Error("the set of live holds remains with none live")
	}
	// Within the grace, the expired holds can still be settled; after it
	// they are forgotten, and Redis deletes their records on its own.
	if r, err := l.Settle(ctx, ids[0], budget.Cent); err != nil || !r.Expired {
		t.Fatalf("Settle within the grace: %+v, %v", r, err)
	}
	clock.Advance(budget.DefaultSettleGrace)
	if _, err := l.Settle(ctx, ids[1], budget.Cent); !errors.Is(err, budget.ErrUnknownHold) {
		t.Fatalf("Settle after the grace: err = %v, want ErrUnknownHold", err)
	}
	ttl, err := client.PTTL(ctx, l.HoldKey(ids[2])).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := budget.DefaultHoldTTL + budget.DefaultSettleGrace + time.Minute; ttl <= 0 || ttl > want {
		t.Errorf("hold record TTL %v, want at most HoldTTL + SettleGrace + 1m = %v", ttl, want)
	}
}

// hashTag returns the part of key Redis Cluster hashes.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func TestLedgerKeysShareTheTagsSlotAndExpire(t *testing.T) {
	client := redisServer.Client(t)
	prefix := redisServer.KeyPrefix(t)
	l := newLedger(t, client, &redisstore.Config{Prefix: prefix, Timeout: redistest.SlowTimeout}) // real clocks
	ctx := context.Background()
	before := time.Now()
	defer func() {
		// Keys are looked up by the time after the holds were made.
		if !budget.Daily.Start(before, time.UTC).Equal(budget.Daily.Start(time.Now(), time.UTC)) {
			t.Skip("crossed midnight UTC while running: run again")
		}
	}()
	life := budget.Scope{Tag: "acme", Kind: "key", ID: "k1:{odd}", Limit: budget.Dollar, Period: budget.None}
	sc := append(scopes("acme", "k1:{odd}", budget.Dollar, budget.Dollar), life)
	r, err := l.Hold(ctx, sc, 50*budget.Cent)
	if err != nil || !r.Allowed {
		t.Fatalf("Hold: %+v, %v", r, err)
	}
	r2, err := l.Hold(ctx, sc, 10*budget.Cent)
	if err != nil || !r2.Allowed {
		t.Fatalf("Hold: %+v, %v", r2, err)
	}
	if _, err := l.Settle(ctx, r.ID, 20*budget.Cent); err != nil {
		t.Fatal(err)
	}
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 6 { // 3 budgets, 1 hold, the live holds, the seq
		t.Errorf("keys %q, want 6", keys)
	}
	now := time.Now()
	for _, k := range keys {
		if tag := hashTag(k); tag != "acme" {
			t.Errorf("key %q hashes %q, not the Tag", k, tag)
		}
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch k {
		case l.Key(life, now):
			if ttl != -1 {
				t.Errorf("lifetime budget with spending %q: TTL %v, want none", k, ttl)
			}
		case l.Key(sc[0], now), l.Key(sc[1], now):
			p := sc[0].Period
			if k == l.Key(sc[1], now) {
				p = sc[1].Period
			}
			end := p.End(now, time.UTC)
			least, most := time.Until(end), time.Until(end)+budget.DefaultHoldTTL+budget.DefaultSettleGrace+time.Minute
			if ttl < least-time.Second || ttl > most {
				t.Errorf("budget %q: TTL %v, want in [%v, %v]", k, ttl, least, most)
			}
		default:
			if ttl <= 0 || ttl > budget.DefaultHoldTTL+budget.DefaultSettleGrace+time.Minute {
				t.Errorf("%q: TTL %v, want at most HoldTTL + SettleGrace + 1m", k, ttl)
			}
		}
	}
	// The hold expires on the Redis server's clock.
	score, err := client.ZScore(ctx, prefix+"{acme}:holds", fmt.Sprint(r2.ID.Seq)).Result()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d := tm.Add(budget.DefaultHoldTTL).Sub(time.UnixMilli(int64(score))); d < 0 || d > 5*time.Second {
		t.Errorf("hold expires at %v, want the Redis clock's %v + HoldTTL", time.UnixMilli(int64(score)), tm)
	}
}

func TestLedgerKeys(t *testing.T) {
	client := redistest.Unreachable(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	l := newLedger(t, client, &redisstore.Config{Location: ny})
	at := time.Date(2030, time.March, 11, 2, 30, 0, 0, time.UTC) // 22:30 EDT on the 10th
	for _, c := range []struct {
		s    budget.Scope
		want string
	}{
		{budget.Scope{Tag: "acme", Kind: "key", ID: "k_1", Period: budget.Daily}, "gatekit:budget:{acme}:key:k_1:daily:1899349200"},
		{budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Period: budget.Monthly}, "gatekit:budget:{acme}:account:acme:monthly:1898571600"},
		{budget.Scope{Tag: "acme", Kind: "key", ID: "a:b", Period: budget.None}, "gatekit:budget:{acme}:key:a:b:none:0"},
	} {
		if got := l.Key(c.s, at); got != c.want {
			t.Errorf("Key(%v) = %q, want %q", c.s, got, c.want)
		}
	}
	if got, want := l.HoldKey(budget.HoldID{Tag: "acme", Seq: 42}), "gatekit:budget:{acme}:hold:42"; got != want {
		t.Errorf("HoldKey = %q, want %q", got, want)
	}
}

// TestLedgerMatchesMemory replays random sequences of calls, with the clock
// jumping across periods and TTLs, against the Redis ledger and the memory
// ledger: every answer must be the same.
func TestLedgerMatchesMemory(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clock := budgettest.NewClock(time.Date(2030, time.March, 8, 12, 0, 0, 0, ny))
	mem, err := budget.NewMemory(&budget.MemoryConfig{Now: clock.Now, Location: ny})
	if err != nil {
		t.Fatal(err)
	}
	rl := newLedger(t, redisServer.Client(t), &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: clock.Now, Location: ny, Timeout: redistest.SlowTimeout})
	var pool [][]budget.Scope
	for _, acct := range []string{"acme", "beta"} {
		a := budget.Scope{Tag: acct, Kind: "account", ID: acct, Limit: 20 * budget.Dollar, Period: budget.Monthly}
		k1 := budget.Scope{Tag: acct, Kind: "key", ID: "k1", Limit: 8 * budget.Dollar, Period: budget.Daily}
		k2 := budget.Scope{Tag: acct, Kind: "key", ID: "k2", Limit: 12 * budget.Dollar, Period: budget.Weekly}
		life := budget.Scope{Tag: acct, Kind: "key", ID: "k3", Limit: 30 * budget.Dollar, Period: budget.None}
		pool = append(pool, []budget.Scope{k1, a}, []budget.Scope{a, k2}, []budget.Scope{k1}, []budget.Scope{life, a}, []budget.Scope{k1, k2, a})
	}
	type pair struct{ m, r budget.HoldID }
	var holds []pair
	rng := rand.New(rand.NewPCG(9, 10))
	ctx := context.Background()
	amount := func() budget.Micros {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return budget.Micros(rng.Int64N(int64(10 * budget.Dollar)))
		default:
			return budget.Micros(rng.Int64N(300)) * budget.Cent / 100
		}
	}
	seen := map[string]int{}
	defer func() { t.Logf("outcomes: %v", seen) }()
	for i := range 3000 {
		switch rng.IntN(40) {
		case 0:
			clock.Advance(time.Duration(rng.Int64N(int64(50 * time.Hour))))
		case 1, 2, 3, 4, 5:
			clock.Advance(time.Duration(rng.Int64N(int64(15*time.Minute))) / time.Millisecond * time.Millisecond)
		case 6, 7, 8, 9, 10, 11, 12, 13:
			clock.Advance(time.Duration(rng.Int64N(int64(10*time.Second))) / time.Millisecond * time.Millisecond)
		}
		desc := fmt.Sprintf("step %d at %v", i, clock.Now().In(ny))
		same := func(what string, a, b any, errA, errB error) {
			t.Helper()
			if !errors.Is(errA, errB) || !errors.Is(errB, errA) {
				t.Fatalf("%s: %s: memory err %v, redis err %v", desc, what, errA, errB)
			}
			if sa, sb := fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b); sa != sb {
				t.Fatalf("%s: %s:\nmemory %s\nredis  %s", desc, what, sa, sb)
			}
		}
		pick := func() (int, pair) {
			if len(holds) == 0 {
				return -1, pair{}
			}
			// Mostly recent holds, which are still live.
			j := rng.IntN(len(holds))
			if rng.IntN(4) != 0 {
				j = len(holds) - 1 - rng.IntN(min(len(holds), 8))
			}
			return j, holds[j]
		}
		switch op := rng.IntN(8); {
		case op < 4:
			sc, amt := pool[rng.IntN(len(pool))], amount()
			a, errA := mem.Hold(ctx, sc, amt)
			b, errB := rl.Hold(ctx, sc, amt)
			idA, idB := a.ID, b.ID
			a.ID, b.ID = budget.HoldID{}, budget.HoldID{}
			same(fmt.Sprintf("Hold(%v, %v)", sc, amt), a, b, errA, errB)
			seen[fmt.Sprintf("Hold allowed=%v", a.Allowed)]++
			if a.Allowed {
				holds = append(holds, pair{idA, idB})
			}
		case op < 6:
			j, h := pick()
			actual := amount()
			a, errA := mem.Settle(ctx, h.m, actual)
			b, errB := rl.Settle(ctx, h.r, actual)
			same(fmt.Sprintf("Settle(%v)", actual), a, b, errA, errB)
			seen[fmt.Sprintf("Settle expired=%v err=%v", a.Expired, errA != nil)]++
			if j >= 0 && rng.IntN(4) != 0 {
				holds = append(holds[:j], holds[j+1:]...)
			}
		case op < 7:
			j, h := pick()
			errA, errB := mem.Release(ctx, h.m), rl.Release(ctx, h.r)
			same("Release", nil, nil, errA, errB)
			seen[fmt.Sprintf("Release err=%v", errA != nil)]++
			if j >= 0 && rng.IntN(4) != 0 {
				holds = append(holds[:j], holds[j+1:]...)
			}
		default:
			for _, s := range pool[rng.IntN(len(pool))] {
				a, errA := mem.Balance(ctx, s)
				b, errB := rl.Balance(ctx, s)
				same(fmt.Sprintf("Balance(%v)", s), a, b, errA, errB)
			}
		}
	}
}

func TestLedgerFailsFastWhileRedisIsDownAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	l := newLedger(t, srv.ClientWithDefaults(t, true), &redisstore.Config{Timeout: redistest.OutageTimeout})
	ctx := context.Background()
	sc := scopes("acme", "k1", budget.Dollar, budget.Dollar)
	r, err := l.Hold(ctx, sc, budget.Cent)
	if err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Hold":    func() error { _, err := l.Hold(ctx, sc, budget.Cent); return err },
		"Settle":  func() error { _, err := l.Settle(ctx, r.ID, budget.Cent); return err },
		"Release": func() error { return l.Release(ctx, r.ID) },
		"Balance": func() error { _, err := l.Balance(ctx, sc[0]); return err },
	}
	for name, call := range calls {
		redistest.FailsFastWhileStopped(t, name, redistest.OutageTimeout, call)
	}

	// The restarted server has no data and an empty script cache: EVALSHA
	// fails with NOSCRIPT and the script is sent again.
	srv.RestartAndRetry(t, func() (err error) {
		r, err = l.Hold(ctx, sc, budget.Cent)
		return err
	})
	if !r.Allowed || r.Balance.Held != budget.Cent {
		t.Fatalf("first hold after restart: %+v, want one cent held", r)
	}
}

func TestLedgerFailsFastWhileRedisHangs(t *testing.T) {
	srv := redistest.Start(t)
	sc := scopes("acme", "k1", budget.Dollar, budget.Dollar)
	for _, ctxTimeouts := range []bool{true, false} {
		l := newLedger(t, srv.ClientWithDefaults(t, ctxTimeouts), &redisstore.Config{Timeout: redistest.OutageTimeout})
		ctx := context.Background()
		r, err := l.Hold(ctx, sc, budget.Cent)
		if err != nil {
			t.Fatal(err)
		}
		srv.WhilePaused(t, func() {
			redistest.TimesOutWhileHung(t, fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), redistest.OutageTimeout, func() error {
				_, err := l.Settle(ctx, r.ID, budget.Cent)
				return err
			})
		})
	}
}

func TestLedgerHonoursTheCallersDeadline(t *testing.T) {
	l := newLedger(t, redisServer.Client(t), &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Hold(ctx, scopes("acme", "k1", budget.Dollar, budget.Dollar), 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hold with a cancelled context: err = %v, want context.Canceled", err)
	}
}

func TestLedgerCallsAreOneRoundTripEach(t *testing.T) {
	client := redisServer.ClientWithDefaults(t, true)
	hook := &redistest.CommandCounter{}
	client.AddHook(hook)
	l := newLedger(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	ctx := context.Background()
	sc := scopes("acme", "k1", 1000*budget.Dollar, 1000*budget.Dollar)
	// Load every script: EVALSHA, NOSCRIPT, EVAL.
	r, _ := l.Hold(ctx, sc, 1)
	l.Settle(ctx, r.ID, 1)
	r, _ = l.Hold(ctx, sc, 1)
	l.Release(ctx, r.ID)
	l.Balance(ctx, sc[0])

	before := hook.Count()
	for range 50 {
		r, err := l.Hold(ctx, sc, budget.Cent)
		if err != nil || !r.Allowed {
			t.Fatalf("Hold: %+v, %v", r, err)
		}
		if _, err := l.Settle(ctx, r.ID, budget.Cent); err != nil {
			t.Fatal(err)
		}
	}
	if n := hook.Count() - before; n != 100 {
		t.Fatalf("50 holds and settlements sent %d commands, want 100", n)
	}
}

func BenchmarkRedisHoldSettle(b *testing.B) {
	client := redisServer.ClientWithDefaults(b, true)
	hook := &redistest.CommandCounter{}
	client.AddHook(hook)
	l := newLedger(b, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(b), Timeout: redistest.SlowTimeout})
	ctx := context.Background()
	accounts := make([][]budget.Scope, 1024)
	for i := range accounts {
		acct := fmt.Sprintf("acct_%04d", i)
		accounts[i] = scopes(acct, "key_"+acct, budget.MaxMicros, budget.MaxMicros)
	}
	var next atomic.Int64
	// Enough requests in flight to measure Redis, not the round trip.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	before := hook.Count()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(101))
		for pb.Next() {
			sc := accounts[i%len(accounts)]
			r, err := l.Hold(ctx, sc, budget.Cent)
			if err != nil || !r.Allowed {
				b.Errorf("Hold: %+v, %v", r, err)
				return
			}
			if _, err := l.Settle(ctx, r.ID, budget.Micro); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	// One op is one request's Hold and Settle.
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(hook.Count()-before)/float64(b.N), "roundtrips/op")
}
