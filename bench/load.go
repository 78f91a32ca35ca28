package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit"
	admredis "github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/examples/provider/app"
)

// The stores a load scenario keeps gatekit's state in.
const (
	// ModeMemory keeps everything in the process.
	ModeMemory = "memory"
	// ModeDurable keeps budgets and idempotent responses on disk
	// (Config.Data.Dir), as a single instance that survives restarts does.
	ModeDurable = "durable"
	// ModeRedis keeps admission and idempotency in one redis-server,
	// calls made at the same time batched by the client's autopipeliner
	// (the store's default).
	ModeRedis = "redis"
	// ModeRedisFullDuplex is ModeRedis with the autopipeliner streaming
	// calls on one connection (redis.AutoPipelineOptions.FullDuplex), as
	// the demo's client does.
	ModeRedisFullDuplex = "redis-fullduplex"
	// ModeRedisUnbatched is ModeRedis with each call sent on its own
	// (admission/redisstore.Config.Unbatched).
	ModeRedisUnbatched = "redis-unbatched"
)

// IsRedis reports whether mode keeps its state in Redis.
func IsRedis(mode string) bool {
	return mode == ModeRedis || mode == ModeRedisFullDuplex || mode == ModeRedisUnbatched
}

// LoadConfig is one HTTP load scenario: the demo provider's API served on
// a loopback port by a real http.Server, under Conns keep-alive clients
// for a fixed Duration.
type LoadConfig struct {
	// Mode is ModeMemory, ModeDurable or one of the Redis modes.
	Mode string
	// Redis is the server of the Redis modes; it is flushed first.
	Redis *RedisServer
	// Idempotency sends every request with an Idempotency-Key of its own,
	// so that each one begins and completes an idempotency record.
	Idempotency bool
	// Keys is how many API keys the clients cycle through, each of its own
	// account; default 256.
	Keys int
	// Conns is how many clients send at once, each on a keep-alive
	// connection of its own; default 32.
	Conns int
	// Duration is how long requests are measured, after Warmup; defaults
	// 3s and 500ms.
	Duration, Warmup time.Duration
	// Rate, when set, paces the clients to that many requests per second
	// in all (an open loop: each request's latency counts from when it was
	// due, so a server that falls behind is charged for the queue); 0 sends
	// as fast as answers come back.
	Rate float64
	// MaxRequests bounds the measured requests; default 1,000,000.
	MaxRequests int64
}

// LoadResult is what a load scenario measured.
type LoadResult struct {
	// Requests answered 200 while measured, and those that were not (or
	// failed), with the first such failure.
	Requests, Failed int64
	FirstFailure     string
	// Elapsed is how long they took; PerSecond is Requests / Elapsed.
	Elapsed   time.Duration
	PerSecond float64
	// P50, P99 and Max are the latencies of the answered requests.
	P50, P99, Max time.Duration
	// Redis figures per measured request, from INFO commandstats (zero
	// outside the Redis modes): scripts run (FCALL, EVAL and EVALSHA), the
	// commands they ran (redis.call), and the microseconds Redis spent
	// running the scripts: its server time, as every call of gatekit's
	// Redis stores is a script, not counting network I/O.
	Scripts, ScriptCommands, ServerMicros float64
}

