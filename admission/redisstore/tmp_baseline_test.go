package redisstore_test

import (
	"testing"

	"github.com/gatekit/gatekit/internal/redistest"
)

func TestTmpBaseline(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.ClientWithDefaults(t, true)
	for _, src := range []string{
		"return 1",
		"local x = 0 for i = 1, 20 do x = x + tonumber(ARGV[1]) end return x",
		"for i = 1, 20 do redis.call('GET', KEYS[1]) end return 1",
		"local function f() return 1 end local function g() return 2 end local function h() return 3 end return f()",
	} {
		client.ConfigResetStat(ctx)
		for range 2000 {
			if err := client.Eval(ctx, src, []string{"{a}k"}, 5).Err(); err != nil && err.Error() != "redis: nil" {
				t.Fatal(err)
			}
		}
		st := commandStats(t, client)
		t.Logf("%q: eval %.2f µs/call, evalsha %v", src, float64(st["eval"][1])/float64(st["eval"][0]), st["evalsha"])
	}
}
