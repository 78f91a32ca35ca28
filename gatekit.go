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
)

// Gate is gatekit as mounted on one Echo instance.
type Gate struct {
	cfg    Config
	limits routeLimits
}

// Mount installs gatekit on e: the global error handler (cfg.Shape), the
// strict JSON binder and the validator, and the middleware chain request
// id -> panic recovery -> body limit. Call it before registering routes'
// own middleware; it fails only for an invalid cfg.
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
	e.HTTPErrorHandler = handler
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	e.Use(requestID, middleware.Recover(), bodyLimit)
	return g, nil
}

// Config returns the configuration g runs with, defaults filled in.
func (g *Gate) Config() Config { return g.cfg }

// routeLimits answers the body limit of a request's route without
// allocating: method -> route pattern -> limit, with "" for any method.
type routeLimits struct {
	byMethod map[string]map[string]int64
	fallback int64
}

func newRouteLimits(cfg Config) routeLimits {
	rl := routeLimits{byMethod: map[string]map[string]int64{}, fallback: int64(cfg.BodyLimit)}
	for key, rc := range cfg.Routes {
		if rc.BodyLimit == 0 {
			continue
		}
		method, path, _ := parseRouteKey(key)
		m := rl.byMethod[method]
		if m == nil {
			m = map[string]int64{}
			rl.byMethod[method] = m
		}
		m[path] = int64(rc.BodyLimit)
	}
	return rl
}

// limitFor is the body limit of c's route: its method's entry, else the
// any-method entry, else the service's. -1 means unlimited.
func (rl routeLimits) limitFor(c echo.Context) int64 {
	path := c.Path()
	if l, ok := rl.byMethod[c.Request().Method][path]; ok {
		return l
	}
	if l, ok := rl.byMethod[""][path]; ok {
		return l
	}
	return rl.fallback
}