// RunLoad serves the demo as cfg says, drives it and returns what it
// measured. It listens on 127.0.0.1 only, and stops its server before
// returning.
func RunLoad(cfg LoadConfig) (LoadResult, error) {
	cfg.Keys = cmp.Or(cfg.Keys, 256)
	cfg.Conns = cmp.Or(cfg.Conns, 32)
	cfg.Duration = cmp.Or(cfg.Duration, 3*time.Second)
	cfg.Warmup = cmp.Or(cfg.Warmup, 500*time.Millisecond)
	cfg.MaxRequests = cmp.Or(cfg.MaxRequests, 1_000_000)
	var res LoadResult

	srv, err := startLoadServer(cfg)
	if err != nil {
		return res, err
	}
	defer srv.close()

	transport := &http.Transport{MaxIdleConnsPerHost: cfg.Conns, MaxConnsPerHost: cfg.Conns, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		ok, bad   atomic.Int64
		firstBad  atomic.Pointer[string]
		mu        sync.Mutex
		latencies []time.Duration
		seq       atomic.Int64
	)
	// In an open loop, client g sends its k-th request at start + (k*Conns
	// + g) / Rate.
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cfg.Conns) / cfg.Rate)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for g := range cfg.Conns {
		wg.Go(func() {
			own := make([]time.Duration, 0, 4096)
			due := start.Add(time.Duration(g) * interval / time.Duration(cfg.Conns))
			for k := g; !stop.Load(); k += cfg.Conns {
				sent := time.Now()
				if interval > 0 {
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					sent = due
					due = due.Add(interval)
				}
				err := srv.chat(client, k%cfg.Keys, cfg.Idempotency, seq.Add(1))
				took := time.Since(sent)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					if bad.Add(1) == 1 {
						msg := err.Error()
						firstBad.Store(&msg)
					}
					continue
				}
				if ok.Add(1) > cfg.MaxRequests {
					stop.Store(true)
				}
				own = append(own, took)
			}
			mu.Lock()
			latencies = append(latencies, own...)
			mu.Unlock()
		})
	}
	time.Sleep(cfg.Warmup)
	if err := srv.resetStats(); err != nil {
		stop.Store(true)
		wg.Wait()
		return res, err
	}
	measuring.Store(true)
	begin := time.Now()
	for time.Since(begin) < cfg.Duration && !stop.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	measuring.Store(false)
	res.Elapsed = time.Since(begin)
	stop.Store(true)
	wg.Wait()

	res.Requests, res.Failed = min(ok.Load(), cfg.MaxRequests), bad.Load()
	if p := firstBad.Load(); p != nil {
		res.FirstFailure = *p
	}
	res.PerSecond = float64(res.Requests) / res.Elapsed.Seconds()
	if len(latencies) > 0 {
		slices.Sort(latencies)
		res.P50 = latencies[len(latencies)/2]
		res.P99 = latencies[len(latencies)*99/100]
		res.Max = latencies[len(latencies)-1]
	}
	if srv.admin != nil && res.Requests > 0 {
		st, err := commandStats(srv.admin)
		if err != nil {
			return res, err
		}
		n := float64(res.Requests + res.Failed)
		res.Scripts = float64(st.scripts) / n
		res.ScriptCommands = float64(st.calls-st.scripts) / n
		res.ServerMicros = float64(st.scriptUsec) / n
	}
	return res, nil
}

// loadServer is the demo on a loopback port.
type loadServer struct {
	url   string
	keys  *Keys
	admin *redis.Client // the Redis modes only
	close func()
}

