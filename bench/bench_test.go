package bench_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/gatekit/gatekit/bench"
)

// suite is shared by the tests and benchmarks of this package, so that the
// key sets are built once and one redis-server serves every Redis scenario.
var suite *bench.Suite

func TestMain(m *testing.M) {
	suite = bench.NewSuite()
	code := m.Run()
	suite.Close()
	os.Exit(code)
}

// setup builds sc for n keys, skipping when it needs a missing redis-server.
func setup(tb testing.TB, sc bench.Scenario, n int) *bench.Env {
	tb.Helper()
	env, err := suite.Setup(sc, n)
	if errors.Is(err, bench.ErrNoRedis) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatalf("%s: %v", sc.Name, err)
	}
	tb.Cleanup(env.Release)
	return env
}

// TestEveryScenarioAnswersAsItShould checks what the benchmarks take for
// granted: each contestant answers the status it is measured on and sets
// the headers it is credited with, and the full stack settles the usage
// its handler reports.
func TestEveryScenarioAnswersAsItShould(t *testing.T) {
	for _, sc := range bench.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			env := setup(t, sc, 16)
			if err := env.Check(sc.Header); err != nil {
				t.Fatal(err)
			}
			if env.Verify != nil {
				if err := env.Verify(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestGatekitRedisStoreMakesOneRoundTripPerCall counts the writes on the
// store's connections and the script and function calls Redis saw: requests made
// one after another under a requests limit alone are one of each, the
// reservation, since they leave nothing to settle.
func TestGatekitRedisStoreMakesOneRoundTripPerCall(t *testing.T) {
	for _, sc := range bench.Scenarios() {
		if sc.Name != "redis-store-gatekit" && sc.Name != "redis-gatekit" {
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			env := setup(t, sc, 64)
			const n = 500
			before := env.Counters()
			cl := bench.NewClient()
			for i := range n {
				if env.Direct != nil {
					if err := env.Direct(context.Background(), i%64); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if w := cl.Serve(env.Handler, env.Keys.Requests[i%64]); w.Status != env.Want {
					t.Fatalf("status %d", w.Status)
				}
			}
			after := env.Counters()
			for _, unit := range []string{"rt/op", "evals/op"} {
				// A requests limit alone leaves nothing to settle: one
				// script per request.
				if got := after[unit] - before[unit]; got != n {
					t.Errorf("%s: %d for %d requests, want exactly one each (the reservation)", unit, got, n)
				}
			}
		})
	}
}

func benchmarkScenarios(b *testing.B, redis bool) {
	for _, sc := range bench.Scenarios() {
		if sc.Redis != redis {
			continue
		}
		for _, n := range bench.KeyCounts {
			// b.Run calls its function more than once: set up on the first
			// call only (so that a -bench filter skips the setup too), and
			// release once b.Run is done.
			var env *bench.Env
			b.Run(fmt.Sprintf("%s/keys=%d", sc.Name, n), func(b *testing.B) {
				if env == nil {
					var err error
					if env, err = suite.Setup(sc, n); errors.Is(err, bench.ErrNoRedis) {
						b.Skip(err)
					} else if err != nil {
						b.Fatalf("%s: %v", sc.Name, err)
					}
				}
				bench.Run(b, env)
			})
			if env != nil {
				env.Release()
			}
		}
	}
}

// BenchmarkMemory runs the in-process scenarios: bare Echo, gatekit, and
// the memory-store peers.
func BenchmarkMemory(b *testing.B) { benchmarkScenarios(b, false) }

// BenchmarkRedis runs gatekit's admission/redisstore and redis_rate against one
// redis-server, RedisInFlight requests in flight.
func BenchmarkRedis(b *testing.B) { benchmarkScenarios(b, true) }

// TestLoadAnswersInEveryMode runs the HTTP load scenario briefly in every
// mode, with and without Idempotency-Key: every request is answered 200,
// and on Redis a request runs exactly 2 scripts (reserve, settle), with an
// Idempotency-Key too (its key is claimed by the reserve script and ended
// by the settle script).
func TestLoadAnswersInEveryMode(t *testing.T) {
	for _, mode := range []string{bench.ModeMemory, bench.ModeDurable, bench.ModeRedis} {
		for _, idem := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/idempotency=%v", mode, idem), func(t *testing.T) {
				cfg := bench.LoadConfig{Mode: mode, Idempotency: idem, Keys: 8, Conns: 4,
					Duration: 200 * time.Millisecond, Warmup: 100 * time.Millisecond}
				if mode == bench.ModeRedis {
					srv, err := suite.Redis()
					if errors.Is(err, bench.ErrNoRedis) {
						t.Skip(err)
					}
					if err != nil {
						t.Fatal(err)
					}
					cfg.Redis = srv
				}
				res, err := bench.RunLoad(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.Requests == 0 || res.Failed > 0 || res.P99 == 0 {
					t.Fatalf("%+v", res)
				}
				if mode == bench.ModeRedis {
					if want := 2.0; math.Abs(res.Scripts-want) > 0.05 {
						t.Errorf("%.2f scripts per request, want %v", res.Scripts, want)
					}
				}
			})
		}
	}
}
