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
//
// A bucket is one string value of 24 bytes under a key that names its
// format ("v2:"). Versions before it kept buckets in hashes under keys
// without the "v2:"; the two never read each other's keys, so a fleet in the
// middle of a rolling upgrade sees no errors, but old and new instances
// count separately until the old ones are gone (up to twice the limit for a
// client served by both), and the new ones start every bucket full. The old
// keys expire by their TTL.
package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/internal/bucket"
	"github.com/gatekit/gatekit/internal/rediscall"
	"github.com/gatekit/gatekit/ratelimit"
)

// Defaults for Config.
const (
	// DefaultPrefix starts every key when Config.Prefix is empty.
	DefaultPrefix = "gatekit:rl:"
	// DefaultTimeout bounds each decision when Config.Timeout is 0.
	DefaultTimeout = rediscall.DefaultTimeout
)

// keyVersion follows the prefix of every key: it names the format of the
// value (bucket.lua), so that a change of format never reads the old one.
const keyVersion = "v2:"

//go:embed bucket.lua
var bucketLua string

// Config configures a Store. The zero value (or a nil pointer) gives the
// defaults.
type Config struct {
	// Prefix starts every Redis key; default DefaultPrefix. A bucket's key
	// is Prefix + "v2:{" + key + "}" (see Store.Key). It must not contain
	// '{' or '}', which would change the key's hash slot on Redis Cluster.
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
	// Unbatched sends each decision as a command of its own. By default,
	// decisions made at the same time go together through the client's
	// asynchronous autopipeliner (redis.UniversalClient.AsyncAutoPipeline,
	// tuned by redis.Options.AutoPipelineOptions): one write and one read
	// on one connection for many decisions, which takes far less CPU, in
	// the service and in Redis, than a round trip each. Each decision is
	// still one script run, and waits for its batch no longer than its
	// Timeout. A redis.Ring has no autopipeliner and is always unbatched.
	Unbatched bool
}

// Store is a ratelimit.Limiter whose buckets live in Redis. It is safe for
// concurrent use, and any number of Stores, in any number of processes, may
// share buckets through one Redis deployment.
type Store struct {
	call   rediscall.Caller
	script *rediscall.Script
	prefix string
	now    func() time.Time
}

var _ ratelimit.RealTimeLimiter = (*Store)(nil)

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
	prefix, err := rediscall.Prefix(c.Prefix, DefaultPrefix)
	if err != nil {
		return nil, err
	}
	call, err := rediscall.New(client, rediscall.Options{Timeout: c.Timeout, Unbatched: c.Unbatched})
	if err != nil {
		return nil, err
	}
	return &Store{
		call:   call,
		script: rediscall.NewScript(bucketLua),
		prefix: prefix,
		now:    c.Now,
	}, nil
}

// Allow implements ratelimit.Limiter.Allow.
func (s *Store) Allow(ctx context.Context, key string, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	if n < 0 {
		return ratelimit.Decision{}, ratelimit.ErrNegativeUnits
	}
	prm, err := bucket.New(p.Limit, p.Window, p.Burst)
	if err != nil {
		return ratelimit.Decision{}, err
	}
	// The script reads Redis's clock unless it is given one.
	var res []int64
	if s.now == nil {
		res, err = s.call.Int64s(ctx, "allow", s.script, []string{s.Key(key)}, n, prm.Unit, prm.Rate, prm.Burst)
	} else {
		res, err = s.call.Int64s(ctx, "allow", s.script, []string{s.Key(key)}, n, prm.Unit, prm.Rate, prm.Burst, s.now().UnixMilli())
	}
	if err != nil {
		return ratelimit.Decision{}, err
	}
	if len(res) != 4 {
		return ratelimit.Decision{}, fmt.Errorf("redisstore: allow: script returned %d values, want 4", len(res))
	}
	return ratelimit.Decision{
		Allowed:    res[0] == 1,
		Limit:      p.Limit,
		Remaining:  res[1],
		ResetAfter: time.Duration(res[2]) * time.Millisecond,
		RetryAfter: time.Duration(res[3]) * time.Millisecond,
	}, nil
}

// RealTime implements ratelimit.RealTimeLimiter: decisions follow Redis's
// clock (unless Config.Now gave the store a test clock), and nothing but
// time refills a bucket.
func (s *Store) RealTime() bool { return s.now == nil }

// Key returns the Redis key holding key's bucket: Prefix + "v2:{" + key +
// "}", where v2 is the format of the value.
func (s *Store) Key(key string) string {
	return s.prefix + keyVersion + "{" + key + "}"
}
