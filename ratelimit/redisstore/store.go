// Package redisstore is a ratelimit.Limiter on Redis, for several instances
// of a service that must share their limits.
//
// Each decision is one Lua script run atomically on the Redis server (read
// the bucket, decide, write it back): one round trip, no lock, and the same
// decisions as ratelimit.Memory to the millisecond. By default the script
// reads the time from Redis itself, so instances whose clocks disagree still
// agree on every bucket. Every key carries a TTL (the time its bucket takes
// to refill, plus a second), so idle keys disappear on their own, and is
// hash-tagged, so the store works on Redis Cluster as well as on a single
// server or Sentinel.
package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/ratelimit"
	"github.com/gatekit/gatekit/ratelimit/internal/bucket"
)

// Defaults for Config.
const (
	// DefaultPrefix starts every key when Config.Prefix is empty.
	DefaultPrefix = "gatekit:rl:"
	// DefaultTimeout bounds each decision when Config.Timeout is 0.
	DefaultTimeout = 100 * time.Millisecond
)

// ttlMargin is how long a key outlives the refill of its bucket, to absorb
// differences between the clocks that wrote and expire it.
const ttlMargin = 1000 // ms

//go:embed bucket.lua
var bucketLua string

// Config configures a Store. The zero value (or a nil pointer) gives the
// defaults.
type Config struct {
	// Prefix starts every Redis key; default DefaultPrefix. A bucket's key
	// is Prefix + "{" + key + "}". It must not contain '{' or '}', which
	// would change the key's hash slot on Redis Cluster.
	Prefix string
	// Now, if set, is the clock decisions use, to the millisecond. The
	// default, nil, uses the Redis server's clock, which every instance
	// shares; set Now only in tests, or when every instance's clock is
	// closely synchronised.
	Now func() time.Time
	// Timeout bounds each decision, round trip included; default
	// DefaultTimeout. A decision that takes longer returns an error wrapping
	// context.DeadlineExceeded rather than keep the request waiting.
	Timeout time.Duration
}

// Store is a ratelimit.Limiter whose buckets live in Redis. It is safe for
// concurrent use, and any number of Stores, in any number of processes, may
// share buckets through one Redis deployment.
type Store struct {
	client  redis.UniversalClient
	script  *redis.Script
	prefix  string
	now     func() time.Time
	timeout time.Duration
	// honoursDeadlines is true when the client aborts I/O at the context's
	// deadline (ContextTimeoutEnabled); otherwise each call runs on its own
	// goroutine so that Timeout still holds.
	honoursDeadlines bool
}

var _ ratelimit.Limiter = (*Store)(nil)

// New returns a Store that keeps its buckets in client, configured by cfg;
// nil means the defaults.
//
// Give client ContextTimeoutEnabled: true (on redis.Options,
// redis.ClusterOptions, redis.UniversalOptions...) so that it stops waiting
// on Redis at Config.Timeout. Without it, go-redis waits out its own
// ReadTimeout, and the Store has to run each call on a goroutine of its own
// to return on time, leaving that goroutine to finish in the background.
func New(client redis.UniversalClient, cfg *Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return nil, fmt.Errorf("redisstore: Prefix %q contains '{' or '}'", c.Prefix)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("redisstore: negative Timeout %v", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return &Store{
		client:           client,
		script:           redis.NewScript(bucketLua),
		prefix:           c.Prefix,
		now:              c.Now,
		timeout:          c.Timeout,
		honoursDeadlines: honoursDeadlines(client),
	}, nil
}

func honoursDeadlines(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Allow implements ratelimit.Limiter.Allow.
func (s *Store) Allow(ctx context.Context, key string, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	return s.decide(ctx, "allow", key, p, n)
}

// Charge implements ratelimit.Limiter.Charge.
func (s *Store) Charge(ctx context.Context, key string, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	return s.decide(ctx, "charge", key, p, n)
}

// Key returns the Redis key holding key's bucket.
func (s *Store) Key(key string) string {
	return s.prefix + "{" + key + "}"
}

func (s *Store) decide(ctx context.Context, op, key string, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	if n < 0 {
		return ratelimit.Decision{}, ratelimit.ErrNegativeUnits
	}
	prm, err := bucket.New(p.Limit, p.Window, p.Burst)
	if err != nil {
		return ratelimit.Decision{}, err
	}
	now := int64(-1) // the script reads Redis's clock
	if s.now != nil {
		now = s.now().UnixMilli()
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.run(ctx, []string{s.Key(key)}, op, n, prm.Unit, prm.Rate, prm.Burst, now, ttlMargin)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			// go-redis reports a deadline met during I/O as a network
			// timeout; say which deadline it was.
			return ratelimit.Decision{}, fmt.Errorf("redisstore: %s: %w: %w", op, ctxErr, err)
		}
		return ratelimit.Decision{}, fmt.Errorf("redisstore: %s: %w", op, err)
	}
	if len(res) != 4 {
		return ratelimit.Decision{}, fmt.Errorf("redisstore: %s: script returned %d values, want 4", op, len(res))
	}
	return ratelimit.Decision{
		Allowed:    res[0] == 1,
		Limit:      p.Limit,
		Remaining:  res[1],
		ResetAfter: time.Duration(res[2]) * time.Millisecond,
		RetryAfter: time.Duration(res[3]) * time.Millisecond,
	}, nil
}

// run runs the script (EVALSHA, then EVAL if Redis does not have it cached)
// and returns by ctx's deadline at the latest.
func (s *Store) run(ctx context.Context, keys []string, args ...any) ([]int64, error) {
	if s.honoursDeadlines {
		return s.script.Run(ctx, s.client, keys, args...).Int64Slice()
	}
	type result struct {
		v   []int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := s.script.Run(ctx, s.client, keys, args...).Int64Slice()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
