package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/admissiontest"
	"github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/ratelimit"
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

var ctx = context.Background()

// batching names the two ways a Store sends its calls, for tests that run
// in both.
var batching = []struct {
	name      string
	unbatched bool
}{{"batched", false}, {"unbatched", true}}

// epoch is the instant clock-driven tests start at: a Tuesday, 10:00 UTC.
var epoch = time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC)

func newStore(tb testing.TB, client redis.UniversalClient, cfg *redisstore.Config) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.New(client, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fixed returns a clock that always reads t.
func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestConformance(t *testing.T) {
	for _, b := range batching {
		t.Run(b.name, func(t *testing.T) {
			client := redisServer.Client(t)
			admissiontest.Run(t, func(t *testing.T, cfg admissiontest.Config) admission.Store {
				return newStore(t, client, &redisstore.Config{
					Prefix: redisServer.KeyPrefix(t), Timeout: redistest.SlowTimeout, Unbatched: b.unbatched,
					TTL: cfg.TTL, SettleGrace: cfg.SettleGrace, Location: cfg.Location, Now: cfg.Now,
				})
			})
		})
	}
}

// TestConformanceOnCluster runs the suite on a Redis Cluster of three
// masters and their replicas through redis.NewClusterClient, batched and
// not: each script runs on the master serving its Tag's slot, and the
// cluster refuses any script whose KEYS are not all in that slot. (That the one key
// Reserve does not declare shares the slot too is checked by
// TestKeysShareTheTagAndExpire.)
func TestConformanceOnCluster(t *testing.T) {
	for _, b := range batching {
		t.Run(b.name, func(t *testing.T) {
			client := redisCluster.Client(t)
			admissiontest.Run(t, func(t *testing.T, cfg admissiontest.Config) admission.Store {
				return newStore(t, client, &redisstore.Config{
					Prefix: redisCluster.KeyPrefix(t), Timeout: redistest.SlowTimeout, Unbatched: b.unbatched,
					TTL: cfg.TTL, SettleGrace: cfg.SettleGrace, Location: cfg.Location, Now: cfg.Now,
				})
			})
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	client := redistest.Unreachable(t)
	for name, cfg := range map[string]*redisstore.Config{
		"braces in prefix":         {Prefix: "adm:{x}:"},
		"negative timeout":         {Timeout: -time.Second},
		"negative TTL":             {TTL: -time.Second},
		"negative SettleGrace":     {SettleGrace: -time.Second},
		"negative replicas":        {SettleReplicas: -1},
		"negative SettleWait":      {SettleReplicas: 1, SettleWait: -time.Second},
		"wait past Timeout":        {SettleReplicas: 1, SettleWait: 100 * time.Millisecond, Timeout: 100 * time.Millisecond},
		"settle window past a day": {TTL: 12 * time.Hour, SettleGrace: 10*time.Hour + time.Minute},
	} {
		if _, err := redisstore.New(client, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := redisstore.New(nil, nil); err == nil {
		t.Error("New accepted a nil client")
	}
	if _, err := redisstore.New(client, nil); err != nil {
		t.Errorf("New with a nil Config: %v", err)
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	if _, err := redisstore.New(ring, &redisstore.Config{SettleReplicas: 1}); err == nil {
		t.Error("New accepted SettleReplicas on a Ring, which cannot send WAIT to a key's master")
	}
}

// TestSettleWithoutAReplicaIsRecordedAndReported: with SettleReplicas 1 on
// a server that has no replica, Settle records the spend, waits
// SettleWait, and reports ErrNotReplicated; a retry is refused as unknown.
func TestSettleWithoutAReplicaIsRecordedAndReported(t *testing.T) {
	const wait = 20 * time.Millisecond
	store := newStore(t, redisServer.Client(t), &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Timeout: redistest.SlowTimeout,
		SettleReplicas: 1, SettleWait: wait})
	r := fullRequest("acct")
	res, err := store.Reserve(ctx, r)
	if err != nil || !res.Allowed {
		t.Fatalf("Reserve: %+v, %v", res, err)
	}
	start := time.Now()
	_, err = store.Settle(ctx, r, res.ID, admission.Usage{Cost: 700})
	took := time.Since(start)
	if !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Fatalf("Settle: %v, want ErrNotReplicated", err)
	}
	if took < wait || took > wait+redistest.Slack {
		t.Errorf("Settle took %v, SettleWait %v", took, wait)
	}
	if b, err := store.Balance(ctx, r.Budgets[0]); err != nil || b.Spent != 700 || b.Held != 0 {
		t.Fatalf("Balance: %+v, %v; want 700 spent, nothing held", b, err)
	}
	if _, err := store.Settle(ctx, r, res.ID, admission.Usage{Cost: 700}); !errors.Is(err, admission.ErrUnknownReservation) {
		t.Fatalf("second Settle: %v, want ErrUnknownReservation", err)
	}
}

// fullRequest is a request with a claim of every kind, as middleware makes
// them: requests and tokens per minute, a concurrency limit, and a key's
// daily and its account's monthly budget.
func fullRequest(tag string) *admission.Request {
	return &admission.Request{
		Tag: tag,
		Rates: []admission.Rate{
			{Key: "key1:rpm", Policy: ratelimit.PerMinute(1_000_000), N: 1},
			{Key: "key1:tpm", Policy: ratelimit.PerMinute(1_000_000_000), N: 4000, Refund: true},
		},
		Slots: []admission.Slot{{Key: "key1:parallel", Limit: 1_000_000}},
		Budgets: []budget.Scope{
			{Tag: tag, Kind: "key", ID: "key1", Limit: budget.MaxMicros, Period: budget.Daily},
			{Tag: tag, Kind: "account", ID: tag, Limit: budget.MaxMicros, Period: budget.Monthly},
		},
		Cost: 20_000,
	}
}

// TestExactAcrossInstances: three instances (a client and a Store each) of
// 32 goroutines reserve a request whose claims together ask three times a
// budget, a token limit and a concurrency limit of 8, and settle each
// reporting ten times what it reserved. No cap is passed by one unit: the
// budget is spent and the tokens taken exactly to their limits, the spend
// is exactly what was settled, and no more than 8 requests ever run at once.
// It runs on one redis-server and on the Redis Cluster, each instance with
// a client of its own, calls batched through its autopipeliner.
func TestExactAcrossInstances(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		testExactAcrossInstances(t, redisServer.KeyPrefix(t), func() redis.UniversalClient { return redisServer.Client(t) })
	})
	t.Run("cluster", func(t *testing.T) {
		testExactAcrossInstances(t, redisCluster.KeyPrefix(t), func() redis.UniversalClient { return redisCluster.Client(t) })
	})
}

func testExactAcrossInstances(t *testing.T, prefix string, newClient func() redis.UniversalClient) {
	const (
		instances, goroutines, each = 3, 32, 10
		parallel                    = 8
		perRequest, cost            = 30, 300
		// 960 requests ask for 3 x tokens and 3 x limit.
		tokens = instances * goroutines * each * perRequest / 3
		limit  = instances * goroutines * each * cost / 3
	)
	// A clock that stands still: no bucket refills and no reservation
	// expires while the test runs, so every figure is exact.
	clock := fixed(epoch)
	sc := budget.Scope{Tag: "acct", Kind: "account", ID: "acct", Limit: limit, Period: budget.Monthly}
	tpm := ratelimit.PerMinute(tokens)
	r := &admission.Request{Tag: "acct",
		Rates:   []admission.Rate{{Key: "tpm", Policy: tpm, N: perRequest, Refund: true}},
		Slots:   []admission.Slot{{Key: "par", Limit: parallel}},
		Budgets: []budget.Scope{sc}, Cost: cost}

	var stores []*redisstore.Store
	for range instances {
		client := newClient()
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() { client.Ping(ctx) })
		}
		wg.Wait()
		stores = append(stores, newStore(t, client, &redisstore.Config{Prefix: prefix, Now: clock, Timeout: redistest.SlowTimeout}))
	}

	var inFlight, most, admitted, settled, sawTooMany, refusedBySlot atomic.Int64
	var wg sync.WaitGroup
	for _, s := range stores {
		for range goroutines {
			wg.Go(func() {
				// Each request is tried until it is admitted or refused
				// by a limit other than the slots, as a client retries a
				// 429 concurrency_exceeded.
				for i := 0; i < each; {
					res, err := s.Reserve(ctx, r)
					if err != nil {
						t.Error(err)
						return
					}
					if !res.Allowed {
						if res.Refused == admission.KindSlot {
							refusedBySlot.Add(1)
						} else {
							i++
						}
						continue
					}
					i++
					n := inFlight.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					if res.InUse[0] > parallel {
						sawTooMany.Add(1)
					}
					admitted.Add(1)
					time.Sleep(100 * time.Microsecond) // hold the slot a little
					inFlight.Add(-1)
					u := admission.Usage{Used: [admission.MaxRates]int64{10 * perRequest}, Cost: 10 * cost}
					if _, err := s.Settle(ctx, r, res.ID, u); err != nil {
						t.Error(err)
						return
					}
					settled.Add(cost)
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	b, err := stores[0].Balance(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	probe := &admission.Request{Tag: "acct", Rates: []admission.Rate{{Key: "tpm", Policy: tpm, N: 0}},
		Slots: []admission.Slot{{Key: "par", Limit: parallel}}}
	left, err := stores[1].Reserve(ctx, probe)
	if err != nil {
		t.Fatal(err)
	}
	taken := admitted.Load() * perRequest
	t.Logf("%d instances x %d goroutines x %d requests: %d admitted, %d refusals by the slot limit, at most %d in flight; spent %v of %v; %d tokens taken of %d",
		instances, goroutines, each, admitted.Load(), refusedBySlot.Load(), most.Load(), b.Spent, sc.Limit, taken, tokens)
	if b.Spent != limit || b.Spent != budget.Micros(settled.Load()) || b.Held != 0 {
		t.Errorf("balance %+v: want spent = the %d settled = the limit %d, nothing held", b, settled.Load(), limit)
	}
	if taken != tokens || left.Rates[0].Remaining != 0 {
		t.Errorf("%d tokens taken and %d left, want all %d taken, and no more", taken, left.Rates[0].Remaining, tokens)
	}
	if most.Load() > parallel || sawTooMany.Load() > 0 {
		t.Errorf("%d in flight at once, %d reservations saw more than %d slots in use", most.Load(), sawTooMany.Load(), parallel)
	}
	if left.InUse[0] != 0 {
		t.Errorf("after every settle: %d slots in use, want none", left.InUse[0])
	}
	if refusedBySlot.Load() == 0 {
		t.Errorf("no refusal by the slot limit: the test did not reach it")
	}
}

// commandStats returns the calls and microseconds Redis has counted for
// each command, from INFO commandstats.
func commandStats(tb testing.TB, client redis.UniversalClient) map[string][2]int64 {
	tb.Helper()
	info, err := client.Info(ctx, "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	stats := map[string][2]int64{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var calls, usec int64
		for field := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		stats[name] = [2]int64{calls, usec}
	}
	return stats
}

// TestOneScriptPerCall: a Reserve is one FCALL of the store's function
// library, and so is a Settle, whatever the request holds.
func TestOneScriptPerCall(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	for _, b := range batching {
		client := srv.ClientWithDefaults(t, true)
		hook := &redistest.CommandCounter{}
		client.AddHook(hook)
		store := newStore(t, client, &redisstore.Config{Unbatched: b.unbatched, Timeout: redistest.SlowTimeout})
		r := fullRequest("acct_" + b.name)
		// The first call loads the library: FCALL, not found, FUNCTION
		// LOAD, FCALL.
		res, err := store.Reserve(ctx, r)
		if err != nil || !res.Allowed {
			t.Fatalf("%s: first Reserve: %+v, %v", b.name, res, err)
		}
		if _, err := store.Settle(ctx, r, res.ID, admission.Usage{Cost: 1}); err != nil {
			t.Fatalf("%s: first Settle: %v", b.name, err)
		}
		for i := range 10 {
			before, stats := hook.Count(), commandStats(t, admin)
			res, err := store.Reserve(ctx, r)
			if err != nil || !res.Allowed {
				t.Fatalf("%s: Reserve %d: %+v, %v", b.name, i, res, err)
			}
			afterReserve, reserveStats := hook.Count(), commandStats(t, admin)
			if _, err := store.Settle(ctx, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{1, 100}, Cost: 5000}); err != nil {
				t.Fatalf("%s: Settle %d: %v", b.name, i, err)
			}
			after, settleStats := hook.Count(), commandStats(t, admin)
			if n, m := afterReserve-before, after-afterReserve; n != 1 || m != 1 {
				t.Fatalf("%s: Reserve sent %d commands and Settle %d, want 1 each", b.name, n, m)
			}
			for call, st := range map[string][2]map[string][2]int64{"Reserve": {stats, reserveStats}, "Settle": {reserveStats, settleStats}} {
				fcall := st[1]["fcall"][0] - st[0]["fcall"][0]
				evals := st[1]["evalsha"][0] - st[0]["evalsha"][0] + st[1]["eval"][0] - st[0]["eval"][0]
				if fcall != 1 || evals != 0 {
					t.Fatalf("%s: %s ran %d FCALL and %d scripts, want one FCALL", b.name, call, fcall, evals)
				}
			}
		}
	}
}

// TestRedisTimePerReserveAndSettle measures, on a server of its own, the
// time Redis spends running the scripts of a Reserve and its Settle for a
// request of two rates, a slot and two budgets, beside a script of one GET
// for scale, and logs both: run with -v.
func TestRedisTimePerReserveAndSettle(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.ClientWithDefaults(t, true)
	store := newStore(t, client, &redisstore.Config{Timeout: redistest.SlowTimeout})
	const tags, rounds = 100, 20
	reqs := make([]*admission.Request, tags)
	for i := range reqs {
		reqs[i] = fullRequest(fmt.Sprintf("acct_%03d", i))
	}
	round := func() {
		for _, r := range reqs {
			res, err := store.Reserve(ctx, r)
			if err != nil || !res.Allowed {
				t.Fatalf("Reserve: %+v, %v", res, err)
			}
			if _, err := store.Settle(ctx, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{1, 1000}, Cost: 7000}); err != nil {
				t.Fatal(err)
			}
		}
	}
	round() // loads the scripts and creates the keys
	if err := client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for range rounds {
		round()
	}
	st := commandStats(t, client)["fcall"]
	pairs := int64(tags * rounds)
	if st[0] != 2*pairs {
		t.Fatalf("%d FCALL for %d reserves and settles, want %d", st[0], pairs, 2*pairs)
	}

	get := redis.NewScript("return redis.call('GET', KEYS[1])")
	for i := range 2 * pairs {
		if i == 1 {
			if err := client.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := get.Run(ctx, client, []string{"k"}).Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	one := commandStats(t, client)["evalsha"]
	t.Logf("Redis time per Reserve + Settle (2 rates, 1 slot, 2 budgets): %.1f µs, %.1f µs per call; a script of one GET: %.1f µs",
		float64(st[1])/float64(pairs), float64(st[1])/float64(st[0]), float64(one[1])/float64(one[0]))
}

func TestStoreDownFailsWithinTimeout(t *testing.T) {
	for _, b := range batching {
		t.Run(b.name, func(t *testing.T) {
			srv := redistest.Start(t)
			store := newStore(t, srv.ClientWithDefaults(t, true), &redisstore.Config{Timeout: redistest.OutageTimeout, Unbatched: b.unbatched})
			r := fullRequest("acct")
			res, err := store.Reserve(ctx, r)
			if err != nil || !res.Allowed {
				t.Fatalf("Reserve: %+v, %v", res, err)
			}
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				redistest.FailsFastWhileStopped(t, fmt.Sprint("Reserve ", i), redistest.OutageTimeout, func() error {
					_, err := store.Reserve(ctx, r)
					return err
				})
				err := redistest.FailsFastWhileStopped(t, fmt.Sprint("Settle ", i), redistest.OutageTimeout, func() error {
					_, err := store.Settle(ctx, r, res.ID, admission.Usage{})
					return err
				})
				if errors.Is(err, admission.ErrUnknownReservation) {
					t.Fatalf("Settle with Redis stopped: %v, a backend failure reported as an unknown reservation", err)
				}
				redistest.FailsFastWhileStopped(t, fmt.Sprint("Balance ", i), redistest.OutageTimeout, func() error {
					_, err := store.Balance(ctx, r.Budgets[0])
					return err
				})
			}
			// A restarted server has no data and no scripts: the store
			// loads them again and starts afresh.
			var again admission.Result
			srv.RestartAndRetry(t, func() (err error) {
				again, err = store.Reserve(ctx, r)
				return err
			})
			if !again.Allowed || again.Balance.Held != r.Cost {
				t.Fatalf("first Reserve after the restart: %+v", again)
			}
		})
	}
}

// TestStoreHungTimesOut: while Redis hangs, every call gives up at the
// Timeout, whether or not the client aborts I/O at a deadline itself, and
// the next call after Redis answers again is answered at once.
func TestStoreHungTimesOut(t *testing.T) {
	srv := redistest.Start(t)
	for _, b := range batching {
		for _, ctxTimeouts := range []bool{true, false} {
			what := fmt.Sprintf("%s, ContextTimeoutEnabled=%v", b.name, ctxTimeouts)
			store := newStore(t, srv.ClientWithDefaults(t, ctxTimeouts), &redisstore.Config{Timeout: redistest.OutageTimeout, Unbatched: b.unbatched})
			r := fullRequest("acct")
			if _, err := store.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
			srv.WhilePaused(t, func() {
				redistest.TimesOutWhileHung(t, what, redistest.OutageTimeout, func() error {
					_, err := store.Reserve(ctx, r)
					return err
				})
			})
			start := time.Now()
			if _, err := store.Reserve(ctx, r); err != nil {
				t.Errorf("%s: first Reserve after Redis came back: %v", what, err)
			} else if took := time.Since(start); took > redistest.Slack {
				t.Errorf("%s: first Reserve after Redis came back took %v", what, took)
			}
		}
	}
}

// TestAFullDuplexClientTimesOutAndRecovers: with the client's
// autopipeliner in full duplex (as the demo sets it), a Reserve still
// ends within the Timeout while Redis hangs, answers at once when it is
// back, and loads the function library again after a restart.
func TestAFullDuplexClientTimesOutAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1,
		AutoPipelineOptions: &redis.AutoPipelineOptions{FullDuplex: true}})
	t.Cleanup(func() { client.Close() })
	store := newStore(t, client, &redisstore.Config{Timeout: redistest.OutageTimeout})
	r := fullRequest("acct")
	if _, err := store.Reserve(ctx, r); err != nil {
		t.Fatal(err)
	}
	srv.WhilePaused(t, func() {
		redistest.TimesOutWhileHung(t, "full duplex", redistest.OutageTimeout, func() error {
			_, err := store.Reserve(ctx, r)
			return err
		})
	})
	start := time.Now()
	if _, err := store.Reserve(ctx, r); err != nil {
		t.Fatalf("first Reserve after Redis came back: %v", err)
	} else if took := time.Since(start); took > redistest.Slack {
		t.Errorf("first Reserve after Redis came back took %v", took)
	}
	var again admission.Result
	srv.RestartAndRetry(t, func() (err error) {
		again, err = store.Reserve(ctx, r)
		return err
	})
	if !again.Allowed {
		t.Fatalf("first Reserve after the restart: %+v", again)
	}
}

func TestStoreHonoursTheCallersDeadline(t *testing.T) {
	client := redisServer.Client(t)
	store := newStore(t, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(t)})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := store.Reserve(cctx, fullRequest("a")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reserve with a cancelled context: err = %v, want context.Canceled", err)
	}
}

// TestKeysShareTheTagAndExpire: a Tag's state is two keys, hash-tagged
// with the Tag, that outlive everything they hold by at most a TTL: the
// end of the longest budget period and its grace, the refill of a bucket,
// the settle grace of a reservation; and a lifetime budget with money
// spent keeps them for good.
func TestKeysShareTheTagAndExpire(t *testing.T) {
	client := redisServer.Client(t)
	prefix := redisServer.KeyPrefix(t)
	const ttl, grace, margin = 10 * time.Minute, time.Hour, time.Minute
	store := newStore(t, client, &redisstore.Config{Prefix: prefix, Now: fixed(epoch), TTL: ttl, SettleGrace: grace, Timeout: redistest.SlowTimeout})
	lifetime := fullRequest("life")
	lifetime.Budgets = append(lifetime.Budgets, budget.Scope{Tag: "life", Kind: "account", ID: "life", Limit: budget.MaxMicros, Period: budget.None})
	rates := fullRequest("rates")
	rates.Slots, rates.Budgets, rates.Rates[1].Refund = nil, nil, false
	open := fullRequest("open")
	open.Budgets = nil
	for _, r := range []*admission.Request{fullRequest("acme"), lifetime, rates, open} {
		res, err := store.Reserve(ctx, r)
		if err != nil || !res.Allowed {
			t.Fatalf("%s: Reserve: %+v, %v", r.Tag, res, err)
		}
		if r.Tag == "open" {
			continue // left unsettled
		}
		if _, err := store.Settle(ctx, r, res.ID, admission.Usage{Cost: 100}); err != nil && r.Tag != "rates" {
			t.Fatal(err)
		}
	}
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// Each key's TTL (the test allows itself 5s below each): a TTL beyond
	// what it must outlive.
	want := map[string]time.Duration{
		// To the end of the month (the longest period), its grace and the
		// margin.
		"{acme}:state": (16*24+14)*time.Hour + grace + margin + ttl,
		"{acme}:due":   (16*24+14)*time.Hour + grace + margin + ttl,
		"{life}:state": -1, // spent: kept for good
		"{life}:due":   -1,
		// The refill of what was taken (a millisecond), and a second.
		"{rates}:state": time.Second + time.Millisecond + ttl,
		"{rates}:due":   time.Second + time.Millisecond + ttl,
		// The reservation's TTL, its grace and the margin.
		"{open}:state": ttl + grace + margin + ttl,
		"{open}:due":   ttl + grace + margin + ttl,
	}
	seen := map[string]bool{}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || strings.Count(rest, "{") != 1 || !strings.HasPrefix(rest, "{") {
			t.Errorf("key %q is not tagged right after the prefix", k)
			continue
		}
		d, ok := want[rest]
		if !ok {
			t.Errorf("unexpected key %q", k)
			continue
		}
		seen[rest] = true
		got, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case d < 0 && got != -1:
			t.Errorf("%s: PTTL %v, want none", rest, got)
		case d >= 0 && (got > d || got < d-5*time.Second):
			t.Errorf("%s: PTTL %v, want %v", rest, got, d)
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("no key %s", k)
		}
	}
}

