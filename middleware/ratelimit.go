package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/ratelimit"
)

// Limits are the rate limits of a route, a tier or a principal. A nil field
// inherits from the next level (principal, then tier, then route); a
// request with neither limit set is not limited.
type Limits struct {
	// Requests limits requests (for example 60 per minute: RPM).
	Requests *ratelimit.Policy
	// Tokens limits tokens reported with ReportUsage (TPM): checked before
	// the handler, charged with the actual usage after it.
	Tokens *ratelimit.Policy
}

// Or returns l with every nil field taken from fallback.
func (l Limits) Or(fallback Limits) Limits {
	if l.Requests == nil {
		l.Requests = fallback.Requests
	}
	if l.Tokens == nil {
		l.Tokens = fallback.Tokens
	}
	return l
}

// FailMode is what a rate limit does when its store cannot answer.
type FailMode int

const (
	// FailClosed answers 503 service_unavailable (retryable) while the
	// store is unreachable: no request goes unlimited.
	FailClosed FailMode = iota
	// FailOpen lets requests through unlimited while the store is
	// unreachable: availability over enforcement.
	FailOpen
)

// RateLimitConfig configures [RateLimitWithConfig].
type RateLimitConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// Limiter decides. Required. Its own timeout bounds how long a
	// decision may take (the memory store never waits).
	Limiter ratelimit.Limiter
	// LimitsFor returns the limits of a request made by p (never nil).
	// Default: p.Limits.
	LimitsFor func(c echo.Context, p *Principal) Limits
	// StaticLimits promises that LimitsFor's answer depends only on the
	// principal and the route (method and pattern) and never changes: it is
	// then asked once per principal and route, and the answer kept.
	// Default: false, LimitsFor is asked on every request. Mount sets it
	// for its configuration's limits.
	StaticLimits bool
	// Fail is what happens when the Limiter fails. Default: FailClosed.
	Fail FailMode
	// Metrics, when set, counts decisions, store errors and store latency.
	Metrics *Metrics
	// Logger receives store failures. Default: slog.Default().
	Logger *slog.Logger
}

