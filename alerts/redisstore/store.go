// Package redisstore keeps the alerts ledger on Redis, so that an alert
// fires once across every instance and a pending one survives any
// instance's restart. Its keys carry the hash tag {alerts} after the
// prefix, so its script runs on one Redis Cluster node.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/alerts"
	"github.com/gatekit/gatekit/internal/rediscall"
)

// DefaultPrefix starts every key when Config.Prefix is empty.
const DefaultPrefix = "gatekit:"

// Config configures a Store; a nil *Config takes every default.
type Config struct {
	// Prefix starts every Redis key; default DefaultPrefix. It must not
	// contain '{' or '}'.
	Prefix string
	// Timeout bounds each call; default 1s.
	Timeout time.Duration
}

// Store is an alerts.Ledger on Redis. It is safe for concurrent use.
type Store struct {
	client  redis.UniversalClient
	base    string
	timeout time.Duration
}

var _ alerts.Ledger = (*Store)(nil)

// New returns a Store on client; it does not contact Redis.
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
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	return &Store{client: client, base: prefix + "{alerts}:", timeout: c.Timeout}, nil
}

// claimScript sets the claim key if absent (expiring a day after the
// period ends, ARGV[2] seconds; 0 for never) and adds the alert to the
// pending hash.
var claimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], '1')
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
`)

// Claim implements alerts.Ledger.
func (s *Store) Claim(ctx context.Context, a alerts.Alert) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	body, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("redisstore: %w", err)
	}
	ttl := int64(0)
	if a.PeriodEnd != nil {
		ttl = max(int64(a.PeriodEnd.Add(24*time.Hour).Sub(a.Time)/time.Second), 1)
	}
	n, err := claimScript.Run(ctx, s.client, []string{s.base + "claimed:" + a.ID, s.base + "pending"}, a.ID, ttl, body).Int()
	if err != nil {
		return false, fmt.Errorf("redisstore: %w", err)
	}
	return n == 1, nil
}

// Pending implements alerts.Ledger.
func (s *Store) Pending(ctx context.Context) ([]alerts.Alert, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	m, err := s.client.HGetAll(ctx, s.base+"pending").Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	out := make([]alerts.Alert, 0, len(m))
	for id, v := range m {
		var a alerts.Alert
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			return nil, fmt.Errorf("redisstore: alert %s: %w", id, err)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b alerts.Alert) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// Delivered implements alerts.Ledger.
func (s *Store) Delivered(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.HDel(ctx, s.base+"pending", id).Err(); err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	return nil
}