// startLoadServer mounts the demo provider's API (app.New, as `go run
// ./examples/provider` does) on a configuration of cfg.Keys keys, each its
// own account, whose limits are never reached: requests, tokens and
// concurrency limited, a monthly budget per key, chat completions billed
// and honouring Idempotency-Key, metrics on a registry of their own.
func startLoadServer(cfg LoadConfig) (*loadServer, error) {
	keys := NewKeys(cfg.Keys)
	route := http.MethodPost + " " + Route
	gc := gatekit.Config{
		Shape:  "openai",
		Auth:   gatekit.AuthConfig{Paths: []string{"/v1/"}},
		Routes: map[string]gatekit.RouteConfig{route: {BodyLimit: 1 << 20}},
		Tiers: map[string]gatekit.TierConfig{"load": {
			Routes: map[string]gatekit.LimitConfig{route: {RPM: NeverDeny, TPM: NeverDeny, MaxParallel: fullMaxParallel}},
			Budget: &gatekit.BudgetConfig{Limit: keyBudget, Period: "monthly"},
		}},
		Budgets:     gatekit.BudgetsConfig{Routes: []string{route}, TimeZone: "UTC"},
		Idempotency: gatekit.IdempotencyConfig{Routes: []string{route}},
		Prices:      gatekit.PricesConfig{Models: map[string]gatekit.PriceConfig{Model: modelPrice}},
		Logger:      discardLogger(),
		Metrics:     prometheus.NewRegistry(),
	}
	for i := range keys.Raw {
		gc.Keys = append(gc.Keys, gatekit.KeyConfig{ID: keys.IDs[i], Key: keys.Raw[i], Tier: "load"})
	}
	s := &loadServer{keys: keys}
	var cleanup []func()
	s.close = func() {
		for _, f := range slices.Backward(cleanup) {
			f()
		}
	}
	fail := func(err error) (*loadServer, error) {
		s.close()
		return nil, err
	}
	switch cfg.Mode {
	case ModeMemory:
	case ModeDurable:
		dir, err := os.MkdirTemp("", "gatekit-load-")
		if err != nil {
			return fail(err)
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		gc.Data.Dir = dir
	case ModeRedis, ModeRedisFullDuplex, ModeRedisUnbatched:
		if cfg.Redis == nil {
			return fail(errors.New("load: the Redis modes need a RedisServer"))
		}
		s.admin = redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr})
		cleanup = append(cleanup, func() { s.admin.Close() })
		if err := s.admin.FlushAll(context.Background()).Err(); err != nil {
			return fail(err)
		}
		opts := &redis.Options{Addr: cfg.Redis.Addr, ContextTimeoutEnabled: true, PoolSize: 2 * cfg.Conns}
		if cfg.Mode == ModeRedisFullDuplex {
			opts.AutoPipelineOptions = &redis.AutoPipelineOptions{FullDuplex: true}
		}
		client := redis.NewClient(opts)
		cleanup = append(cleanup, func() { client.Close() })
		var err error
		if gc.Store, err = admredis.New(client, &admredis.Config{Timeout: storeTimeout, Unbatched: cfg.Mode == ModeRedisUnbatched}); err != nil {
			return fail(err)
		}
		// Idempotency keys are kept by the admission store, beside the
		// account's state (gatekit.Config.IdempotencyStore).
	default:
		return fail(fmt.Errorf("load: unknown mode %q", cfg.Mode))
	}
	e, gate, err := app.New(gc)
	if err != nil {
		return fail(err)
	}
	cleanup = append(cleanup, func() { gate.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	hs := gatekit.NewServer(e, &gatekit.ServerConfig{Logger: discardLogger()})
	go hs.Serve(ln)
	cleanup = append(cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	})
	s.url = "http://" + ln.Addr().String() + Route
	return s, nil
}

// chat sends one chat completion as key i, with an Idempotency-Key made of
// n when idem is set, and reads the whole answer.
func (s *loadServer) chat(client *http.Client, i int, idem bool, n int64) error {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(ChatRequestJSON))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.keys.Raw[i])
	req.Header.Set("Content-Type", "application/json")
	if idem {
		req.Header.Set("Idempotency-Key", "load-"+strconv.FormatInt(n, 10))
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", res.StatusCode, body)
	}
	return nil
}

// resetStats zeroes Redis's command statistics, when there is a Redis.
func (s *loadServer) resetStats() error {
	if s.admin == nil {
		return nil
	}
	return s.admin.ConfigResetStat(context.Background()).Err()
}

// redisStats are totals of INFO commandstats: the calls of every command,
// those of scripts among them, and the time spent in scripts.
type redisStats struct{ calls, scripts, scriptUsec int64 }

// commandStats sums INFO commandstats over every command but those an
// admin client sends (INFO, CONFIG), and the scripts apart. (The commands a
// script runs are counted too, and their time is also the script's.)
func commandStats(admin *redis.Client) (redisStats, error) {
	var st redisStats
	info, err := admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return st, err
	}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found || name == "info" || strings.HasPrefix(name, "config") {
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
		st.calls += calls
		if name == "eval" || name == "evalsha" || name == "fcall" {
			st.scripts += calls
			st.scriptUsec += usec
		}
	}
	return st, nil
}
