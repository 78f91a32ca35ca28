package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/internal/limitref"
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
	rl, err := cfg.build()
	if err != nil {
		return nil, err
	}
	return rl.step, nil
}

// build makes the rate limiter cfg describes.
func (cfg RateLimitConfig) build() (*rateLimiter, error) {
	if cfg.Limiter == nil {
		return nil, fmt.Errorf("rate limit: a Limiter is required")
	}
	if cfg.LimitsFor == nil {
		cfg.LimitsFor = func(_ echo.Context, p *Principal) Limits { return p.Limits }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rl := &rateLimiter{cfg: cfg, clock: monotonicNow}
	rl.memory, _ = cfg.Limiter.(*ratelimit.Memory)
	if rt, ok := cfg.Limiter.(ratelimit.RealTimeLimiter); ok && rt.RealTime() {
		rl.rememberDenials = true
	}
	return rl, nil
}

// step is the rate limiter as a Step.
func (rl *rateLimiter) step(c echo.Context, next echo.HandlerFunc) error {
	if rl.cfg.Skipper != nil && rl.cfg.Skipper(c) {
		return next(c)
	}
	return rl.serve(c, next)
}

type rateLimiter struct {
	cfg RateLimitConfig

	// rememberDenials is set for a RealTimeLimiter: a request denial is
	// kept on its route entry and answers the principal's requests until
	// the store would answer otherwise.
	rememberDenials bool
	// clock is monotonic time in nanoseconds, for remembered denials.
	clock func() int64
	// memory is the limiter when it is a Memory, which route entries ask
	// through their limitref.Refs.
	memory *ratelimit.Memory
	// statics are the limits route entries share, with StaticLimits, by
	// policies: a few per tier and route, however many principals there
	// are. staticCount counts them, up to maxSharedLimits.
	statics     sync.Map // limitsKey -> *staticLimits
	staticCount atomic.Int64

	failures storeFailureLog
}

// routeEntry is what a rate limiter keeps of a principal on a route: its
// bucket keys and, with StaticLimits, its limits, fixed once the entry is
// published; and, changed atomically, its latest denial texts and its
// remembered denial. A principal's entries form a list, newest first, that
// the principal points to (see entryFor).
type routeEntry struct {
	// owner is the principal the entries are of, and next the entry made
	// before this one: both fixed before the entry is published.
	owner *Principal
	next  *routeEntry
	// depth counts the entries from this one to the end of the list.
	depth         int
	rl            *rateLimiter
	method, route string
	keys          [2]string
	// refs remember where a Memory limiter keeps the keys' buckets.
	refs [2]limitref.Ref
	// static is the entry's limits, with StaticLimits; nil without.
	static  *staticLimits
	blocked atomic.Pointer[blockedEntry] // the request limit's remembered denial, if any
	// denials holds the last denial message per limit, which changes only
	// when the seconds it tells the client to wait do.
	denials [2]atomic.Pointer[denialText]
	// counters are the entry's metric series, looked up once.
	counters atomic.Pointer[entryCounters]
}

// staticLimits are limits as route entries keep them with StaticLimits:
// pointing at its own copies of the policies, with their policy-only header
// values formatted once. Entries with the same policies share one, which
// stays in the processor's cache however many principals there are, and
// which a new entry does not have to format again. It is immutable.
type staticLimits struct {
	requests, tokens ratelimit.Policy
	limits           Limits
	headers          *ratelimit.PolicyHeaders
}

// limitsKey is what staticLimits are shared by.
type limitsKey struct {
	requests, tokens       ratelimit.Policy
	hasRequests, hasTokens bool
}

// maxSharedLimits bounds how many staticLimits a rate limiter shares.
// Past it (a LimitsFor that gives many principals limits of their own),
// new entries get limits of their own, freed with the entry.
const maxSharedLimits = 4096

// staticLimitsFor returns the staticLimits of lim, shared when it can be.
func (rl *rateLimiter) staticLimitsFor(lim Limits) *staticLimits {
	var k limitsKey
	if lim.Requests != nil {
		k.requests, k.hasRequests = *lim.Requests, true
	}
	if lim.Tokens != nil {
		k.tokens, k.hasTokens = *lim.Tokens, true
	}
	if v, ok := rl.statics.Load(k); ok {
		return v.(*staticLimits)
	}
	sl := &staticLimits{requests: k.requests, tokens: k.tokens}
	if k.hasRequests {
		sl.limits.Requests = &sl.requests
	}
	if k.hasTokens {
		sl.limits.Tokens = &sl.tokens
	}
	sl.headers = ratelimit.NewPolicyHeaders(sl.limits.Requests, sl.limits.Tokens)
	if rl.staticCount.Load() >= maxSharedLimits {
		return sl
	}
	if v, loaded := rl.statics.LoadOrStore(k, sl); loaded {
		return v.(*staticLimits)
	}
	rl.staticCount.Add(1)
	return sl
}

// The limits of a route entry, as indexes of its keys and denials.
const (
	limitRequests = 0
	limitTokens   = 1
)

// limitNames are the limits as the metrics' and logs' "limit" label says
// them.
var limitNames = [2]string{"requests", "tokens"}

// denialText is a denial's error as of one number of seconds to wait,
// which is all its message and body depend on, with the body rendered once
// in the error handler's shape.
type denialText struct {
	policy  ratelimit.Policy
	seconds int64
	err     apierrors.Error // RetryAfter is seconds in full
	text    [160]byte       // room for err.Message
	body    atomic.Pointer[denialBody]
	// renders counts the denials written with this text before a body
	// template is made, which pays for itself only for a text used many
	// times: a text lasts a second, and with many principals most serve a
	// few denials each.
	renders atomic.Int32
}

// templateAfter is how many denials a text serves before its body is
// rendered as a template. Making one takes about as long as eleven plain
// renders of the body (920 ns and 1.6 KB against 85 ns, for the OpenAI
// shape) and saves some 64 ns per use after it; with 100,000 principals
// each denied a few times a second, a lower count made templates that were
// used only once or twice.
const templateAfter = 16

// denialBody is a denial's body template in one shape.
type denialBody struct {
	shape apierrors.Shape
	tmpl  *apierrors.BodyTemplate
}

// template returns the body template of the text's error in shape s, or
// nil when there is none: for a shape that has none, and for the text's
// first uses.
func (t *denialText) template(s apierrors.Shape) *apierrors.BodyTemplate {
	if b := t.body.Load(); b != nil && b.shape == s {
		return b.tmpl
	}
	if t.renders.Add(1) <= templateAfter {
		return nil
	}
	tmpl, ok := s.Template(&t.err)
	if !ok {
		return nil
	}
	t.body.Store(&denialBody{shape: s, tmpl: tmpl})
	return tmpl
}

// denial is a 429 from the rate limiter: its text and its exact wait. It
// is an *apierrors.Error to errors.As. Inside a Chain it is kept in the
// request's record, which it points back to, and ErrorHandler writes it
// with the record's header room and request id, without allocating.
type denial struct {
	text       *denialText
	retryAfter time.Duration
	state      *requestState
}

// apiError is the denial as its API error, with the exact wait.
func (d *denial) apiError() apierrors.Error {
	e := d.text.err
	e.RetryAfter = d.retryAfter
	return e
}

func (d *denial) Error() string {
	e := d.apiError()
	return e.Error()
}

// As makes the denial an *apierrors.Error (a copy of its own) to
// errors.As.
func (d *denial) As(target any) bool {
	if p, ok := target.(**apierrors.Error); ok {
		e := d.apiError()
		*p = &e
		return true
	}
	return false
}

// The errors denials copy: the catalog's status, type and retry flag.
var (
	rateLimitExceeded = *apierrors.RateLimitExceeded("", 0)
	tokensExceeded    = *apierrors.TokensExceeded("", 0)
)

// deny returns the 429 for a principal's denied limit, kept in st, the
// request's record (never reused), when st is not nil and has no denial yet.
func (e *routeEntry) deny(p *Principal, limit int, o ratelimit.Outcome, st *requestState) error {
	secs := apierrors.Seconds(o.Decision.RetryAfter)
	t := e.denials[limit].Load()
	if t == nil || t.seconds != secs || t.policy != o.Policy {
		t = &denialText{policy: o.Policy, seconds: secs, err: rateLimitExceeded}
		name := "requests"
		if limit == limitTokens {
			name, t.err = "tokens", tokensExceeded
		}
		t.err.RetryAfter = time.Duration(secs) * time.Second
		if b := appendDenialMessage(t.text[:0], p, name, o); unsafe.SliceData(b) == &t.text[0] {
			// The text is never written again.
			t.err.Message = unsafe.String(&t.text[0], len(b))
		} else {
			t.err.Message = string(b)
		}
		e.denials[limit].Store(t)
	}
	if st == nil || st.denial.text != nil {
		return &denial{text: t, retryAfter: o.Decision.RetryAfter}
	}
	st.denial = denial{text: t, retryAfter: o.Decision.RetryAfter, state: st}
	return &st.denial
}

// maxRoutesPerPrincipal bounds the entries kept per principal (route
// patterns times rate limiters); beyond it entries are made per request.
const maxRoutesPerPrincipal = 64

// entryFor returns the bucket keys (and, with StaticLimits, the limits)
// of a principal on a route, made once and then kept on the principal, so
// a request allocates none and finds them without hashing: the principal
// points to its newest entry, which leads to the others. The list is only
// ever extended, by publishing a new head, and the head's owner guards
// against a copied Principal, whose limits may differ, using the
// original's entries.
func (rl *rateLimiter) entryFor(c echo.Context, p *Principal, method, route string) *routeEntry {
	raw := atomic.LoadPointer(&p.routes)
	head := ownRoutes(p, raw)
	if e := head.find(rl, method, route); e != nil {
		return e
	}
	e := &routeEntry{owner: p, rl: rl, method: method, route: route}
	if rl.cfg.StaticLimits {
		// Keys only for the limits the entry has.
		e.static = rl.staticLimitsFor(rl.cfg.LimitsFor(c, p))
		if e.static.limits.Requests != nil {
			e.keys[limitRequests] = LimitKey(p.ID, method, route, false)
		}
		if e.static.limits.Tokens != nil {
			e.keys[limitTokens] = LimitKey(p.ID, method, route, true)
		}
	} else {
		e.keys = [2]string{LimitKey(p.ID, method, route, false), LimitKey(p.ID, method, route, true)}
	}
	for {
		e.next, e.depth = nil, 1
		if head != nil {
			if old := head.find(rl, method, route); old != nil {
				return old
			}
			if head.depth >= maxRoutesPerPrincipal {
				return e
			}
			e.next, e.depth = head, head.depth+1
		}
		if atomic.CompareAndSwapPointer(&p.routes, raw, unsafe.Pointer(e)) {
			return e
		}
		raw = atomic.LoadPointer(&p.routes)
		head = ownRoutes(p, raw)
	}
}

// ownRoutes returns the entry list raw points to when it is p's own, not
// that of a Principal p was copied from.
func ownRoutes(p *Principal, raw unsafe.Pointer) *routeEntry {
	if e := (*routeEntry)(raw); e != nil && e.owner == p {
		return e
	}
	return nil
}

// find returns the entry of rl for a route in the list from e, or nil.
func (e *routeEntry) find(rl *rateLimiter, method, route string) *routeEntry {
	for ; e != nil; e = e.next {
		if e.rl == rl && e.route == route && e.method == method {
			return e
		}
	}
	return nil
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
	var lim Limits
	if entry.static != nil {
		lim = entry.static.limits
	} else {
		lim = rl.cfg.LimitsFor(c, p)
	}
	if lim.Requests == nil && lim.Tokens == nil {
		return next(c)
	}
	ctx := c.Request().Context()

	var reqOut, tokOut ratelimit.Outcome
	var reqPtr, tokPtr *ratelimit.Outcome
	if lim.Requests != nil {
		reqOut.Policy = *lim.Requests
		ok, err := rl.decideRequest(ctx, entry, &reqOut)
		if err != nil {
			return err
		}
		if ok {
			reqPtr = &reqOut
		}
	}
	if lim.Tokens != nil {
		tokOut.Policy = *lim.Tokens
		ok, err := rl.decide(ctx, entry, limitTokens, tokOut.Policy, 0, &tokOut.Decision)
		if err != nil {
			return err
		}
		if ok {
			tokPtr = &tokOut
		}
	}
	var st *requestState
	var space *apierrors.Space
	if cc, ok := c.(*chainContext); ok {
		st, space = &cc.state, &cc.state.headers
	}
	if entry.static != nil {
		entry.static.headers.Set(c.Response().Header(), reqPtr, tokPtr, space)
	} else {
		ratelimit.SetHeadersWith(c.Response().Header(), reqPtr, tokPtr, space)
	}
	denied := (reqPtr != nil && !reqOut.Decision.Allowed) || (tokPtr != nil && !tokOut.Decision.Allowed)
	if denied && rl.cfg.Metrics != nil {
		entry.countDenied(rl.cfg.Metrics, p)
	}
	if reqPtr != nil && !reqOut.Decision.Allowed {
		return entry.deny(p, limitRequests, reqOut, st)
	}
	if tokPtr != nil && !tokOut.Decision.Allowed {
		return entry.deny(p, limitTokens, tokOut, st)
	}

	err := next(c)

	if lim.Tokens != nil {
		if u, ok := GetUsage(c); ok && u.TotalTokens() > 0 {
			// The client may be gone; the tokens were spent all the same.
			charge := context.WithoutCancel(ctx)
			if _, cerr := rl.charge(charge, entry, *lim.Tokens, u.TotalTokens()); cerr != nil {
				rl.cfg.Logger.LogAttrs(ctx, slog.LevelError, "rate limit: charging tokens failed",
					slog.String("request_id", GetRequestID(c)), slog.String("principal", p.ID),
					slog.Int64("tokens", u.TotalTokens()), slog.String("error", cerr.Error()))
			}
		}
	}
	return err
}

// decideRequest takes one request from the entry's request bucket. With a
// RealTimeLimiter, a denial is remembered on the entry: until the store
// could answer otherwise, the principal's requests are denied from it,
// with the hints counted down, without a store call.
func (rl *rateLimiter) decideRequest(ctx context.Context, e *routeEntry, o *ratelimit.Outcome) (bool, error) {
	if !rl.rememberDenials {
		return rl.decide(ctx, e, limitRequests, o.Policy, 1, &o.Decision)
	}
	var asked int64 = -1
	if b := e.blocked.Load(); b != nil {
		asked = rl.clock()
		if asked < b.until && b.policy == o.Policy {
			if m := rl.cfg.Metrics; m != nil {
				e.count(m, limitRequests, outcomeDenied)
			}
			o.Decision = b.at(asked)
			return true, nil
		}
	}
	ok, err := rl.decide(ctx, e, limitRequests, o.Policy, 1, &o.Decision)
	switch d := &o.Decision; {
	case !ok:
	case d.Allowed:
		if asked >= 0 {
			e.blocked.Store(nil) // allowed again: no more clock reads
		}
	case asked >= 0 && d.RetryAfter > time.Millisecond:
		// Until asked+RetryAfter the bucket cannot hold a unit: the store
		// decided after asked. The millisecond off covers stores that
		// count whole milliseconds.
		e.blocked.Store(&blockedEntry{policy: o.Policy, until: asked + int64(d.RetryAfter-time.Millisecond), answered: rl.clock(), d: *d})
	case asked < 0:
		// The first denial has no time the store was asked at; it marks
		// the entry so that the next one has.
		e.blocked.Store(deniedOnce)
	}
	return ok, err
}

// deniedOnce marks a route entry denied once, not yet remembered.
var deniedOnce = &blockedEntry{}

// blockedEntry is a request denial remembered on a route entry.
type blockedEntry struct {
	policy ratelimit.Policy
	// until is the clock reading before which the store would deny too;
	// zero marks an entry denied once, to be timed the next time.
	until int64
	// answered is the clock reading when the store's answer d arrived.
	answered int64
	d        ratelimit.Decision
}

// at is the remembered denial as of now: its waits less the time since the
// store answered (the store decided before then, so they are never short),
// rounded up to whole milliseconds as stores give them.
func (b *blockedEntry) at(now int64) ratelimit.Decision {
	elapsed := time.Duration(max(now-b.answered, 0))
	d := b.d
	d.RetryAfter = ceilMillis(d.RetryAfter - elapsed)
	d.ResetAfter = ceilMillis(d.ResetAfter - elapsed)
	return d
}

// ceilMillis rounds d up to whole milliseconds, and at least one.
func ceilMillis(d time.Duration) time.Duration {
	if d <= time.Millisecond {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}

// monotonicStart anchors monotonicNow.
var monotonicStart = time.Now()

// monotonicNow is the time since monotonicStart in nanoseconds: one read
// of the monotonic clock.
func monotonicNow() int64 { return int64(time.Since(monotonicStart)) }

// memoryDecide decides on a Memory's key through a Ref (see package
// limitref).
var memoryDecide = limitref.MemoryDecide.(func(*ratelimit.Memory, *limitref.Ref, string, ratelimit.Policy, int64, bool) (ratelimit.Decision, error))

// allow asks the limiter to take n units from key's bucket: through ref
// when the limiter is a Memory.
func (rl *rateLimiter) allow(ctx context.Context, key string, ref *limitref.Ref, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	if rl.memory != nil && ref != nil {
		return memoryDecide(rl.memory, ref, key, p, n, false)
	}
	return rl.cfg.Limiter.Allow(ctx, key, p, n)
}

// decide asks the limiter about the entry's limit, writing its answer to
// d. On store failure it reports ok == false to fail open, or returns a
// 503 to fail closed.
func (rl *rateLimiter) decide(ctx context.Context, e *routeEntry, limit int, p ratelimit.Policy, n int64, d *ratelimit.Decision) (ok bool, err error) {
	m := rl.cfg.Metrics
	if m == nil {
		if *d, err = rl.allow(ctx, e.keys[limit], &e.refs[limit], p, n); err != nil {
			return rl.storeFailed(ctx, e, limit, err)
		}
		return true, nil
	}
	start := monotonicNow() // one clock read, where time.Now takes two
	*d, err = rl.allow(ctx, e.keys[limit], &e.refs[limit], p, n)
	m.observeStore(time.Duration(monotonicNow()-start), err)
	switch {
	case err != nil:
		e.count(m, limit, outcomeError)
		return rl.storeFailed(ctx, e, limit, err)
	case d.Allowed:
		e.count(m, limit, outcomeAllowed)
	default:
		e.count(m, limit, outcomeDenied)
	}
	return true, nil
}

// storeFailed logs a store failure and fails open (ok == false) or closed
// (a 503).
func (rl *rateLimiter) storeFailed(ctx context.Context, e *routeEntry, limit int, err error) (ok bool, _ error) {
	rl.failures.warn(ctx, rl.cfg.Logger, "rate limit: store failed",
		slog.String("method", e.method), slog.String("route", e.route), slog.String("limit", limitNames[limit]), slog.String("error", err.Error()))
	if rl.cfg.Fail == FailOpen {
		return false, nil
	}
	return false, apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("rate limit store: %w", err))
}

// charge charges n tokens to the entry's token bucket.
func (rl *rateLimiter) charge(ctx context.Context, e *routeEntry, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	start := monotonicNow()
	var d ratelimit.Decision
	var err error
	if rl.memory != nil {
		d, err = memoryDecide(rl.memory, &e.refs[limitTokens], e.keys[limitTokens], p, n, true)
	} else {
		d, err = rl.cfg.Limiter.Charge(ctx, e.keys[limitTokens], p, n)
	}
	if m := rl.cfg.Metrics; m != nil {
		m.observeStore(time.Duration(monotonicNow()-start), err)
		if err == nil {
			e.metrics(m).tokens.Add(float64(n))
		}
	}
	return d, err
}

// appendDenialMessage appends to b the message that tells the client which
// limit it hit, by principal id (never the key), and when to come back.
func appendDenialMessage(b []byte, p *Principal, limit string, o ratelimit.Outcome) []byte {
	b = append(b, "Rate limit reached for "...)
	b = append(b, p.ID...)
	b = append(b, " on "...)
	b = append(b, limit...)
	b = append(b, ": limit "...)
	b = strconv.AppendInt(b, o.Policy.Limit, 10)
	b = append(b, " per "...)
	b = append(b, windowName(o.Policy.Window)...)
	b = append(b, ". Please try again in "...)
	b = strconv.AppendInt(b, apierrors.Seconds(o.Decision.RetryAfter), 10)
	return append(b, "s."...)
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