// TestABacklogOfExpiredReservationsIsSweptOverTheNextCalls: 600
// reservations left unsettled (an instance that stopped with them open)
// expire together. The calls that follow give back their slots and holds,
// 256 a call, never counting fewer than are live; their records go at the
// end of the settle grace, leaving a state of a few fields.
func TestABacklogOfExpiredReservationsIsSweptOverTheNextCalls(t *testing.T) {
	client := redisServer.Client(t)
	prefix := redisServer.KeyPrefix(t)
	var now atomic.Int64
	now.Store(epoch.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	const ttl, grace = time.Minute, time.Hour
	store := newStore(t, client, &redisstore.Config{Prefix: prefix, Now: clock, TTL: ttl, SettleGrace: grace, Timeout: redistest.SlowTimeout})
	sc := budget.Scope{Tag: "a", Kind: "key", ID: "k", Limit: 1_000_000, Period: budget.Monthly}
	r := &admission.Request{Tag: "a", Slots: []admission.Slot{{Key: "par", Limit: 1000}}, Budgets: []budget.Scope{sc}, Cost: 100}
	const open = 600
	for i := range open {
		if res, err := store.Reserve(ctx, r); err != nil || !res.Allowed || res.InUse[0] != int64(i+1) {
			t.Fatalf("Reserve %d: %+v, %v", i, res, err)
		}
	}
	now.Add(int64(ttl))
	// Each call sweeps 256 before it decides; what it has not swept yet
	// still counts.
	for i, want := range []int64{open - 256 + 1, open - 512 + 2, 3, 4} {
		res, err := store.Reserve(ctx, r)
		if err != nil || !res.Allowed || res.InUse[0] != want {
			t.Fatalf("Reserve %d after the expiry: %+v, %v; want %d in use", i, res, err, want)
		}
	}
	if b, err := store.Balance(ctx, sc); err != nil || b.Held != 4*100 || b.Spent != 0 {
		t.Fatalf("Balance: %+v, %v; want the 4 live reservations held", b, err)
	}
	now.Add(int64(ttl + grace))
	for range 4 {
		if _, err := store.Balance(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	fields, err := client.HKeys(ctx, prefix+"{a}:state").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) > 5 {
		t.Fatalf("fields left in the state after the grace: %q, want the budget, the slot and the store's own", fields)
	}
	if n, err := client.ZCard(ctx, prefix+"{a}:due").Result(); err != nil || n != 1 {
		t.Fatalf("due: %d members, %v; want only its marker", n, err)
	}
}

// TestSettleRecordsInThePeriodOfTheReservation: a reservation made on one
// day and settled the next, even by an instance in another time zone's
// afternoon, is charged to the day it was made in, in the store's zone.
func TestSettleRecordsInThePeriodOfTheReservation(t *testing.T) {
	client := redisServer.Client(t)
	prefix := redisServer.KeyPrefix(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	store := newStore(t, client, &redisstore.Config{Prefix: prefix, Now: clock, Location: ny, Timeout: redistest.SlowTimeout, SettleGrace: 3 * time.Hour})
	daily := budget.Scope{Tag: "a", Kind: "key", ID: "k", Limit: 1000, Period: budget.Daily}
	r := &admission.Request{Tag: "a", Budgets: []budget.Scope{daily}, Cost: 700}

	now.Store(time.Date(2030, 3, 9, 23, 59, 0, 0, ny).UnixNano()) // the night before a DST change
	res, err := store.Reserve(ctx, r)
	if err != nil || !res.Allowed {
		t.Fatalf("Reserve: %+v, %v", res, err)
	}
	if want := time.Date(2030, 3, 10, 0, 0, 0, 0, ny); !res.Balance.ResetsAt.Equal(want) {
		t.Fatalf("ResetsAt %v, want %v", res.Balance.ResetsAt, want)
	}
	now.Store(time.Date(2030, 3, 10, 3, 30, 0, 0, ny).UnixNano()) // expired, settled late
	got, err := store.Settle(ctx, r, res.ID, admission.Usage{Cost: 600})
	if err != nil || !got.Expired {
		t.Fatalf("Settle: %+v, %v; want an expired reservation settled", got, err)
	}
	if b, err := store.Balance(ctx, daily); err != nil || b.Spent != 0 || b.Remaining != 1000 {
		t.Fatalf("the new day: %+v, %v; want nothing spent", b, err)
	}
	now.Store(time.Date(2030, 3, 9, 23, 59, 30, 0, ny).UnixNano()) // back on the old day
	if b, err := store.Balance(ctx, daily); err != nil || b.Spent != 600 || b.Held != 0 {
		t.Fatalf("the old day: %+v, %v; want 600 spent", b, err)
	}
}

// TestStoreMatchesMemory replays random sequences of reservations and
// settlements, with the clock jumping, against the Redis store and
// admission.Memory: every answer must be the same.
func TestStoreMatchesMemory(t *testing.T) {
	var now atomic.Int64
	now.Store(epoch.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	const ttl, grace = 5 * time.Second, 20 * time.Second
	mem, err := admission.NewMemory(&admission.MemoryConfig{Now: clock, TTL: ttl, SettleGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t, redisServer.Client(t), &redisstore.Config{Prefix: redisServer.KeyPrefix(t), Now: clock, TTL: ttl, SettleGrace: grace, Timeout: redistest.SlowTimeout})

	rng := rand.New(rand.NewPCG(5, 6))
	rates := []admission.Rate{
		{Key: "rpm", Policy: ratelimit.PerMinute(20), N: 1},
		{Key: "tpm", Policy: ratelimit.PerMinute(5000).WithBurst(3000), N: 700, Refund: true},
		{Key: "rph", Policy: ratelimit.PerHour(100), N: 1},
	}
	slots := []admission.Slot{{Key: "par", Limit: 3}, {Key: "par2", Limit: 5}}
	scopes := []budget.Scope{
		{Tag: "t", Kind: "key", ID: "k", Limit: 30_000, Period: budget.Daily},
		{Tag: "t", Kind: "account", ID: "t", Limit: 400_000, Period: budget.Monthly},
		{Tag: "t", Kind: "key", ID: "life", Limit: 400_000, Period: budget.None},
	}
	pick := func(n int) []int { return rng.Perm(n)[:rng.IntN(n+1)] }
	type open struct {
		r          *admission.Request
		mine, ours admission.ID
	}
	var live []open
	var allowed, expired, unknown int
	refused := map[admission.Kind]int{}
	for step := range 3000 {
		// The stores keep time to the millisecond.
		switch n := rng.IntN(200); {
		case n == 0: // into another day, maybe another month
			now.Add(int64(time.Millisecond) * rng.Int64N(3*24*3600*1000))
		case n < 3:
			now.Add(int64(time.Millisecond) * rng.Int64N(3600*1000))
		case n < 100:
			now.Add(int64(time.Millisecond) * rng.Int64N(2000))
		}
		if len(live) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(live))
			o := live[i]
			live = append(live[:i], live[i+1:]...)
			var u admission.Usage
			for j := range o.r.Rates {
				u.Used[j] = rng.Int64N(2*o.r.Rates[j].N + 1)
			}
			u.Cost = budget.Micros(rng.Int64N(2*int64(o.r.Cost) + 1))
			want, werr := mem.Settle(ctx, o.r, o.mine, u)
			got, gerr := store.Settle(ctx, o.r, o.ours, u)
			if errors.Is(werr, admission.ErrUnknownReservation) != errors.Is(gerr, admission.ErrUnknownReservation) || (werr == nil) != (gerr == nil) || got != want {
				t.Fatalf("step %d: Settle at +%v:\nredis  %+v, %v\nmemory %+v, %v", step, clock().Sub(epoch), got, gerr, want, werr)
			}
			switch {
			case gerr != nil:
				unknown++
			case got.Expired:
				expired++
			}
			continue
		}
		r := &admission.Request{Tag: "t", Cost: budget.Micros(rng.Int64N(1500))}
		for _, i := range pick(len(rates)) {
			c := rates[i]
			c.N = rng.Int64N(c.N + 1)
			r.Rates = append(r.Rates, c)
		}
		for _, i := range pick(len(slots)) {
			r.Slots = append(r.Slots, slots[i])
		}
		for _, i := range pick(len(scopes)) {
			r.Budgets = append(r.Budgets, scopes[i])
		}
		want, werr := mem.Reserve(ctx, r)
		got, gerr := store.Reserve(ctx, r)
		if werr != nil || gerr != nil {
			t.Fatalf("step %d: Reserve: redis %v, memory %v", step, gerr, werr)
		}
		mine, ours := want.ID, got.ID
		want.ID, got.ID = admission.ID{}, admission.ID{}
		if !want.Balance.ResetsAt.Equal(got.Balance.ResetsAt) {
			t.Fatalf("step %d: ResetsAt: redis %v, memory %v", step, got.Balance.ResetsAt, want.Balance.ResetsAt)
		}
		want.Balance.ResetsAt, got.Balance.ResetsAt = time.Time{}, time.Time{}
		if got != want {
			t.Fatalf("step %d: Reserve(%+v) at +%v:\nredis  %+v\nmemory %+v", step, r, clock().Sub(epoch), got, want)
		}
		if got.Allowed {
			allowed++
			live = append(live, open{r, mine, ours})
		} else {
			refused[got.Refused]++
		}
	}
	t.Logf("%d allowed, refused %v; settles of expired reservations %d, of forgotten ones or looks %d", allowed, refused, expired, unknown)
	for _, sc := range scopes {
		want, _ := mem.Balance(ctx, sc)
		got, err := store.Balance(ctx, sc)
		if err != nil || got.Spent != want.Spent || got.Held != want.Held {
			t.Fatalf("Balance(%v): redis %+v, %v; memory %+v", sc, got, err, want)
		}
	}
}

func BenchmarkReserveSettle(b *testing.B) {
	client := redisServer.ClientWithDefaults(b, true)
	store := newStore(b, client, &redisstore.Config{Prefix: redisServer.KeyPrefix(b), Timeout: redistest.SlowTimeout})
	reqs := make([]*admission.Request, 256)
	for i := range reqs {
		reqs[i] = fullRequest(fmt.Sprintf("acct_%03d", i))
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 17
		for pb.Next() {
			r := reqs[i%len(reqs)]
			i++
			res, err := store.Reserve(ctx, r)
			if err != nil || !res.Allowed {
				b.Errorf("Reserve: %+v, %v", res, err)
				return
			}
			if _, err := store.Settle(ctx, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{1, 1000}, Cost: 7000}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