// RateLimitWithConfig limits each authenticated principal's requests and
// tokens per route. Before the handler it takes one request and checks
// that the token bucket is not in debt; after it, it charges the tokens the
// handler reported with [ReportUsage]. Every limited response carries
// x-ratelimit-* and RateLimit headers; a denial is 429
// rate_limit_exceeded or tokens_exceeded with Retry-After rounded up.
// Requests without a principal (Auth did not run) are not limited: limits
// are keyed by principal, never by anything a client can spoof.
func RateLimitWithConfig(cfg RateLimitConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg; it fails without a
// Limiter.
func (cfg RateLimitConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg RateLimitConfig) ToStep() (Step, error) {
	if cfg.Limiter == nil {
		return nil, fmt.Errorf("rate limit: a Limiter is required")
	}
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	if cfg.LimitsFor == nil {
		cfg.LimitsFor = func(_ echo.Context, p *Principal) Limits { return p.Limits }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rl := &rateLimiter{cfg: cfg}
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper(c) {
			return next(c)
		}
		return rl.serve(c, next)
	}, nil
}

type rateLimiter struct {
	cfg RateLimitConfig

	mu     sync.RWMutex
	routes map[*Principal]map[routeOf]*routeEntry
	cached int

	failures storeFailureLog
}

// routeEntry is what the middleware keeps of a principal on a route: its
// bucket keys and, with StaticLimits, its limits and their policy-only
// header values.
type routeEntry struct {
	keys    [2]string
	limits  Limits
	headers *ratelimit.PolicyHeaders
}

// routeOf names a route by method and pattern.
type routeOf struct{ method, route string }

// maxCachedKeys bounds the cache of bucket keys (principals x routes):
// about 40 MB at most.
const maxCachedKeys = 1 << 18

// entryFor returns the bucket keys (and, with StaticLimits, the limits)
// of a principal on a route, made once and then cached by principal, so a
// request allocates none and finds them with a pointer's hash.
func (rl *rateLimiter) entryFor(c echo.Context, p *Principal, method, route string) *routeEntry {
	r := routeOf{method, route}
	rl.mu.RLock()
	e, ok := rl.routes[p][r]
	rl.mu.RUnlock()
	if ok {
		return e
	}
	e = &routeEntry{keys: [2]string{LimitKey(p.ID, method, route, false), LimitKey(p.ID, method, route, true)}}
	if rl.cfg.StaticLimits {
		e.limits = rl.cfg.LimitsFor(c, p)
		e.headers = ratelimit.NewPolicyHeaders(e.limits.Requests, e.limits.Tokens)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.cached >= maxCachedKeys {
		return e
	}
	if rl.routes == nil {
		rl.routes = map[*Principal]map[routeOf]*routeEntry{}
	}
	routes := rl.routes[p]
	if routes == nil {
		routes = map[routeOf]*routeEntry{}
		rl.routes[p] = routes
	}
	if old, dup := routes[r]; dup {
		return old
	}
	routes[r] = e
	rl.cached++
	return e
}

// serve runs one request through its limits.
func (rl *rateLimiter) serve(c echo.Context, next echo.HandlerFunc) error {
	p := GetPrincipal(c)
	if p == nil {
		return next(c)
	}
	route := c.Path()
	method := c.Request().Method
	entry := rl.entryFor(c, p, method, route)
	lim := entry.limits
	if !rl.cfg.StaticLimits {
		lim = rl.cfg.LimitsFor(c, p)
	}
	if lim.Requests == nil && lim.Tokens == nil {
		return next(c)
	}
	ctx := c.Request().Context()
	keys := entry.keys

	var reqOut, tokOut ratelimit.Outcome
	var reqPtr, tokPtr *ratelimit.Outcome
	if lim.Requests != nil {
		d, ok, err := rl.decide(ctx, method, route, "requests", keys[0], *lim.Requests, 1)
		if err != nil {
			return err
		}
		if ok {
			reqOut, reqPtr = ratelimit.Outcome{Policy: *lim.Requests, Decision: d}, &reqOut
		}
	}
	tokKey := keys[1]
	if lim.Tokens != nil {
		d, ok, err := rl.decide(ctx, method, route, "tokens", tokKey, *lim.Tokens, 0)
		if err != nil {
			return err
		}
		if ok {
			tokOut, tokPtr = ratelimit.Outcome{Policy: *lim.Tokens, Decision: d}, &tokOut
		}
	}
	var scratch []string
	if cc, ok := c.(*chainContext); ok {
		scratch = cc.state.headers[:]
	}
	if entry.headers != nil {
		entry.headers.Set(c.Response().Header(), reqPtr, tokPtr, scratch)
	} else {
		ratelimit.SetHeadersScratch(c.Response().Header(), reqPtr, tokPtr, scratch)
	}
	denied := (reqPtr != nil && !reqOut.Decision.Allowed) || (tokPtr != nil && !tokOut.Decision.Allowed)
	if denied && rl.cfg.Metrics != nil {
		rl.cfg.Metrics.deniedPrincipal(p.ID)
	}
	if reqPtr != nil && !reqOut.Decision.Allowed {
		return apierrors.RateLimitExceeded(denialMessage(p, "requests", reqOut), reqOut.Decision.RetryAfter)
	}
	if tokPtr != nil && !tokOut.Decision.Allowed {
		return apierrors.TokensExceeded(denialMessage(p, "tokens", tokOut), tokOut.Decision.RetryAfter)
	}

	err := next(c)

	if lim.Tokens != nil {
		if u, ok := GetUsage(c); ok && u.TotalTokens() > 0 {
			// The client may be gone; the tokens were spent all the same.
			charge := context.WithoutCancel(ctx)
			if _, cerr := rl.charge(charge, method, route, tokKey, *lim.Tokens, u.TotalTokens()); cerr != nil {
				rl.cfg.Logger.LogAttrs(ctx, slog.LevelError, "rate limit: charging tokens failed",
					slog.String("request_id", GetRequestID(c)), slog.String("principal", p.ID),
					slog.Int64("tokens", u.TotalTokens()), slog.String("error", cerr.Error()))
			}
		}
	}
	return err
}

// decide asks the limiter. On store failure it reports ok == false to fail
// open, or returns a 503 to fail closed.
func (rl *rateLimiter) decide(ctx context.Context, method, route, limit, key string, p ratelimit.Policy, n int64) (d ratelimit.Decision, ok bool, err error) {
	m := rl.cfg.Metrics
	var start time.Time
	if m != nil {
		start = time.Now()
	}
	d, err = rl.cfg.Limiter.Allow(ctx, key, p, n)
	if m != nil {
		m.observeStore(time.Since(start), err)
	}
	if err != nil {
		if m != nil {
			m.decision(method, route, limit, outcomeError)
		}
		rl.failures.warn(ctx, rl.cfg.Logger, "rate limit: store failed",
			slog.String("method", method), slog.String("route", route), slog.String("limit", limit), slog.String("error", err.Error()))
		if rl.cfg.Fail == FailOpen {
			return d, false, nil
		}
		return d, false, apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("rate limit store: %w", err))
	}
	if m != nil {
		if d.Allowed {
			m.decision(method, route, limit, outcomeAllowed)
		} else {
			m.decision(method, route, limit, outcomeDenied)
		}
	}
	return d, true, nil
}

func (rl *rateLimiter) charge(ctx context.Context, method, route, key string, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	start := time.Now()
	d, err := rl.cfg.Limiter.Charge(ctx, key, p, n)
	if m := rl.cfg.Metrics; m != nil {
		m.observeStore(time.Since(start), err)
		if err == nil {
			m.tokens(method, route, n)
		}
	}
	return d, err
}

// denialMessage tells the client which limit it hit, by principal id
// (never the key), and when to come back.
func denialMessage(p *Principal, limit string, o ratelimit.Outcome) string {
	var buf [160]byte
	b := append(buf[:0], "Rate limit reached for "...)
	b = append(b, p.ID...)
	b = append(b, " on "...)
	b = append(b, limit...)
	b = append(b, ": limit "...)
	b = strconv.AppendInt(b, o.Policy.Limit, 10)
	b = append(b, " per "...)
	b = append(b, windowName(o.Policy.Window)...)
	b = append(b, ". Please try again in "...)
	b = strconv.AppendInt(b, apierrors.Seconds(o.Decision.RetryAfter), 10)
	b = append(b, "s."...)
	return string(b)
}

// windowName writes a window as people say it: "minute", or "1m30s".
func windowName(w time.Duration) string {
	switch w {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return w.String()
}

// LimitKey is the Limiter key of a principal's request or token bucket on a
// route, for code that reads a bucket without spending from it (a status
// page calls Allow with n == 0).
func LimitKey(principalID, method, route string, tokens bool) string {
	kind := "\x00r"
	if tokens {
		kind = "\x00t"
	}
	return principalID + "\x00" + method + " " + route + kind
}
