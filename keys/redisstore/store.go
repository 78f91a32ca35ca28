// Package redisstore keeps gatekit's API keys on Redis, for a service of
// several instances: a keys.Store whose changes every instance's
// keys.Registry hears at once over pub/sub, and within a poll interval
// when a message is lost.
//
// Every key of the store carries the hash tag {keys} after the prefix, so
// that its scripts run on one node of a Redis Cluster.
package redisstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/internal/rediscall"
	"github.com/gatekit/gatekit/keys"
)

// Defaults of [Config].
const (
	DefaultPrefix  = "gatekit:"
	DefaultTimeout = 500 * time.Millisecond
)

// Config configures a Store; a nil *Config takes every default.
type Config struct {
	// Prefix starts every Redis key and the channel; default
	// DefaultPrefix. It must not contain '{' or '}'.
	Prefix string
	// Timeout bounds each call; default DefaultTimeout.
	Timeout time.Duration
}

// Store is a keys.Store on Redis. It is safe for concurrent use.
type Store struct {
	client  redis.UniversalClient
	base    string // prefix + "{keys}:"
	channel string
	timeout time.Duration
}

var _ keys.Store = (*Store)(nil)

// New returns a Store on client. It fails for a nil client or a prefix
// with braces; it does not contact Redis.
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
	if c.Timeout < 0 {
		return nil, errors.New("redisstore: negative Timeout")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return &Store{client: client, base: prefix + "{keys}:", channel: prefix + "keys:changes", timeout: c.Timeout}, nil
}

func (s *Store) recKey(id string) string     { return s.base + "rec:" + id }
func (s *Store) digKey(d keys.Digest) string { return s.base + "dig:" + d.String() }
func (s *Store) acctKey(id string) string    { return s.base + "acct:" + id }
func (s *Store) idsKey() string              { return s.base + "ids" }
func (s *Store) versionKey() string          { return s.base + "version" }

func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Get implements keys.Store.
func (s *Store) Get(ctx context.Context, id string) (keys.Record, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	return s.get(ctx, id)
}

func (s *Store) get(ctx context.Context, id string) (keys.Record, bool, error) {
	v, err := s.client.Get(ctx, s.recKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return keys.Record{}, false, nil
	}
	if err != nil {
		return keys.Record{}, false, fmt.Errorf("redisstore: %w", err)
	}
	var r keys.Record
	if err := json.Unmarshal(v, &r); err != nil {
		return keys.Record{}, false, fmt.Errorf("redisstore: key %q: %w", id, err)
	}
	return r, true, nil
}

// Find implements keys.Store.
func (s *Store) Find(ctx context.Context, d keys.Digest) (keys.Record, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	id, err := s.client.Get(ctx, s.digKey(d)).Result()
	if errors.Is(err, redis.Nil) {
		return keys.Record{}, false, nil
	}
	if err != nil {
		return keys.Record{}, false, fmt.Errorf("redisstore: %w", err)
	}
	return s.get(ctx, id)
}

// List implements keys.Store.
func (s *Store) List(ctx context.Context, after string, limit int) ([]keys.Record, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	start := "-"
	if after != "" {
		start = "(" + after
	}
	ids, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.idsKey(), Start: start, Stop: "+", ByLex: true, Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = s.recKey(id)
	}
	vals, err := s.client.MGet(ctx, names...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	out := make([]keys.Record, 0, len(vals))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var r keys.Record
		if err := json.Unmarshal([]byte(str), &r); err != nil {
			return nil, fmt.Errorf("redisstore: key %q: %w", ids[i], err)
		}
		out = append(out, r)
	}
	return out, nil
}

// putScript writes a record if its stored rev is ARGV[2], moving its
// digest index from the old digests (KEYS[4..3+n]) to the new ones, bumps
// the version and announces the change.
var putScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local prev = tonumber(ARGV[2])
if cur then
  if cjson.decode(cur)['rev'] ~= prev then return {0} end
elseif prev ~= 0 then
  return {0}
end
local n = tonumber(ARGV[3])
local id = ARGV[4]
for i = 4 + n, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= id then return {0} end
end
for i = 4, 3 + n do redis.call('DEL', KEYS[i]) end
for i = 4 + n, #KEYS do redis.call('SET', KEYS[i], id) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, id)
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[5], v .. '|' .. ARGV[6])
return {1, v}
`)

// putAccountScript writes an account if its stored rev is ARGV[2], bumps
// the version and announces the change.
var putAccountScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local prev = tonumber(ARGV[2])
if cur then
  if cjson.decode(cur)['rev'] ~= prev then return {0} end
elseif prev ~= 0 then
  return {0}
end
redis.call('SET', KEYS[1], ARGV[1])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], v .. '|' .. ARGV[4])
return {1, v}
`)

