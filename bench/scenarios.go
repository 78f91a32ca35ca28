package bench

import (
	"errors"
	"fmt"
	"sync"
)

// Scenario is one contestant: how to set it up for a set of keys.
type Scenario struct {
	// Name is the sub-benchmark name (no spaces).
	Name string
	// Label is what the table calls it.
	Label string
	// Redis marks scenarios that need a redis-server.
	Redis bool
	// Header is a header every response of the scenario carries ("" when
	// it sets none); the tests check it is there.
	Header string
	// Setup builds the scenario for keys.
	Setup func(s *Suite, keys *Keys) (*Env, error)
}

// Scenarios are every contestant, in the table's order.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "bare-echo", Label: "bare Echo (no middleware)", Setup: setupBareEcho},
		{Name: "echo-wrap-noop", Label: "Echo + WrapMiddleware(pass-through): the net/http glue alone", Setup: setupWrapNoop},
		{Name: "gatekit-base", Label: "gatekit Mount without keys (request id, recover, body limit, error handler)", Header: "X-Request-Id", Setup: setupGatekitBase},
		{Name: "gatekit-full", Label: "gatekit full stack (Mount: rpm, tpm, max_parallel, budget), allowed", Header: "X-Ratelimit-Remaining-Requests", Setup: setupGatekitFull(false, false)},
		{Name: "gatekit-full-429", Label: "gatekit full stack (Mount), every request 429", Header: "Retry-After", Setup: setupGatekitFull(true, false)},
		{Name: "gatekit-full-metrics", Label: "the same with Prometheus metrics, allowed", Header: "X-Ratelimit-Remaining-Requests", Setup: setupGatekitFull(false, true)},
		{Name: "gatekit-full-metrics-429", Label: "the same with Prometheus metrics, every request 429", Header: "Retry-After", Setup: setupGatekitFull(true, true)},
		{Name: "gatekit-auth", Label: "gatekit Auth (StaticKeys) alone", Setup: setupGatekitAuth},
		{Name: "gatekit-auth-admission", Label: "gatekit Auth + Admission (admission.Memory, requests limit only)", Header: "X-Ratelimit-Remaining-Requests", Setup: setupGatekitAuthAdmission},
		{Name: "echo-ratelimiter", Label: "Echo middleware.RateLimiter (memory, no headers)", Setup: setupEchoRateLimiter},
		{Name: "httprate", Label: "go-chi/httprate (WrapMiddleware)", Header: "X-Ratelimit-Remaining", Setup: setupHTTPRate},
		{Name: "go-limiter", Label: "sethvargo/go-limiter memorystore (httplimit, WrapMiddleware)", Header: "X-Ratelimit-Remaining", Setup: setupGoLimiter},
		{Name: "ulule", Label: "ulule/limiter memory (stdlib, WrapMiddleware)", Header: "X-Ratelimit-Remaining", Setup: setupUlule},

		{Name: "redis-gatekit", Label: "gatekit Auth + Admission (admission/redisstore, requests limit only)", Redis: true, Header: "X-Ratelimit-Remaining-Requests", Setup: setupRedisGatekit},
		{Name: "redis-redis_rate", Label: "redis_rate v10 (Echo glue with headers)", Redis: true, Header: "X-Ratelimit-Remaining", Setup: setupRedisRate},
		{Name: "redis-redis_rate-autopipeline", Label: "redis_rate v10 on go-redis's autopipeliner (Echo glue with headers)", Redis: true, Header: "X-Ratelimit-Remaining", Setup: setupRedisRateAutoPipeline},
		{Name: "redis-store-gatekit", Label: "admission/redisstore Reserve + Settle (store calls only)", Redis: true, Setup: setupRedisStoreGatekit},
		{Name: "redis-store-redis_rate", Label: "redis_rate.Limiter.Allow (store call only)", Redis: true, Setup: setupRedisStoreRate},
	}
}

// ErrNoRedis is returned by Suite.Redis when redis-server is not installed
// and CI is not "true": Redis scenarios are then skipped.
var ErrNoRedis = errors.New("redis-server not found (install it, e.g. apt-get install redis-server); Redis scenarios skipped")

// Suite holds what scenarios share: the key sets, built once per count, and
// the redis-server, started on first use. Close it when done.
type Suite struct {
	mu      sync.Mutex
	keys    map[int]*Keys
	redis   *RedisServer
	redisOK bool
	redErr  error
}

// NewSuite returns an empty Suite.
func NewSuite() *Suite { return &Suite{keys: map[int]*Keys{}} }

// Keys returns the set of n keys, building it on first use.
func (s *Suite) Keys(n int) *Keys {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[n]
	if k == nil {
		k = NewKeys(n)
		s.keys[n] = k
	}
	return k
}

// Redis returns the suite's redis-server, starting it on first use. It
// returns ErrNoRedis when redis-server is missing outside CI.
func (s *Suite) Redis() (*RedisServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.redisOK && s.redErr == nil {
		s.redis, s.redErr = StartRedis()
		s.redisOK = s.redErr == nil
	}
	return s.redis, s.redErr
}

// Close stops the redis-server, if one was started.
func (s *Suite) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.redis != nil {
		s.redis.Close()
		s.redis = nil
	}
	s.redisOK, s.redErr = false, nil
}

// Setup builds sc for n keys and primes it.
func (s *Suite) Setup(sc Scenario, n int) (*Env, error) {
	env, err := sc.Setup(s, s.Keys(n))
	if err != nil {
		return nil, err
	}
	if err := env.Prime(); err != nil {
		env.close()
		return nil, fmt.Errorf("%s: priming: %w", sc.Name, err)
	}
	return env, nil
}

func (env *Env) close() {
	if env != nil && env.Close != nil {
		env.Close()
	}
}

// Release releases what env holds.
func (env *Env) Release() { env.close() }
