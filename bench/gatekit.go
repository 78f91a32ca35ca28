package bench

import (
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// discardLogger is the logger every gatekit scenario gets: nothing it
// would log is part of what is measured.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func setupBareEcho(_ *Suite, keys *Keys) (*Env, error) {
	return &Env{Handler: newEcho(), Keys: keys, Want: http.StatusOK}, nil
}

// setupWrapNoop measures what echo.WrapMiddleware itself costs, so that the
// peers' cost can be read with and without it.
func setupWrapNoop(_ *Suite, keys *Keys) (*Env, error) {
	noop := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { next.ServeHTTP(w, r) })
	}
	return &Env{Handler: newEcho(echo.WrapMiddleware(noop)), Keys: keys, Want: http.StatusOK}, nil
}

// setupGatekitBase mounts gatekit with no keys: what every request pays
// before authentication and rate limits.
func setupGatekitBase(_ *Suite, keys *Keys) (*Env, error) {
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{Logger: discardLogger()}); err != nil {
		return nil, err
	}
	addRoute(e)
	return &Env{Handler: e, Keys: keys, Want: http.StatusOK}, nil
}

// setupGatekitFull mounts gatekit as a service would: every key in
// Config.Keys, a per-route limit, the memory store sized for the keys, and,
// with metrics, Prometheus metrics on a registry of their own. With deny,
// the limit is one request a minute, which priming uses up, so every
// measured request is a 429.
func setupGatekitFull(deny, metrics bool) func(*Suite, *Keys) (*Env, error) {
	return func(_ *Suite, keys *Keys) (*Env, error) {
		rpm, want := int64(NeverDeny), http.StatusOK
		if deny {
			rpm, want = 1, http.StatusTooManyRequests
		}
		cfg := gatekit.Config{
			Keys: make([]gatekit.KeyConfig, len(keys.Raw)),
			Routes: map[string]gatekit.RouteConfig{
				"GET " + Route: {LimitConfig: gatekit.LimitConfig{RPM: rpm}},
			},
			RateLimit: gatekit.RateLimitConfig{MaxKeys: maxKeys(keys)},
			Logger:    discardLogger(),
		}
		if metrics {
			cfg.Metrics = prometheus.NewRegistry()
		}
		for i := range keys.Raw {
			cfg.Keys[i] = gatekit.KeyConfig{ID: keys.IDs[i], Key: keys.Raw[i]}
		}
		e := echo.New()
		if _, err := gatekit.Mount(e, cfg); err != nil {
			return nil, err
		}
		addRoute(e)
		return &Env{Handler: e, Keys: keys, Want: want}, nil
	}
}

// maxKeys is the memory store's cap for keys: room for every key, so that
// no run measures evictions. DefaultMaxKeys (100,000) would make the
// 100,000-key runs evict; and the cap is split evenly over 64 shards, so a
// small key set needs headroom of its own (16 keys under a cap of 32 put
// one key per shard, and two keys hashed to one shard evict each other).
func maxKeys(keys *Keys) int { return 2*len(keys.Raw) + 64*64 }

// staticKeys registers every key with a principal limited to limits.
func staticKeys(keys *Keys, limits middleware.Limits) (*middleware.StaticKeys, error) {
	sk := middleware.NewStaticKeys()
	for i, k := range keys.Raw {
		if err := sk.Add(k, &middleware.Principal{ID: keys.IDs[i], Account: keys.IDs[i], Limits: limits}); err != nil {
			return nil, err
		}
	}
	return sk, nil
}

// gatekitEcho is an Echo with gatekit's error handler and mws.
func gatekitEcho(mws ...echo.MiddlewareFunc) (*echo.Echo, error) {
	h, err := middleware.ErrorHandlerConfig{Logger: discardLogger()}.ToHandler()
	if err != nil {
		return nil, err
	}
	e := newEcho(mws...)
	e.HTTPErrorHandler = h
	return e, nil
}

// setupGatekitAuth is Auth alone, in a Chain as Mount runs it: the
// baseline that gatekit-auth-ratelimit is read against, since Auth is the
// only exported way to give a request a principal.
func setupGatekitAuth(_ *Suite, keys *Keys) (*Env, error) {
	sk, err := staticKeys(keys, middleware.Limits{})
	if err != nil {
		return nil, err
	}
	auth, err := middleware.AuthConfig{Keys: sk}.ToStep()
	if err != nil {
		return nil, err
	}
	chain, err := middleware.Chain(auth)
	if err != nil {
		return nil, err
	}
	e, err := gatekitEcho(chain)
	if err != nil {
		return nil, err
	}
	return &Env{Handler: e, Keys: keys, Want: http.StatusOK}, nil
}

// rateLimited returns Auth and RateLimit on limiter, with every principal
// limited to NeverDeny requests a minute.
func rateLimited(keys *Keys, limiter ratelimit.Limiter) ([]echo.MiddlewareFunc, error) {
	p := ratelimit.PerMinute(NeverDeny)
	sk, err := staticKeys(keys, middleware.Limits{Requests: &p})
	if err != nil {
		return nil, err
	}
	auth, err := middleware.AuthConfig{Keys: sk}.ToStep()
	if err != nil {
		return nil, err
	}
	limit, err := middleware.RateLimitConfig{Limiter: limiter, Logger: discardLogger(), StaticLimits: true}.ToStep()
	if err != nil {
		return nil, err
	}
	chain, err := middleware.Chain(auth, limit)
	if err != nil {
		return nil, err
	}
	return []echo.MiddlewareFunc{chain}, nil
}

func setupGatekitAuthRateLimit(_ *Suite, keys *Keys) (*Env, error) {
	m, err := ratelimit.NewMemory(&ratelimit.MemoryConfig{MaxKeys: maxKeys(keys)})
	if err != nil {
		return nil, err
	}
	mws, err := rateLimited(keys, m)
	if err != nil {
		return nil, err
	}
	e, err := gatekitEcho(mws...)
	if err != nil {
		return nil, err
	}
	return &Env{Handler: e, Keys: keys, Want: http.StatusOK}, nil
}
