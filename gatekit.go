// Package gatekit mounts, in one call, what an OpenAI-style API puts between
// every client and every handler: one documented JSON error envelope for
// every failure, request ids, panic recovery, strict JSON binding with
// validation, and per-route body limits.
//
//	e := echo.New()
//	if _, err := gatekit.Mount(e, gatekit.Config{}); err != nil {
//		log.Fatal(err)
//	}
//
// The pieces live in their own packages: errors (the catalog and the
// envelope), middleware (the Echo glue). Mount wires them in the order a
// request needs them.
package gatekit

import (
	"fmt"
	"log/slog"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// Gate is gatekit as mounted on one Echo instance.
type Gate struct {
	cfg     Config
	limits  routeLimits
	keys    middleware.KeyStore
	limiter ratelimit.Limiter
	metrics *middleware.Metrics
}

// Mount installs gatekit on e: the global error handler (cfg.Shape), the
// strict JSON binder and the validator, and the middleware chain request
// id -> panic recovery -> body limit -> authentication -> rate limits.
// Authentication and rate limits are installed when keys (or a KeyStore)
// are configured. Call it before registering routes; it fails only for an
// invalid cfg.
func Mount(e *echo.Echo, cfg Config) (*Gate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	g := &Gate{cfg: cfg, limits: newRouteLimits(cfg)}

	handler, err := middleware.ErrorHandlerConfig{Shape: cfg.Shape, Logger: cfg.Logger}.ToHandler()
	if err != nil {
		return nil, err
	}
	requestID, err := middleware.DefaultRequestIDConfig.ToMiddleware()
	if err != nil {
		return nil, err
	}
	bodyLimit, err := middleware.BodyLimitConfig{LimitFor: g.limits.limitFor}.ToMiddleware()
	if err != nil {
		return nil, fmt.Errorf("gatekit: %w", err)
	}
	chain := []echo.MiddlewareFunc{requestID, middleware.Recover(), bodyLimit}

	if cfg.Metrics != nil {
		if g.metrics, err = middleware.NewMetrics(cfg.Metrics, nil); err != nil {
			return nil, fmt.Errorf("gatekit: metrics: %w", err)
		}
	}
	g.keys = cfg.KeyStore
	if g.keys == nil && len(cfg.Keys) > 0 {
		if g.keys, err = keyStore(cfg); err != nil {
			return nil, err
		}
	}
	if g.keys != nil {
		auth, err := middleware.AuthConfig{Keys: g.keys, Headers: cfg.Auth.Headers, Skipper: authSkipper(cfg.Auth.Paths)}.ToMiddleware()
		if err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
		g.limiter = cfg.Limiter
		if g.limiter == nil {
			if g.limiter, err = ratelimit.NewMemory(&ratelimit.MemoryConfig{MaxKeys: cfg.RateLimit.MaxKeys}); err != nil {
				return nil, fmt.Errorf("gatekit: %w", err)
			}
		}
		fail := middleware.FailClosed
		if cfg.RateLimit.Fail == "open" {
			fail = middleware.FailOpen
		}
		limit, err := middleware.RateLimitConfig{
			Limiter:   g.limiter,
			LimitsFor: newLimitResolver(cfg).limitsFor,
			Fail:      fail,
			Metrics:   g.metrics,
			Logger:    cfg.Logger,
		}.ToMiddleware()
		if err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
		chain = append(chain, auth, limit)
	}

	e.HTTPErrorHandler = handler
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	e.Use(chain...)
	return g, nil
}

// Limiter returns the rate-limit store g uses, or nil when no keys are
// configured.
func (g *Gate) Limiter() ratelimit.Limiter { return g.limiter }

// Keys returns the key store g authenticates with, or nil when none is
// configured.
func (g *Gate) Keys() middleware.KeyStore { return g.keys }

// Config returns the configuration g runs with, defaults filled in.
func (g *Gate) Config() Config { return g.cfg }

// routeLimits answers the body limit of a request's route without
// allocating.
type routeLimits struct {
	routes   routeTable[int64]
	fallback int64
}

func newRouteLimits(cfg Config) routeLimits {
	rl := routeLimits{routes: routeTable[int64]{}, fallback: int64(cfg.BodyLimit)}
	for key, rc := range cfg.Routes {
		if rc.BodyLimit != 0 {
			rl.routes.put(key, int64(rc.BodyLimit))
		}
	}
	return rl
}

// limitFor is the body limit of c's route: its method's entry, else the
// any-method entry, else the service's. -1 means unlimited.
func (rl routeLimits) limitFor(c echo.Context) int64 {
	if l, ok := rl.routes.get(c.Request().Method, c.Path()); ok {
		return l
	}
	return rl.fallback
}
