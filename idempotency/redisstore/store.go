// Package redisstore is an idempotency.Store on Redis, for several instances
// of a service that must agree on which requests already ran.
//
// Each operation is one Lua script run atomically on the Redis server: one
// round trip, no lock. An entry is one Redis hash holding the state, the
// fingerprint, the marker's token and the encoded record (a compact binary
// form: bodies are any bytes). Every entry carries a Redis expiry, the lease
// while in progress and the retention once completed, so entries disappear
// on their own and, by default, expire by Redis's clock, which every instance
// shares. Keys are hashed and hash-tagged, so the store works on Redis
// Cluster as well as on a single server or Sentinel, whatever bytes the
// idempotency keys hold.
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/internal/idemrecord"
	"github.com/gatekit/gatekit/internal/rediscall"
)

// Defaults for Config.
const (
	// DefaultPrefix starts every key when Config.Prefix is empty.
	DefaultPrefix = "gatekit:idem:"
	// DefaultTimeout bounds each operation when Config.Timeout is 0.
	DefaultTimeout = rediscall.DefaultTimeout
)

//go:embed idempotency.lua
var scriptLua string

// Config configures a Store. The zero value (or a nil pointer) gives the
// defaults.
type Config struct {
	// Prefix starts every Redis key; default DefaultPrefix. An entry's key
	// is Prefix + "{" + hash + "}", where hash is the unpadded base64url
	// SHA-256 of the idempotency key (see Store.Key). It must not contain
	// '{' or '}', which would change the key's hash slot on Redis Cluster.
	Prefix string
	// Timeout bounds each operation, round trip included; default
	// DefaultTimeout. An operation that takes longer returns an error
	// wrapping context.DeadlineExceeded rather than keep the request
	// waiting.
	Timeout time.Duration
	// Unbatched sends each operation as a command of its own. By default,
	// operations made at the same time go together through the client's
	// asynchronous autopipeliner (redis.UniversalClient.AsyncAutoPipeline,
	// tuned by redis.Options.AutoPipelineOptions): one write and one read
	// on one connection for many operations. Each operation is still one
	// script run, and waits for its batch no longer than its Timeout. A
	// redis.Ring has no autopipeliner and is always unbatched.
	Unbatched bool
	// Now, if set, is the clock entries expire by, to the millisecond. The
	// default, nil, leaves expiry to Redis alone (PEXPIRE), on the Redis
	// server's clock, which every instance shares. With Now set, each entry
	// also records its expiry instant by this clock, and the scripts treat
	// an entry past it as gone, while Redis still drops it after the same
	// lease or retention of its own time. Set Now in tests (it is how the
	// conformance suite's fake clock reaches Redis), or only when every
	// instance's clock is closely synchronised.
	//
	// Now, or time.Now, also gives CreatedAt to records completed without
	// one.
	Now func() time.Time
}

// Store is an idempotency.Store whose entries live in Redis. It is safe for
// concurrent use, and any number of Stores, in any number of processes, may
// share entries through one Redis deployment (with the same Prefix).
type Store struct {
	call   rediscall.Caller
	script *rediscall.Script
	prefix string
	now    func() time.Time
	// Tokens are this Store's random prefix and a counter: unique across
	// processes without a random draw per request.
	tokenPrefix string
	tokens      atomic.Uint64
}

var _ idempotency.Store = (*Store)(nil)

// Ping reports whether Redis (on a Cluster, every master) answers PING
// within the Timeout, for readiness checks (it is an admission.Pinger).
func (s *Store) Ping(ctx context.Context) error { return s.call.Ping(ctx) }

// New returns a Store that keeps its entries in client, configured by cfg;
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
		call:        call,
		script:      rediscall.NewScript(scriptLua),
		prefix:      prefix,
		now:         c.Now,
		tokenPrefix: rand.Text()[:16] + ".",
	}, nil
}

