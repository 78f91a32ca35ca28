package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// RedisServer is a redis-server this package started on a free loopback
// port, with persistence off.
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
	out  *bytes.Buffer
}

// StartRedis starts redis-server and waits until it answers PING. When the
// binary is missing it returns ErrNoRedis, unless CI is "true", where a
// missing server is an error of its own so that CI cannot pass by skipping.
func StartRedis() (*RedisServer, error) {
	bin := "/usr/bin/redis-server"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("redis-server"); err != nil {
			if os.Getenv("CI") == "true" {
				return nil, fmt.Errorf("redis-server not found and CI=true: %w", err)
			}
			return nil, ErrNoRedis
		}
	}
	dir, err := os.MkdirTemp("", "gatekit-bench-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port can be taken before redis-server binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, out: &bytes.Buffer{}}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("starting %s: %w", bin, err)
		}
		s.done = make(chan struct{})
		go func() { s.cmd.Wait(); close(s.done) }()
		if lastErr = s.waitReady(10 * time.Second); lastErr == nil {
			return s, nil
		}
		s.stop()
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *RedisServer) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ping(s.Addr)
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited: %s", strings.TrimSpace(s.out.String()))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %v: %w", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func (s *RedisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Close stops the server and removes its directory.
func (s *RedisServer) Close() {
	s.stop()
	os.RemoveAll(s.dir)
}

// Client returns a client of s whose connections count their writes in rt:
// each write is one round trip, of one command or, through an
// autopipeliner, of many. Every Redis contestant gets a client with these
// same options.
func (s *RedisServer) Client(rt *atomic.Int64) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  s.Addr,
		PoolSize:              2 * RedisInFlight,
		ContextTimeoutEnabled: true,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: c, writes: rt}, nil
		},
	})
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// EvalStats returns how many scripts and functions (EVAL, EVALSHA and
// FCALL commands) the server has run and the microseconds it spent in
// them, from INFO commandstats.
func EvalStats(ctx context.Context, c *redis.Client) (calls, usec int64, err error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_evalsha:calls=123,usec=4567,usec_per_call=37.13,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_eval" && name != "cmdstat_evalsha" && name != "cmdstat_fcall") {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			var dst *int64
			switch k {
			case "calls":
				dst = &calls
			case "usec":
				dst = &usec
			default:
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("commandstats line %q: %w", line, err)
			}
			*dst += n
		}
	}
	return calls, usec, nil
}

// redisEnv is what every Redis scenario shares: a flushed server, a
// counting client for the contestant and an admin client for INFO.
type redisEnv struct {
	client *redis.Client
	admin  *redis.Client
	rt     atomic.Int64
}

func newRedisEnv(s *Suite) (*redisEnv, error) {
	srv, err := s.Redis()
	if err != nil {
		return nil, err
	}
	re := &redisEnv{}
	re.client = srv.Client(&re.rt)
	re.admin = redis.NewClient(&redis.Options{Addr: srv.Addr})
	ctx := context.Background()
	if err := re.admin.FlushAll(ctx).Err(); err != nil {
		re.close()
		return nil, err
	}
	return re, nil
}

func (re *redisEnv) close() {
	re.client.Close()
	re.admin.Close()
}

// env fills in what Redis scenarios have in common.
func (re *redisEnv) env(keys *Keys, handler http.Handler, direct func(context.Context, int) error) *Env {
	return &Env{
		Handler:  handler,
		Direct:   direct,
		Keys:     keys,
		Want:     http.StatusOK,
		InFlight: RedisInFlight,
		// Buckets expire within a second of their last request at these limits,
		// so priming every key buys nothing; prime enough to open the
		// connections and load the scripts.
		PrimeN: 4 * RedisInFlight,
		Counters: func() map[string]int64 {
			evals, usec, err := EvalStats(context.Background(), re.admin)
			if err != nil {
				evals, usec = math.MinInt64, math.MinInt64
			}
			return map[string]int64{"rt/op": re.rt.Load(), "evals/op": evals, "server-µs/op": usec}
		},
		Close: re.close,
	}
}

// storeTimeout bounds each call of gatekit's store in the Redis
// scenarios. With the default, redisstore.DefaultTimeout (100ms), a call
// that takes longer fails its request closed with a 503, and on a shared
// two-core machine a few did (15 of 18,410 requests in one 1-second run):
// stalls of the machine, not of the store, fail the run. redis_rate sets no
// timeout at all, so a second is still the stricter of the two.
const storeTimeout = time.Second

// newGatekitStore is gatekit's admission store on re's client, as a
// service would configure it but for the Timeout.
func newGatekitStore(re *redisEnv) (*redisstore.Store, error) {
	return redisstore.New(re.client, &redisstore.Config{Timeout: storeTimeout})
}

