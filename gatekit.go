// Package gatekit mounts, in one call, what an OpenAI-style API puts between
// every client and every handler: one documented JSON error envelope for
// every failure, request ids, panic recovery, strict JSON binding with
// validation, per-route body limits, API keys, idempotency, and admission:
// each request's rate, token, concurrency and budget limits reserved in
// one step before its handler and settled after it.
//
//	e := echo.New()
//	if _, err := gatekit.Mount(e, gatekit.Config{}); err != nil {
//		log.Fatal(err)
//	}
//
// The pieces live in their own packages: errors (the catalog and the
// envelope), ratelimit and budget (the meters), admission (one reservation
// over them, with its stores), middleware (the Echo glue). Mount wires them
// in the order a request needs them.
package gatekit

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/middleware"
)

// Gate is gatekit as mounted on one Echo instance.
type Gate struct {
	cfg      Config
	limits   routeLimits
	keys     middleware.KeyStore
	store    admission.Store
	inFlight *middleware.InFlight
	idem     idempotency.Store
	data     *durable.Store
	metrics  *middleware.Metrics
	limitsR  *limitResolver
	registry *keys.Registry
}

// Mount installs gatekit on e: the global error handler (cfg.Shape), the
// strict JSON binder and the validator, and the middleware chain request
// id -> panic recovery -> body limit -> authentication -> idempotency ->
// admission (rate limits, token limits, concurrency and budgets in one
// reservation). Authentication and admission are installed when keys (or
// a KeyStore) are configured. Call it before registering routes; it fails
// only for an invalid cfg.
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
	if cfg.Admission.TTL == 0 {
		cfg.Admission.TTL = admission.DefaultTTL
	}
	if cfg.Admission.DefaultOutputTokens == 0 {
		cfg.Admission.DefaultOutputTokens = middleware.DefaultOutputTokens
	}
	g := &Gate{cfg: cfg, limits: newRouteLimits(cfg), inFlight: middleware.NewInFlight()}
	loc, err := loadLocation(cfg.Budgets.TimeZone)
	if err != nil {
		return nil, err
	}
	var ledger budget.Ledger
	if cfg.Data.Dir != "" {
		g.data, err = durable.Open(cfg.Data.Dir, &durable.Config{
			FlushInterval: cfg.Data.FlushInterval, Location: loc, HoldTTL: cfg.Admission.TTL,
			MaxEntries: cfg.Idempotency.MaxEntries, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
		ledger = g.data.Ledger()
		if cfg.IdempotencyStore == nil {
			cfg.IdempotencyStore = g.data.Idempotency()
		}
	}
	built := false
	defer func() {
		if !built && g.data != nil {
			g.data.Close()
		}
	}()

	shapes := newRouteShapes(cfg)
	handler, err := middleware.ErrorHandlerConfig{Shape: cfg.Shape, ShapeFor: shapes.shapeFor, Logger: cfg.Logger,
		AnthropicOverloadedStatus: cfg.Catalog.AnthropicOverloadedStatus}.ToHandler()
	if err != nil {
		return nil, err
	}
	ridCfg := middleware.DefaultRequestIDConfig
	ridCfg.ShapeFor = shapes.shapeFor
	requestID, err := ridCfg.ToStep()
	if err != nil {
		return nil, err
	}
	bodyLimit, err := middleware.BodyLimitConfig{LimitFor: g.limits.limitFor}.ToStep()
	if err != nil {
		return nil, fmt.Errorf("gatekit: %w", err)
	}
	recovery, err := middleware.DefaultRecoverConfig.ToStep()
	if err != nil {
		return nil, err
	}
	chain := []middleware.Step{requestID, recovery, bodyLimit}

	if cfg.Metrics != nil {
		if g.metrics, err = middleware.NewMetrics(cfg.Metrics, nil); err != nil {
			return nil, fmt.Errorf("gatekit: metrics: %w", err)
		}
	}
	g.keys = cfg.KeyStore
	if g.keys == nil && cfg.RuntimeKeys.Store != nil {
		if g.registry, err = newRegistry(context.Background(), cfg); err != nil {
			return nil, err
		}
		defer func() {
			if !built {
				g.registry.Close()
			}
		}()
		g.keys = g.registry
	}
	if g.keys == nil && len(cfg.Keys) > 0 {
		if g.keys, err = keyStore(cfg); err != nil {
			return nil, err
		}
	}
	if g.keys != nil {
		auth, err := middleware.AuthConfig{Keys: g.keys, Headers: cfg.Auth.Headers, Skipper: authSkipper(cfg.Auth.Paths), Metrics: g.metrics, Logger: cfg.Logger}.ToStep()
		if err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
		g.store = cfg.Store
		if g.store == nil {
			if g.store, err = admission.NewMemory(&admission.MemoryConfig{TTL: cfg.Admission.TTL, Ledger: ledger, Location: loc}); err != nil {
				return nil, fmt.Errorf("gatekit: %w", err)
			}
		}
		g.limitsR = newLimitResolver(cfg)
		admit, err := middleware.AdmissionConfig{
			Store:               g.store,
			LimitsFor:           g.limitsR.limitsFor,
			BudgetsFor:          newBillable(cfg).scopesFor,
			Estimate:            (&middleware.ChatEstimator{CountTokens: cfg.CountTokens}).Estimate,
			Prices:              prices(cfg),
			DefaultOutputTokens: cfg.Admission.DefaultOutputTokens,
			InFlight:            g.inFlight,
			OnSettle:            cfg.OnSettle,
			Fail:                failMode(cfg.Admission.Fail),
			ShapeFor:            shapes.shapeFor,
			Metrics:             g.metrics,
			Logger:              cfg.Logger,
		}.ToStep()
		if err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
		chain = append(chain, auth)
		if len(cfg.Idempotency.Routes) > 0 {
			idem, err := g.idempotencyMiddleware(cfg)
			if err != nil {
				return nil, err
			}
			chain = append(chain, idem)
		}
		chain = append(chain, admit)
	}

	e.HTTPErrorHandler = handler
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	mw, err := middleware.Chain(chain...)
	if err != nil {
		return nil, fmt.Errorf("gatekit: %w", err)
	}
	e.Use(mw)
	built = true
	g.warnIfNotReady()
	return g, nil
}

// warnIfNotReady pings the stores at Mount and logs a warning for each one
// that does not answer: the service starts all the same, failing requests
// open or closed (Config.Admission.Fail) until the store answers.
func (g *Gate) warnIfNotReady() {
	for _, st := range g.pingers() {
		if err := st.p.Ping(context.Background()); err != nil {
			g.cfg.Logger.Warn("gatekit: "+st.name+" store not answering at start; requests that need it fail until it does",
				"fail", cmp.Or(g.cfg.Admission.Fail, "closed"), "error", err.Error())
		}
	}
}

// namedPinger is a store that can be pinged, and what it keeps.
type namedPinger struct {
	name string
	p    admission.Pinger
}

// pingers returns the stores of g that implement admission.Pinger.
func (g *Gate) pingers() []namedPinger {
	var out []namedPinger
	if p, ok := g.store.(admission.Pinger); ok {
		out = append(out, namedPinger{"admission", p})
	}
	if p, ok := g.idem.(admission.Pinger); ok {
		out = append(out, namedPinger{"idempotency", p})
	}
	return out
}

// NotReadyError is the error of Ready: the store that did not answer, and
// why.
type NotReadyError struct {
	// Store names the store: "admission" or "idempotency".
	Store string
	// Err is the store's error.
	Err error
}

// Error says which store did not answer, and why.
func (e *NotReadyError) Error() string {
	return "gatekit: " + e.Store + " store not answering: " + e.Err.Error()
}

// Unwrap returns the store's error.
func (e *NotReadyError) Unwrap() error { return e.Err }

// Ready reports whether g can serve requests as configured: nil when every
// store that offers a Ping (admission.Pinger, such as the Redis stores)
// answers it, within the store's own timeout, and otherwise a
// *NotReadyError for the first that does not. Stores in memory or on disk
// are always ready. Serve it as a readiness probe (the demo's /readyz);
// liveness is another matter: a gate whose store is down still answers,
// failing requests open or closed as configured.
func (g *Gate) Ready(ctx context.Context) error {
	for _, st := range g.pingers() {
		if err := st.p.Ping(ctx); err != nil {
			return &NotReadyError{Store: st.name, Err: err}
		}
	}
	return nil
}

// Close settles every request still in flight with what its handler has
// reported so far (see [Gate.SettleInFlight]), then writes what the
// durable store has queued and closes it. Call it after the HTTP server
// has shut down (http.Server.Shutdown, then Close if its grace period
// ran out). It is safe to call more than once.
func (g *Gate) Close() error {
	g.SettleInFlight()
	if g.registry != nil {
		g.registry.Close()
	}
	if g.data == nil {
		return nil
	}
	return g.data.Close()
}

// SettleInFlight settles every request still running with the usage its
// handler has reported so far ([middleware.ReportUsage] or
// [middleware.ReportProgress]): for a server whose shutdown grace period
// ended with requests still open, such as streams to clients that stopped
// reading. Their handlers, if they go on, are not settled again. It
// returns how many it settled.
func (g *Gate) SettleInFlight() int { return g.inFlight.SettleAll() }

// InFlight returns how many requests hold a reservation.
func (g *Gate) InFlight() int { return g.inFlight.Len() }

// idempotencyMiddleware builds the idempotency middleware of cfg, on its
// routes only: on cfg.IdempotencyStore when set, else joined to the
// admission store when it is an admission.OnceStore, else on a memory
// store.
func (g *Gate) idempotencyMiddleware(cfg Config) (middleware.Step, error) {
	g.idem = cfg.IdempotencyStore
	_, joined := g.store.(admission.OnceStore)
	joined = joined && g.idem == nil
	if g.idem == nil && !joined {
		var err error
		if g.idem, err = idempotency.NewMemory(&idempotency.MemoryConfig{MaxEntries: cfg.Idempotency.MaxEntries}); err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
	}
	routes := routeTable[bool]{}
	for _, r := range cfg.Idempotency.Routes {
		routes.put(r, true)
	}
	mw, err := middleware.IdempotencyConfig{
		Skipper: func(c echo.Context) bool {
			ok, _ := routes.get(c.Request().Method, c.Path())
			return !ok
		},
		Store:        g.idem,
		Joined:       joined,
		TTL:          cfg.Idempotency.TTL,
		Lease:        cfg.Idempotency.Lease,
		MaxBodyBytes: int(cfg.Idempotency.MaxBody),
		Fail:         failMode(cfg.Idempotency.Fail),
		Logger:       cfg.Logger,
	}.ToStep()
	if err != nil {
		return nil, fmt.Errorf("gatekit: %w", err)
	}
	return mw, nil
}

// Store returns the admission store g uses, or nil when no keys are
// configured.
func (g *Gate) Store() admission.Store { return g.store }

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

// routeShapes answers the error shape of a request's route without
// allocating.
type routeShapes struct {
	routes routeTable[apierrors.Shape]
	// prefixes holds each configured route's static path (the segments
	// before its first parameter or wildcard, no trailing slash; "" for
	// the root) and its shape, for requests that match no route.
	prefixes map[string]apierrors.Shape
	fallback apierrors.Shape
}

func newRouteShapes(cfg Config) routeShapes {
	rs := routeShapes{routes: routeTable[apierrors.Shape]{}, prefixes: map[string]apierrors.Shape{}, fallback: cfg.Shape}
	if rs.fallback == "" {
		rs.fallback = apierrors.ShapeOpenAI
	}
	keys := make([]string, 0, len(cfg.Routes))
	for key, rc := range cfg.Routes {
		if rc.Shape != "" {
			keys = append(keys, key)
		}
	}
	// Sorted, so that where methods disagree on a path an unmatched
	// request always gets the same shape: the any-method entry's, else
	// the first method's in alphabetical order.
	slices.Sort(keys)
	for _, key := range keys {
		shape := cfg.Routes[key].Shape
		rs.routes.put(key, shape)
		method, path, _ := parseRouteKey(key)
		prefix := staticPrefix(path)
		if _, seen := rs.prefixes[prefix]; !seen || method == "" {
			rs.prefixes[prefix] = shape
		}
	}
	return rs
}

// staticPrefix is a route pattern's path up to its first parameter or
// wildcard segment, without a trailing slash: "/v1/models/:id" gives
// "/v1/models", "/" gives "".
func staticPrefix(pattern string) string {
	if i := strings.IndexAny(pattern, ":*"); i >= 0 {
		pattern = pattern[:i]
	}
	return strings.TrimRight(pattern, "/")
}

// shapeFor is the shape of c's route: its method's entry, else the
// any-method entry, else the service's. A request that matches no route
// (Echo's 404 and 405) takes the shape of the configured route whose
// path is the longest prefix of its own at a segment boundary, so that
// GET /v1/messages and POST /v1/messages/count_tokens answer as
// POST /v1/messages does.
func (rs routeShapes) shapeFor(c echo.Context) apierrors.Shape {
	if s, ok := rs.routes.get(c.Request().Method, c.Path()); ok {
		return s
	}
	if len(rs.prefixes) != 0 && (c.Path() == "" || c.Get(echo.ContextKeyHeaderAllow) != nil) {
		for p := c.Request().URL.Path; ; {
			if s, ok := rs.prefixes[p]; ok {
				return s
			}
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return rs.fallback
}

// failMode reads a configuration's fail setting: "open", or closed.
func failMode(s string) middleware.FailMode {
	if s == "open" {
		return middleware.FailOpen
	}
	return middleware.FailClosed
}
