package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func TestTmpBaseline(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.ClientWithDefaults(t, true)
	store := newStore(t, client, &redisstore.Config{Timeout: redistest.SlowTimeout})
	r := fullRequest("acct")
	res, _ := store.Reserve(ctx, r)
	store.Settle(ctx, r, res.ID, admission.Usage{Used: [admission.MaxRates]int64{1, 1000}, Cost: 7000})
	// capture the args of a reserve
	var captured []any
	client.AddHook(hook{func(c redis.Cmder) {
		if c.Name() == "evalsha" && captured == nil {
			captured = c.Args()
		}
	}})
	store.Reserve(ctx, r)
	common, _ := os.ReadFile("lua/common.lua")
	reserve, _ := os.ReadFile("lua/reserve.lua")
	src := string(reserve)
	cuts := []string{"local inUse = {}", "local function reply", "local limit, pend", "-- Every claim fits", "for i = 1, nr do\n  if saves", "local best, left"}
	nk := captured[2].(int)
	keys := make([]string, nk)
	for i := range keys {
		keys[i] = captured[3+i].(string)
	}
	args := captured[3+nk:]
	for _, c := range cuts {
		i := strings.Index(src, c)
		s := string(common) + src[:i] + "\nreturn 1"
		client.ConfigResetStat(ctx)
		for range 1000 {
			if err := client.Eval(ctx, s, keys, args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		st := commandStats(t, client)
		t.Logf("before %q: %.1f µs", c, float64(st["eval"][1])/float64(st["eval"][0]))
	}
	_ = fmt.Sprint
}

type hook struct{ f func(redis.Cmder) }

func (h hook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx2 context.Context, cmd redis.Cmder) error { h.f(cmd); return next(ctx2, cmd) }
}
func (h hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