// Key returns the Redis key holding key's entry.
func (s *Store) Key(key string) string {
	sum := sha256.Sum256([]byte(key))
	var b [43]byte // base64 of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(b[:], sum[:])
	return s.prefix + "{" + string(b[:]) + "}"
}

// Begin implements idempotency.Store.Begin.
func (s *Store) Begin(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Begin, error) {
	ms, ok := millis(lease)
	if !ok {
		return idempotency.Begin{}, idempotency.ErrInvalidTTL
	}
	now, exp := s.expiry(ms)
	token := s.tokenPrefix + strconv.FormatUint(s.tokens.Add(1), 36)
	res, err := s.run(ctx, "begin", key, now, fingerprint, token, ms, exp)
	if err != nil {
		return idempotency.Begin{}, err
	}
	reply, ok := res.([]any)
	if !ok || len(reply) == 0 {
		return idempotency.Begin{}, fmt.Errorf("redisstore: begin: unexpected reply %v", res)
	}
	code, _ := reply[0].(int64)
	switch st := idempotency.State(code); {
	case code == int64(idempotency.Started):
		return idempotency.Begin{State: st, Token: token}, nil
	case code == int64(idempotency.InProgress), code == int64(idempotency.Mismatch):
		return idempotency.Begin{State: st}, nil
	case code == int64(idempotency.Completed) && len(reply) == 2:
		blob, _ := reply[1].(string)
		rec, err := idemrecord.Decode(blob, fingerprint)
		if err != nil {
			return idempotency.Begin{}, fmt.Errorf("redisstore: begin: %s: %w", s.Key(key), err)
		}
		return idempotency.Begin{State: st, Record: rec}, nil
	}
	return idempotency.Begin{}, fmt.Errorf("redisstore: begin: unexpected reply %v", res)
}

// Complete implements idempotency.Store.Complete.
func (s *Store) Complete(ctx context.Context, key, token string, rec idempotency.Record, ttl time.Duration) error {
	ms, ok := millis(ttl)
	if !ok {
		return idempotency.ErrInvalidTTL
	}
	now, exp := s.expiry(ms)
	if rec.CreatedAt.IsZero() {
		if s.now != nil {
			rec.CreatedAt = s.now()
		} else {
			rec.CreatedAt = time.Now()
		}
	}
	blob := idemrecord.Append(make([]byte, 0, idemrecord.Size(&rec)), &rec)
	return s.finish(ctx, "complete", key, now, token, blob, ms, exp)
}

// Abort implements idempotency.Store.Abort.
func (s *Store) Abort(ctx context.Context, key, token string) error {
	now, _ := s.expiry(0)
	return s.finish(ctx, "abort", key, now, token)
}

// finish runs complete or abort, which answer 1 when done and 0 when the
// lease is lost.
func (s *Store) finish(ctx context.Context, op, key string, now int64, args ...any) error {
	res, err := s.run(ctx, op, key, now, args...)
	if err != nil {
		return err
	}
	switch res {
	case int64(1):
		return nil
	case int64(0):
		return idempotency.ErrLeaseLost
	}
	return fmt.Errorf("redisstore: %s: unexpected reply %v", op, res)
}

// expiry returns the time now and the expiry of an entry living ms from
// now, both in ms by s.now, or -1 and -1 when Redis's expiry alone decides.
func (s *Store) expiry(ms int64) (now, exp int64) {
	if s.now == nil {
		return -1, -1
	}
	now = s.now().UnixMilli()
	return now, now + ms
}

// run runs the script for op on key's entry and returns by the Timeout at
// the latest.
func (s *Store) run(ctx context.Context, op, key string, now int64, args ...any) (any, error) {
	return s.call.Run(ctx, op, s.script, []string{s.Key(key)}, append([]any{op, now}, args...)...)
}

// millis returns d in whole milliseconds, rounded up, and whether d is
// positive.
func millis(d time.Duration) (int64, bool) {
	if d <= 0 {
		return 0, false
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms, true
}