func setupRedisGatekit(s *Suite, keys *Keys) (*Env, error) {
	re, err := newRedisEnv(s)
	if err != nil {
		return nil, err
	}
	store, err := newGatekitStore(re)
	if err != nil {
		re.close()
		return nil, err
	}
	mw, err := rateLimited(keys, store)
	if err != nil {
		re.close()
		return nil, err
	}
	e, err := gatekitEcho(mw)
	if err != nil {
		re.close()
		return nil, err
	}
	return re.env(keys, e, nil), nil
}

// redisRateMiddleware is the glue redis_rate needs to limit an Echo route:
// it has no middleware of its own. It sets the usual X-RateLimit-* headers
// (canonical keys, assigned directly) and answers 429 with Retry-After.
func redisRateMiddleware(l *redis_rate.Limiter, limit redis_rate.Limit) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			res, err := l.Allow(r.Context(), APIKey(r), limit)
			if err != nil {
				return echo.NewHTTPError(http.StatusServiceUnavailable).SetInternal(err)
			}
			h := c.Response().Header()
			h["X-Ratelimit-Limit"] = []string{strconv.Itoa(limit.Rate)}
			h["X-Ratelimit-Remaining"] = []string{strconv.Itoa(res.Remaining)}
			h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(int64(math.Ceil(res.ResetAfter.Seconds())), 10)}
			if res.Allowed == 0 {
				h["Retry-After"] = []string{strconv.FormatInt(int64(math.Ceil(res.RetryAfter.Seconds())), 10)}
				return echo.NewHTTPError(http.StatusTooManyRequests)
			}
			return next(c)
		}
	}
}

func setupRedisRate(s *Suite, keys *Keys) (*Env, error) {
	re, err := newRedisEnv(s)
	if err != nil {
		return nil, err
	}
	mw := redisRateMiddleware(redis_rate.NewLimiter(re.client), redis_rate.PerMinute(NeverDeny))
	return re.env(keys, newEcho(mw), nil), nil
}

// setupRedisRateAutoPipeline gives redis_rate the client's blocking
// autopipeliner instead of the client, which batches its concurrent calls
// the way gatekit's store does by default: it shows how much of the
// difference between the two is the batching alone.
func setupRedisRateAutoPipeline(s *Suite, keys *Keys) (*Env, error) {
	re, err := newRedisEnv(s)
	if err != nil {
		return nil, err
	}
	ap, err := re.client.AutoPipeline()
	if err != nil {
		re.close()
		return nil, err
	}
	mw := redisRateMiddleware(redis_rate.NewLimiter(ap), redis_rate.PerMinute(NeverDeny))
	return re.env(keys, newEcho(mw), nil), nil
}

// errDenied is what the store-level scenarios return for a denial, which
// none of them should see.
var errDenied = errors.New("denied")

func setupRedisStoreGatekit(s *Suite, keys *Keys) (*Env, error) {
	re, err := newRedisEnv(s)
	if err != nil {
		return nil, err
	}
	store, err := newGatekitStore(re)
	if err != nil {
		re.close()
		return nil, err
	}
	// The Request Admission builds for a requests limit alone: the
	// principal's account as Tag and its id as Holder, one rate claim on
	// its route's key.
	p := ratelimit.PerMinute(NeverDeny)
	reqs := make([]admission.Request, len(keys.IDs))
	for i, id := range keys.IDs {
		reqs[i] = admission.Request{Tag: id, Holder: id, Rates: []admission.Rate{
			{Key: middleware.LimitKey(http.MethodPost, Route, middleware.MeterRequests), Policy: p, N: 1},
		}}
	}
	return re.env(keys, nil, func(ctx context.Context, i int) error {
		r := &reqs[i]
		res, err := store.Reserve(ctx, r)
		if err != nil {
			return err
		}
		if !res.Allowed {
			return errDenied
		}
		if res.ID == (admission.ID{}) {
			return nil // nothing to settle, as Admission skips it too
		}
		_, err = store.Settle(ctx, r, res.ID, admission.Usage{})
		return err
	}), nil
}

func setupRedisStoreRate(s *Suite, keys *Keys) (*Env, error) {
	re, err := newRedisEnv(s)
	if err != nil {
		return nil, err
	}
	l := redis_rate.NewLimiter(re.client)
	limit := redis_rate.PerMinute(NeverDeny)
	return re.env(keys, nil, func(ctx context.Context, i int) error {
		res, err := l.Allow(ctx, keys.IDs[i], limit)
		if err == nil && res.Allowed == 0 {
			err = errDenied
		}
		return err
	}), nil
}
