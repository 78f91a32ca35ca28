package rediscall_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/internal/rediscall"
	"github.com/gatekit/gatekit/internal/redistest"
)

// TestAFunctionIsLoadedWhereverItIsMissing: the first call of a library's
// function loads the library, on every master of a cluster, and a call
// after the library is flushed (a server that restarted without it) loads
// it again; the calls answer all the same, batched or not.
func TestAFunctionIsLoadedWhereverItIsMissing(t *testing.T) {
	ctx := context.Background()
	lib := rediscall.NewLibrary("#!lua name=rediscall_test\n" +
		"redis.register_function('rediscall_test_incr', function(KEYS, ARGV) return {redis.call('INCRBY', KEYS[1], ARGV[1])} end)\n")
	fn := lib.Function("rediscall_test_incr")
	srv := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	for name, client := range map[string]redis.UniversalClient{"server": srv.ClientWithDefaults(t, true), "cluster": cluster.Client(t)} {
		for _, unbatched := range []bool{false, true} {
			call, err := rediscall.New(client, rediscall.Options{Unbatched: unbatched, Timeout: redistest.SlowTimeout})
			if err != nil {
				t.Fatal(err)
			}
			flush := func() {
				t.Helper()
				if cc, ok := client.(*redis.ClusterClient); ok {
					err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FunctionFlush(ctx).Err() })
				} else {
					err = client.FunctionFlush(ctx).Err()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			flush()
			// Keys in every slot range, so that each master is called.
			keys := []string{"{a}:n", "{b}:n", "{c}:n", "{d}:n", "{e}:n"}
			for round := range 2 {
				for _, k := range keys {
					v, err := call.Int64s(ctx, "incr", fn, []string{k}, 1)
					if err != nil || len(v) != 1 {
						t.Fatalf("%s, unbatched %v, round %d, %s: %v, %v", name, unbatched, round, k, v, err)
					}
				}
				flush()
			}
			for _, k := range keys {
				if n, err := client.Get(ctx, k).Int64(); err != nil || n < 2 {
					t.Fatalf("%s: %s = %d, %v; want every call counted", name, k, n, err)
				}
				client.Del(ctx, k)
			}
		}
	}
}