// Put implements keys.Store.
func (s *Store) Put(ctx context.Context, r keys.Record, prevRev int64) (keys.Change, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	old, exists, err := s.get(ctx, r.ID)
	if err != nil {
		return keys.Change{}, err
	}
	if (exists && old.Rev != prevRev) || (!exists && prevRev != 0) {
		return keys.Change{}, keys.ErrConflict
	}
	r.Rev = prevRev + 1
	ch := keys.Change{KeyID: r.ID, Accounts: []string{r.Account}}
	if exists && old.Account != r.Account {
		ch.Accounts = append(ch.Accounts, old.Account)
	}
	names := []string{s.recKey(r.ID), s.idsKey(), s.versionKey()}
	for _, sec := range old.Secrets {
		names = append(names, s.digKey(sec.Digest))
		ch.Digests = append(ch.Digests, sec.Digest)
	}
	for _, sec := range r.Secrets {
		names = append(names, s.digKey(sec.Digest))
		if !contains(ch.Digests, sec.Digest) {
			ch.Digests = append(ch.Digests, sec.Digest)
		}
	}
	body, err := json.Marshal(r)
	if err != nil {
		return keys.Change{}, fmt.Errorf("redisstore: %w", err)
	}
	msg, err := changeJSON(ch)
	if err != nil {
		return keys.Change{}, err
	}
	res, err := putScript.Run(ctx, s.client, names, body, prevRev, len(old.Secrets), r.ID, s.channel, msg).Int64Slice()
	if err != nil {
		return keys.Change{}, fmt.Errorf("redisstore: %w", err)
	}
	if res[0] == 0 {
		return keys.Change{}, keys.ErrConflict
	}
	ch.Version = res[1]
	return ch, nil
}

// GetAccount implements keys.Store.
func (s *Store) GetAccount(ctx context.Context, id string) (keys.Account, bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	v, err := s.client.Get(ctx, s.acctKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return keys.Account{}, false, nil
	}
	if err != nil {
		return keys.Account{}, false, fmt.Errorf("redisstore: %w", err)
	}
	var a keys.Account
	if err := json.Unmarshal(v, &a); err != nil {
		return keys.Account{}, false, fmt.Errorf("redisstore: account %q: %w", id, err)
	}
	return a, true, nil
}

// PutAccount implements keys.Store.
func (s *Store) PutAccount(ctx context.Context, a keys.Account, prevRev int64) (keys.Change, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	a.Rev = prevRev + 1
	body, err := json.Marshal(a)
	if err != nil {
		return keys.Change{}, fmt.Errorf("redisstore: %w", err)
	}
	ch := keys.Change{Accounts: []string{a.ID}}
	msg, err := changeJSON(ch)
	if err != nil {
		return keys.Change{}, err
	}
	res, err := putAccountScript.Run(ctx, s.client, []string{s.acctKey(a.ID), s.versionKey()}, body, prevRev, s.channel, msg).Int64Slice()
	if err != nil {
		return keys.Change{}, fmt.Errorf("redisstore: %w", err)
	}
	if res[0] == 0 {
		return keys.Change{}, keys.ErrConflict
	}
	ch.Version = res[1]
	return ch, nil
}

// Version implements keys.Store.
func (s *Store) Version(ctx context.Context) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	v, err := s.client.Get(ctx, s.versionKey()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: %w", err)
	}
	return v, nil
}

// Watch implements keys.Store: it subscribes to the store's channel and
// calls fn from a goroutine of its own for each message, until ctx ends.
// go-redis resubscribes after a dropped connection; what was published
// meanwhile is lost, which the Registry's poll of Version catches.
func (s *Store) Watch(ctx context.Context, fn func(keys.Change)) error {
	sub := s.client.Subscribe(ctx, s.channel)
	rctx, cancel := s.call(ctx)
	_, err := sub.Receive(rctx)
	cancel()
	if err != nil {
		sub.Close()
		return fmt.Errorf("redisstore: subscribing: %w", err)
	}
	msgs := sub.Channel()
	go func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				if ch, err := parseChange(m.Payload); err == nil {
					fn(ch)
				}
			}
		}
	}()
	return nil
}

// changeJSON writes ch without its version, which the script puts in
// front.
func changeJSON(ch keys.Change) (string, error) {
	ch.Hex = make([]string, len(ch.Digests))
	for i, d := range ch.Digests {
		ch.Hex[i] = d.String()
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return "", fmt.Errorf("redisstore: %w", err)
	}
	return string(b), nil
}

// parseChange reads "VERSION|JSON".
func parseChange(payload string) (keys.Change, error) {
	vs, body, ok := strings.Cut(payload, "|")
	if !ok {
		return keys.Change{}, errors.New("redisstore: malformed change")
	}
	var ch keys.Change
	if err := json.Unmarshal([]byte(body), &ch); err != nil {
		return keys.Change{}, fmt.Errorf("redisstore: %w", err)
	}
	v, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return keys.Change{}, fmt.Errorf("redisstore: %w", err)
	}
	ch.Version = v
	for _, h := range ch.Hex {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != len(keys.Digest{}) {
			return keys.Change{}, errors.New("redisstore: malformed digest in a change")
		}
		ch.Digests = append(ch.Digests, keys.Digest(b))
	}
	ch.Hex = nil
	return ch, nil
}

func contains(ds []keys.Digest, d keys.Digest) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}
