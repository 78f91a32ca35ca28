package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/ratelimit"
)

// Limits are the limits of a route, a tier or a principal. A zero field
// inherits from the next level (principal, then tier, then route); a
// request with no limit set is not limited.
type Limits struct {
	// Requests limits requests (for example 60 per minute: RPM).
	Requests *ratelimit.Policy
	// Tokens limits tokens (TPM): each request reserves its prompt
	// estimate plus its output allowance, and gives back what it did not
	// use.
	Tokens *ratelimit.Policy
	// InputTokens limits input tokens on their own (ITPM): each request
	// reserves its prompt estimate and gives back what its reported
	// prompt tokens did not use. A prompt estimate above the burst is
	// refused as never fitting.
	InputTokens *ratelimit.Policy
	// OutputTokens limits output tokens on their own (OTPM): each request
	// reserves its allowance, which the burst caps, and gives back what
	// its reported completion tokens did not use. A max_tokens above the
	// burst is refused as never fitting.
	OutputTokens *ratelimit.Policy
	// MaxParallel limits how many requests may run at once; 0 inherits.
	MaxParallel int64
}

// Or returns l with every unset field taken from fallback.
func (l Limits) Or(fallback Limits) Limits {
	if l.Requests == nil {
		l.Requests = fallback.Requests
	}
	if l.Tokens == nil {
		l.Tokens = fallback.Tokens
	}
	if l.InputTokens == nil {
		l.InputTokens = fallback.InputTokens
	}
	if l.OutputTokens == nil {
		l.OutputTokens = fallback.OutputTokens
	}
	if l.MaxParallel == 0 {
		l.MaxParallel = fallback.MaxParallel
	}
	return l
}

// none reports whether l limits nothing.
func (l Limits) none() bool { return l.Requests == nil && !l.countsTokens() && l.MaxParallel <= 0 }

// countsTokens reports whether l limits tokens in any way.
func (l Limits) countsTokens() bool {
	return l.Tokens != nil || l.InputTokens != nil || l.OutputTokens != nil
}

// Meter is what a rate limit counts: the claims one request may make.
type Meter uint8

// The meters of [Limits], in the order a request's claims are made.
const (
	// MeterRequests counts requests (Limits.Requests).
	MeterRequests Meter = iota
	// MeterTokens counts prompt and output tokens together (Limits.Tokens).
	MeterTokens
	// MeterInputTokens counts prompt tokens (Limits.InputTokens).
	MeterInputTokens
	// MeterOutputTokens counts output tokens (Limits.OutputTokens).
	MeterOutputTokens
	meterCount
)

// String names m as metrics and messages say it: "requests", "tokens",
// "input_tokens" or "output_tokens".
func (m Meter) String() string {
	switch m {
	case MeterRequests:
		return "requests"
	case MeterTokens:
		return "tokens"
	case MeterInputTokens:
		return "input_tokens"
	case MeterOutputTokens:
		return "output_tokens"
	}
	return "unknown"
}

// words is m as a sentence says it.
func (m Meter) words() string {
	switch m {
	case MeterInputTokens:
		return "input tokens"
	case MeterOutputTokens:
		return "output tokens"
	}
	return m.String()
}

// policies returns l's rate policies by meter, nil where unset.
func (l Limits) policies() [meterCount]*ratelimit.Policy {
	return [meterCount]*ratelimit.Policy{l.Requests, l.Tokens, l.InputTokens, l.OutputTokens}
}

// FailMode is what admission does when its store cannot answer.
type FailMode int

const (
	// FailClosed answers 503 service_unavailable (retryable) while the
	// store is unreachable: no request goes unlimited.
	FailClosed FailMode = iota
	// FailOpen lets requests through unlimited while the store is
	// unreachable: availability over enforcement.
	FailOpen
)

// DefaultOutputTokens is the output allowance of a request that sets no
// max_tokens, when AdmissionConfig.DefaultOutputTokens is 0.
const DefaultOutputTokens = 4096

// maxOutputTokens bounds any allowance, so that prompt plus output never
// overflows.
const maxOutputTokens = 1 << 53

// Settlement is what one admitted request used and was charged, as
// [AdmissionConfig.OnSettle] receives it: the record a provider writes to
// its billing database.
type Settlement struct {
	// RequestID is the request's id.
	RequestID string
	// Principal is who made the request.
	Principal *Principal
	// Method and Route name the route (its pattern, not the raw path).
	Method, Route string
	// Usage is what the handler reported (or reported so far, when it
	// never finished).
	Usage Usage
	// Allowance is the output tokens the reservation covered.
	Allowance int64
	// Reserved is the tokens (the prompt estimate plus the allowance,
	// whether one token limit or split input and output limits took
	// them) and cost reserved before the handler ran.
	ReservedTokens int64
	Reserved       budget.Micros
	// Charged is what was recorded: Usage, but never more than the
	// reservation.
	ChargedTokens int64
	Charged       budget.Micros
	// ExcessTokens and Excess are what the handler reported beyond its
	// reservation, which no limit or budget was charged for: non-zero
	// only when the handler broke its allowance (or CountTokens counted
	// too few).
	ExcessTokens int64
	Excess       budget.Micros
	// Reservation identifies the store's reservation.
	Reservation admission.ID
	// Time is when the request was settled.
	Time time.Time
}

// AdmissionConfig configures [AdmissionWithConfig].
type AdmissionConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// Store reserves and settles. Required.
	Store admission.Store
	// LimitsFor returns the limits of a request made by p. Default:
	// p.Limits.
	LimitsFor func(c echo.Context, p *Principal) Limits
	// BudgetsFor returns the budgets a request by p must fit (its key's,
	// its account's), all with p's account as Tag; none means the request
	// is not budgeted. Default: none.
	BudgetsFor func(c echo.Context, p *Principal) []budget.Scope
	// Estimate reads what a request asks for: its model, its prompt's
	// tokens (never fewer than the model will count) and its max_tokens.
	// Default: [ChatEstimator] with its defaults, for OpenAI-style bodies.
	Estimate func(c echo.Context) (Estimate, error)
	// Prices prices tokens by model, for budgets. Default: everything is
	// free, so budgets only refuse once exhausted.
	Prices *Prices
	// DefaultOutputTokens is the allowance of a request that sets no
	// max_tokens (see [Allowance]). Default: DefaultOutputTokens.
	DefaultOutputTokens int64
	// InFlight, when set, keeps every open reservation so that
	// [InFlight.SettleAll] can settle them at shutdown.
	InFlight *InFlight
	// OnSettle, when set, is called after each settlement; it must not
	// block for long.
	OnSettle func(ctx context.Context, s Settlement)
	// Fail is what happens when the Store fails before the handler.
	// Default: FailClosed.
	Fail FailMode
	// Metrics, when set, counts decisions, store failures and excess.
	Metrics *Metrics
	// Logger receives store failures and excess reports. Default:
	// slog.Default().
	Logger *slog.Logger
	// ShapeFor, when set, returns the error layout of c's route: where it
	// is apierrors.ShapeAnthropic, the rate-limit headers are Anthropic's
	// anthropic-ratelimit-* ([ratelimit.SetAnthropicHeaders]) instead of
	// x-ratelimit-* and RateLimit. It must not allocate.
	ShapeFor func(c echo.Context) apierrors.Shape
	// Now is the clock the reset times of Anthropic's headers are counted
	// from. Default: time.Now.
	Now func() time.Time
}

// AdmissionWithConfig admits each authenticated request in one step:
// before the handler it reserves, all or nothing, one request from every
// request limit, its prompt estimate plus its output allowance from every
// token limit (or its prompt from an input token limit and its allowance
// from an output token limit), one slot of every concurrency limit and
// its largest possible cost from every budget. A request that does not fit is 429
// rate_limit_exceeded, tokens_exceeded or concurrency_exceeded, or 402
// budget_exceeded, and takes nothing; one that could never fit is refused
// as not retryable. After the handler (or its panic, or the client leaving)
// it settles once: the tokens and money not used are given back and the
// slot freed; usage reported beyond the reservation is not charged, but
// logged, counted and passed to OnSettle. Every limited response carries
// x-ratelimit-* and RateLimit headers, or on Anthropic-shaped routes
// anthropic-ratelimit-* headers. Requests without a principal (Auth did
// not run) pass unlimited.
func AdmissionWithConfig(cfg AdmissionConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg; it fails without a
// Store.
func (cfg AdmissionConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg AdmissionConfig) ToStep() (Step, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("admission: a Store is required")
	}
	if cfg.DefaultOutputTokens < 0 {
		return nil, fmt.Errorf("admission: DefaultOutputTokens is negative")
	}
	if cfg.DefaultOutputTokens == 0 {
		cfg.DefaultOutputTokens = DefaultOutputTokens
	}
	if cfg.LimitsFor == nil {
		cfg.LimitsFor = func(_ echo.Context, p *Principal) Limits { return p.Limits }
	}
	if cfg.Estimate == nil {
		cfg.Estimate = (&ChatEstimator{}).Estimate
	}
	if cfg.Prices == nil {
		cfg.Prices = &Prices{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &admitter{cfg: cfg}
	a.once, _ = cfg.Store.(admission.OnceStore)
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper != nil && cfg.Skipper(c) {
			return a.pass(c, next, GetPrincipal(c))
		}
		return a.serve(c, next)
	}, nil
}

type admitter struct {
	cfg      AdmissionConfig
	once     admission.OnceStore // Store, when it keeps idempotency entries
	keys     keyCache
	failures storeFailureLog
}

// pass runs a request that reserves nothing: at once, or, when an
// idempotency step handed it its key (IdempotencyConfig.Joined), after
// claiming the key alone, and ending it once the handler returned.
func (a *admitter) pass(c echo.Context, next echo.HandlerFunc, p *Principal) (err error) {
	st := state(c)
	o := &st.once
	if !o.joined() || a.once == nil {
		return next(c)
	}
	r := admission.Request{Tag: anonymousTag}
	if p != nil {
		r.Tag = tagOf(p)
	}
	ctx := c.Request().Context()
	_, b, err := a.once.ReserveOnce(ctx, &r, o.claim)
	o.taken, o.begin = true, b
	if err != nil {
		return a.onceFailed(c, o, err, next)
	}
	if o.decided() {
		return errOnceDecided
	}
	returned := false
	defer func() {
		d := admission.Done{Key: o.claim.Key, Token: o.begin.Token, Record: o.keep(c, err, returned), TTL: o.ttl}
		if _, serr := a.once.SettleOnce(context.WithoutCancel(ctx), &r, admission.ID{}, admission.Usage{}, d); serr != nil {
			a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: keeping the response failed", slog.String("request_id", GetRequestID(c)), slog.String("error", serr.Error()))
		}
	}()
	err = next(c)
	returned = true
	return err
}

// anonymousTag is the Tag of idempotency entries of requests without a
// principal.
const anonymousTag = "\x00anonymous"

// tagOf is the Tag of p's requests: its account, else its own ID.
func tagOf(p *Principal) string {
	if p.Account != "" {
		return p.Account
	}
	return p.ID
}

// onceFailed answers a request whose joined reservation failed in the
// store: it runs without idempotency only when both the idempotency and
// the admission settings fail open.
func (a *admitter) onceFailed(c echo.Context, o *onceState, err error, next echo.HandlerFunc) error {
	a.failures.warn(c.Request().Context(), a.cfg.Logger, "admission: store failed", slog.String("request_id", GetRequestID(c)),
		slog.String("error", err.Error()))
	if m := a.cfg.Metrics; m != nil {
		m.storeFailed()
	}
	if o.failOpen && a.cfg.Fail == FailOpen {
		o.failed = true
		return next(c)
	}
	return apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("admission store: %w", err))
}

// reserve makes the request's reservation, with its idempotency key when
// it has one waiting (IdempotencyConfig.Joined).
func (a *admitter) reserve(ctx context.Context, st *requestState, r *admission.Request) (admission.Result, error) {
	o := &st.once
	if a.once == nil || !o.pending || o.begun() {
		return a.cfg.Store.Reserve(ctx, r)
	}
	res, b, err := a.once.ReserveOnce(ctx, r, o.claim)
	o.taken, o.begin = err == nil, b
	return res, err
}

// routeKeys are the store keys of a route's limits, the same for every
// principal (the Request's Holder tells principals apart).
type routeKeys struct {
	rates [meterCount]string
	slot  string
}

// keyCache keeps the routeKeys of each route, so that a request builds no
// key strings. Routes are Echo's patterns, a set fixed by the service.
type keyCache struct {
	mu sync.RWMutex
	m  map[routeOf]*routeKeys
}

type routeOf struct{ method, route string }

func (kc *keyCache) get(method, route string) *routeKeys {
	k := routeOf{method, route}
	kc.mu.RLock()
	rk := kc.m[k]
	kc.mu.RUnlock()
	if rk != nil {
		return rk
	}
	rk = &routeKeys{slot: method + " " + route + "\x00c"}
	for m := range meterCount {
		rk.rates[m] = LimitKey(method, route, m)
	}
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.m == nil {
		kc.m = map[routeOf]*routeKeys{}
	}
	if old := kc.m[k]; old != nil {
		return old
	}
	kc.m[k] = rk
	return rk
}

// admitted is a request's open reservation, kept in its record.
type admitted struct {
	a *admitter
	p *Principal
	// What settling needs of the request, kept so that a settlement at
	// shutdown does not touch a context its handler still uses.
	ctx                      context.Context
	requestID, method, route string
	req                      admission.Request
	rates                    [meterCount]admission.Rate
	meters                   [meterCount]Meter // the meter of each rate claim
	slots                    [1]admission.Slot
	prompt                   int64 // the prompt estimate reserved
	id                       admission.ID
	allowance                int64
	model                    string
	// settled is set, under the record's lock, by the one settlement.
	settled bool
}

func (a *admitter) serve(c echo.Context, next echo.HandlerFunc) (err error) {
	p := GetPrincipal(c)
	if p == nil {
		return a.pass(c, next, nil)
	}
	lim := a.cfg.LimitsFor(c, p)
	var scopes []budget.Scope
	if a.cfg.BudgetsFor != nil {
		scopes = a.cfg.BudgetsFor(c, p)
	}
	if lim.none() && len(scopes) == 0 {
		return a.pass(c, next, p)
	}
	var est Estimate
	if lim.countsTokens() || len(scopes) > 0 {
		var err error
		if est, err = a.cfg.Estimate(c); err != nil {
			return err
		}
	}
	st := state(c)
	ad := &st.admit
	req := c.Request()
	*ad = admitted{a: a, p: p, ctx: req.Context(), requestID: GetRequestID(c), method: req.Method, route: c.Path(),
		model: est.Model}
	if err := a.plan(ad, lim, scopes, est); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var start time.Time
	if a.cfg.Metrics != nil {
		start = time.Now()
	}
	res, err := a.reserve(ctx, st, &ad.req)
	if err == nil && !res.Allowed && !st.once.decided() && a.shrink(ad, &res, est) {
		// The default allowance did not fit the room left: ask once more
		// for what there is room for.
		res, err = a.reserve(ctx, st, &ad.req)
	}
	if m := a.cfg.Metrics; m != nil {
		m.observeStore(time.Since(start), err)
	}
	if st.once.decided() {
		return errOnceDecided
	}
	if err != nil {
		a.failures.warn(ctx, a.cfg.Logger, "admission: store failed", slog.String("request_id", GetRequestID(c)),
			slog.String("principal", p.ID), slog.String("error", err.Error()))
		open := a.cfg.Fail == FailOpen
		if a.once != nil && st.once.joined() {
			// Its idempotency key was not claimed either: the request
			// runs without it only if idempotency fails open too.
			st.once.taken, st.once.failed = true, true
			open = open && st.once.failOpen
		}
		if open {
			st.allowance, st.admitted = ad.allowance, ad.metered()
			return next(c)
		}
		return apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("admission store: %w", err))
	}
	a.setHeaders(c, ad, &res)
	if !res.Allowed {
		if m := a.cfg.Metrics; m != nil {
			m.refused(ad.method, ad.route, refusalName(ad, &res))
		}
		return a.refusal(ad, &res)
	}
	if m := a.cfg.Metrics; m != nil {
		m.admittedRequest(ad.method, ad.route)
	}
	ad.id = res.ID
	st.allowance, st.admitted = ad.allowance, ad.metered()
	if ad.id == (admission.ID{}) && a.cfg.OnSettle == nil && !st.once.begun() {
		// A requests limit alone: nothing to give back, nobody to tell.
		return next(c)
	}
	st.open = true
	if a.cfg.InFlight != nil {
		a.cfg.InFlight.add(st)
	}
	returned := false
	defer func() {
		// Settled also when the handler panics, before the panic goes on
		// to Recover.
		if st.once.begun() {
			rec := st.once.keep(c, err, returned)
			st.mu.Lock()
			st.once.outcome = rec
			st.mu.Unlock()
		}
		a.settle(st)
	}()
	err = next(c)
	returned = true
	return err
}

// detachedContext is a request's context without its cancellation or
// deadline, as context.WithoutCancel gives, kept in the request's record
// so that settling allocates none.
type detachedContext struct{ parent context.Context }

func (detachedContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (detachedContext) Done() <-chan struct{}       { return nil }
func (detachedContext) Err() error                  { return nil }
func (d *detachedContext) Value(key any) any        { return d.parent.Value(key) }
func (d *detachedContext) String() string           { return "detached request context" }

// metered reports whether the request's tokens are reserved, so that its
// allowance is binding.
func (ad *admitted) metered() bool { return ad.countsTokens() || len(ad.req.Budgets) > 0 }

// countsTokens reports whether one of the request's rate claims counts
// tokens.
func (ad *admitted) countsTokens() bool {
	for _, m := range ad.meters[:len(ad.req.Rates)] {
		if m != MeterRequests {
			return true
		}
	}
	return false
}

// index is the index of m's claim in ad.req.Rates, or -1.
func (ad *admitted) index(m Meter) int {
	for i, am := range ad.meters[:len(ad.req.Rates)] {
		if am == m {
			return i
		}
	}
	return -1
}

// plan builds the request's claims: one request, the prompt plus the
// allowance in tokens, a slot, the cost of all of it in every budget.
func (a *admitter) plan(ad *admitted, lim Limits, scopes []budget.Scope, est Estimate) error {
	p := ad.p
	method, route := ad.method, ad.route
	tag := tagOf(p)
	price := a.cfg.Prices.Price(est.Model)
	prompt := max(est.PromptTokens, 0)
	explicit := est.MaxOutputTokens > 0
	allowance := a.cfg.DefaultOutputTokens
	if explicit {
		allowance = min(est.MaxOutputTokens, maxOutputTokens)
	}
	prompt = min(prompt, maxOutputTokens)
	if lim.Tokens != nil {
		burst := burstOf(*lim.Tokens)
		switch {
		case prompt+allowance > burst && (explicit || prompt >= burst):
			return tooLarge(p, prompt, est.MaxOutputTokens, explicit, *lim.Tokens)
		case prompt+allowance > burst:
			allowance = burst - prompt
		}
	}
	if lim.InputTokens != nil && prompt > burstOf(*lim.InputTokens) {
		return tooLargeFor(p, MeterInputTokens, prompt, *lim.InputTokens)
	}
	if lim.OutputTokens != nil {
		burst := burstOf(*lim.OutputTokens)
		switch {
		case allowance > burst && explicit:
			return tooLargeFor(p, MeterOutputTokens, allowance, *lim.OutputTokens)
		case allowance > burst:
			allowance = burst
		}
	}
	for _, sc := range scopes {
		if price.Cost(prompt, allowance) <= sc.Limit {
			continue
		}
		fits := price.OutputFor(sc.Limit, prompt)
		if explicit || fits < 1 {
			return overBudget(sc, price.Cost(prompt, max(allowance, est.MaxOutputTokens)))
		}
		allowance = fits
	}
	ad.allowance, ad.prompt = allowance, prompt
	ad.req = admission.Request{Tag: tag, Holder: p.ID}
	keys := a.keys.get(method, route)
	n := 0
	for m, pol := range lim.policies() {
		if pol == nil {
			continue
		}
		m := Meter(m)
		ad.meters[n] = m
		ad.rates[n] = admission.Rate{Key: keys.rates[m], Policy: *pol, N: claimOf(m, prompt, allowance), Refund: m != MeterRequests}
		n++
	}
	ad.req.Rates = ad.rates[:n]
	if lim.MaxParallel > 0 {
		ad.slots[0] = admission.Slot{Key: keys.slot, Limit: lim.MaxParallel}
		ad.req.Slots = ad.slots[:1]
	}
	if len(scopes) > 0 {
		ad.req.Budgets = scopes
		ad.req.Cost = price.Cost(prompt, allowance)
	}
	return nil
}

// claimOf is what a request takes from a meter's bucket.
func claimOf(m Meter, prompt, allowance int64) int64 {
	switch m {
	case MeterTokens:
		return prompt + allowance
	case MeterInputTokens:
		return prompt
	case MeterOutputTokens:
		return allowance
	}
	return 1
}

// burstOf is the most units pol's bucket holds.
func burstOf(pol ratelimit.Policy) int64 {
	if pol.Burst == 0 {
		return pol.Limit
	}
	return pol.Burst
}

// shrink lowers a default allowance to what the refusal says there is
// room for, and reports whether a smaller request is worth asking for.
func (a *admitter) shrink(ad *admitted, res *admission.Result, est Estimate) bool {
	if est.MaxOutputTokens > 0 || res.Never {
		return false
	}
	p := ad.prompt
	allowance := ad.allowance
	switch {
	case res.Refused == admission.KindRate && ad.meters[res.Index] == MeterTokens:
		allowance = min(allowance, res.Rates[res.Index].Remaining-p)
	case res.Refused == admission.KindRate && ad.meters[res.Index] == MeterOutputTokens:
		allowance = min(allowance, res.Rates[res.Index].Remaining)
	case res.Refused == admission.KindBudget:
		allowance = min(allowance, a.cfg.Prices.Price(est.Model).OutputFor(res.Balance.Remaining, p))
	default:
		return false
	}
	if allowance < 1 || allowance >= ad.allowance {
		return false
	}
	ad.allowance = allowance
	for i, m := range ad.meters[:len(ad.req.Rates)] {
		if m != MeterRequests {
			ad.rates[i].N = claimOf(m, p, allowance)
		}
	}
	if len(ad.req.Budgets) > 0 {
		ad.req.Cost = a.cfg.Prices.Price(est.Model).Cost(p, allowance)
	}
	return true
}

// settle settles the request's reservation once, with what it reported.
func (a *admitter) settle(st *requestState) {
	st.mu.Lock()
	ad := &st.admit
	if ad.settled || !st.open {
		st.mu.Unlock()
		return
	}
	ad.settled = true
	u, reported := st.usage, st.usageReported
	if !reported && st.progressed {
		u, reported = st.progress, true
	}
	// Without an outcome (a settlement at shutdown, before the handler
	// returned), the key is freed.
	var done *admission.Done
	if st.once.begun() {
		done = &admission.Done{Key: st.once.claim.Key, Token: st.once.begin.Token, Record: st.once.outcome, TTL: st.once.ttl}
	}
	st.mu.Unlock()
	if a.cfg.InFlight != nil {
		a.cfg.InFlight.remove(st)
	}
	p := ad.p
	// The client may be gone, or the server stopping: what was used was
	// used all the same.
	st.detached = detachedContext{ad.ctx}
	ctx := &st.detached
	if u.Model == "" {
		u.Model = ad.model
	}
	var used admission.Usage
	s := Settlement{RequestID: ad.requestID, Principal: p, Method: ad.method, Route: ad.route,
		Usage: u, Allowance: ad.allowance, Reserved: ad.req.Cost, Reservation: ad.id}
	if ad.countsTokens() {
		total := u.TotalTokens()
		s.ReservedTokens = ad.prompt + ad.allowance
		// Prompt tokens beyond the estimate may use output tokens the
		// answer left unused, as one token limit counts them; split
		// limits count each on its own.
		s.ChargedTokens = min(u.PromptTokens, ad.prompt) + min(u.CompletionTokens, ad.allowance)
		if ad.index(MeterTokens) >= 0 {
			s.ChargedTokens = min(total, s.ReservedTokens)
		}
		s.ExcessTokens = total - s.ChargedTokens
		for i, m := range ad.meters[:len(ad.req.Rates)] {
			switch m {
			case MeterTokens:
				used.Used[i] = min(total, ad.rates[i].N)
			case MeterInputTokens:
				used.Used[i] = min(u.PromptTokens, ad.rates[i].N)
			case MeterOutputTokens:
				used.Used[i] = min(u.CompletionTokens, ad.rates[i].N)
			}
		}
	}
	if len(ad.req.Budgets) > 0 {
		cost := a.cfg.Prices.Price(u.Model).Cost(u.PromptTokens, u.CompletionTokens)
		s.Charged = min(cost, ad.req.Cost)
		s.Excess = cost - s.Charged
		used.Cost = s.Charged
	}
	if !reported {
		// Nothing was reported: the request failed before it used
		// anything billable.
		s.ChargedTokens, s.Charged = 0, 0
		used = admission.Usage{}
	}
	var err error
	switch {
	case done != nil:
		_, err = a.once.SettleOnce(ctx, &ad.req, ad.id, used, *done)
		if errors.Is(err, idempotency.ErrLeaseLost) {
			a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: keeping the response failed", slog.String("request_id", s.RequestID), slog.String("error", err.Error()))
			if err == idempotency.ErrLeaseLost {
				err = nil // the settlement itself went through
			}
		}
	case ad.id != (admission.ID{}): // else the reservation left nothing to settle
		_, err = a.cfg.Store.Settle(ctx, &ad.req, ad.id, used)
	}
	s.Time = time.Now()
	if err != nil {
		a.failures.warn(ctx, a.cfg.Logger, "admission: settle failed", slog.String("request_id", s.RequestID),
			slog.String("principal", p.ID), slog.String("reservation", ad.id.String()), slog.String("error", err.Error()))
		if m := a.cfg.Metrics; m != nil {
			m.storeFailed()
		}
		return
	}
	if m := a.cfg.Metrics; m != nil {
		m.settled(s, ad.req.Budgets)
	}
	if s.ExcessTokens > 0 || s.Excess > 0 || u.CompletionTokens > ad.allowance {
		a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "admission: handler reported more than its allowance",
			slog.String("request_id", s.RequestID), slog.String("principal", p.ID),
			slog.String("method", ad.method), slog.String("route", ad.route),
			slog.Int64("allowance", ad.allowance), slog.Int64("completion_tokens", u.CompletionTokens),
			slog.Int64("excess_tokens", s.ExcessTokens), slog.Int64("excess_micros", int64(s.Excess)))
	}
	if a.cfg.OnSettle != nil {
		a.cfg.OnSettle(ctx, s)
	}
}

// setHeaders writes the rate-limit headers of the request's limits, in
// the dialect of its route's shape.
func (a *admitter) setHeaders(c echo.Context, ad *admitted, res *admission.Result) {
	var outs [meterCount]ratelimit.Outcome
	var ptrs [meterCount]*ratelimit.Outcome
	for i, r := range ad.req.Rates {
		m := ad.meters[i]
		outs[m] = ratelimit.Outcome{Policy: r.Policy, Decision: res.Rates[i]}
		ptrs[m] = &outs[m]
	}
	h := c.Response().Header()
	o := ratelimit.Outcomes{Requests: ptrs[MeterRequests], Tokens: ptrs[MeterTokens],
		InputTokens: ptrs[MeterInputTokens], OutputTokens: ptrs[MeterOutputTokens]}
	if a.cfg.ShapeFor != nil && a.cfg.ShapeFor(c) == apierrors.ShapeAnthropic {
		ratelimit.SetAnthropicHeaders(h, a.cfg.Now(), o)
		return
	}
	ratelimit.SetHeadersOf(h, o)
}

// refusal is the error of a refused reservation.
func (a *admitter) refusal(ad *admitted, res *admission.Result) error {
	p := ad.p
	switch res.Refused {
	case admission.KindRate:
		r := ad.req.Rates[res.Index]
		wait := res.RetryAfter()
		var buf [256]byte
		b := append(buf[:0], "Rate limit reached for "...)
		b = append(b, p.ID...)
		if m := ad.meters[res.Index]; m != MeterRequests {
			switch {
			case res.Never && m == MeterTokens:
				return tooLarge(p, r.N-ad.allowance, ad.allowance, true, r.Policy)
			case res.Never:
				return tooLargeFor(p, m, r.N, r.Policy)
			}
			b = append(b, " on "...)
			b = append(b, m.words()...)
			b = append(b, ": limit "...)
			b = appendPer(b, r.Policy)
			b = append(b, ", requested "...)
			b = strconv.AppendInt(b, r.N, 10)
			b = append(b, ", remaining "...)
			b = strconv.AppendInt(b, res.Rates[res.Index].Remaining, 10)
			b = appendTryIn(b, wait)
			return apierrors.TokensExceeded(string(b), wait)
		}
		b = append(b, " on requests: limit "...)
		b = appendPer(b, r.Policy)
		b = appendTryIn(b, wait)
		return apierrors.RateLimitExceeded(string(b), wait)
	case admission.KindSlot:
		var buf [160]byte
		b := append(buf[:0], "Too many requests in flight for "...)
		b = append(b, p.ID...)
		b = append(b, ": limit "...)
		b = strconv.AppendInt(b, ad.req.Slots[res.Index].Limit, 10)
		b = append(b, " at once. Please try again when one has finished."...)
		return apierrors.ConcurrencyExceeded(string(b), time.Second)
	case admission.KindBudget:
		sc := ad.req.Budgets[res.Index]
		if res.Never {
			return overBudget(sc, ad.req.Cost)
		}
		return exceeded(sc, res.Balance, ad.req.Cost)
	}
	return apierrors.InternalError(fmt.Errorf("admission: refused by no claim"))
}

// appendPer appends "60 per minute".
func appendPer(b []byte, p ratelimit.Policy) []byte {
	b = strconv.AppendInt(b, p.Limit, 10)
	b = append(b, " per "...)
	return append(b, windowName(p.Window)...)
}

// appendTryIn appends when to come back: ". Please try again in 6s.".
func appendTryIn(b []byte, wait time.Duration) []byte {
	b = append(b, ". Please try again in "...)
	b = strconv.AppendInt(b, apierrors.Seconds(wait), 10)
	return append(b, "s."...)
}

// refusalName names the limit a refusal came from, for metrics.
func refusalName(ad *admitted, res *admission.Result) string {
	switch res.Refused {
	case admission.KindRate:
		return ad.meters[res.Index].String()
	case admission.KindSlot:
		return "concurrency"
	}
	return "budget"
}

// tooLarge is the refusal of a request whose tokens can never fit a
// token limit: not retryable, saying what it asked for.
func tooLarge(p *Principal, prompt, allowance int64, explicit bool, pol ratelimit.Policy) *apierrors.Error {
	burst := pol.Burst
	if burst == 0 {
		burst = pol.Limit
	}
	var msg string
	if explicit {
		msg = fmt.Sprintf("Request too large for %s on tokens: limit %d per %s, at most %d at once; requested %d (about %d prompt and %d max_tokens). Send a smaller prompt or max_tokens.",
			p.ID, pol.Limit, windowName(pol.Window), burst, satAdd(prompt, allowance), prompt, allowance)
	} else {
		msg = fmt.Sprintf("Request too large for %s on tokens: limit %d per %s, at most %d at once; the prompt alone is about %d tokens. Send a smaller prompt.",
			p.ID, pol.Limit, windowName(pol.Window), burst, prompt)
	}
	e := apierrors.TokensExceeded(msg, 0)
	e.Retryable = false
	return e
}

// tooLargeFor is the refusal of a request whose claim n on an input or
// output token limit is above its burst: not retryable.
func tooLargeFor(p *Principal, m Meter, n int64, pol ratelimit.Policy) *apierrors.Error {
	what, fix := "the prompt alone is about %d tokens", "Send a smaller prompt."
	if m == MeterOutputTokens {
		what, fix = "max_tokens is %d", "Send a smaller max_tokens."
	}
	msg := fmt.Sprintf("Request too large for %s on %s: limit %d per %s, at most %d at once; "+what+". "+fix,
		p.ID, m.words(), pol.Limit, windowName(pol.Window), burstOf(pol), n)
	e := apierrors.TokensExceeded(msg, 0)
	e.Retryable = false
	return e
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// overBudget is the refusal of a request whose cost can never fit a
// budget, whatever is spent.
func overBudget(sc budget.Scope, cost budget.Micros) *apierrors.Error {
	if sc.Limit == 0 {
		return apierrors.BudgetExceeded(fmt.Sprintf("Budget exceeded for %s %s: its budget is %s %s.", sc.Kind, sc.ID, sc.Limit, periodName(sc.Period)))
	}
	return apierrors.BudgetExceeded(fmt.Sprintf("Request too large for the budget of %s %s: it may cost up to %s, and the budget is %s %s. Send a smaller prompt or max_tokens.",
		sc.Kind, sc.ID, cost, sc.Limit, periodName(sc.Period)))
}

// exceeded words a budget refusal: which budget ran out, its limit, and
// when it resets.
func exceeded(sc budget.Scope, b budget.Balance, cost budget.Micros) *apierrors.Error {
	msg := fmt.Sprintf("Budget exceeded for %s %s: %s %s, %s left, and the request may cost up to %s.", sc.Kind, sc.ID, sc.Limit, periodName(sc.Period), b.Remaining, cost)
	if !b.ResetsAt.IsZero() {
		msg = fmt.Sprintf("Budget exceeded for %s %s: %s %s, %s left, and the request may cost up to %s; it resets at %s.",
			sc.Kind, sc.ID, sc.Limit, periodName(sc.Period), b.Remaining, cost, b.ResetsAt.UTC().Format(time.RFC3339))
	}
	return apierrors.BudgetExceeded(msg)
}

func periodName(p budget.Period) string {
	switch p {
	case budget.Daily:
		return "per day"
	case budget.Weekly:
		return "per week"
	case budget.Monthly:
		return "per month"
	}
	return "in total"
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

// LimitKey is the store key (admission.Rate.Key) of a route's bucket for
// meter m; the principal's id is the admission.Request's Holder.
func LimitKey(method, route string, m Meter) string {
	kind := "\x00r"
	switch m {
	case MeterTokens:
		kind = "\x00t"
	case MeterInputTokens:
		kind = "\x00i"
	case MeterOutputTokens:
		kind = "\x00o"
	}
	return method + " " + route + kind
}

// Allowance returns the output tokens the request's reservation covers
// (its max_tokens, or the configured default, never more than its token
// limits and budgets had room for), and false when no token limit or
// budget applies to the request. Handlers pass it to the model as max_tokens, and
// streams stop at it: usage reported beyond it is never charged.
func Allowance(c echo.Context) (int64, bool) {
	if st := peekState(c); st != nil && st.admitted {
		return st.allowance, true
	}
	return 0, false
}

// InFlight keeps the reservations of requests still running, so that a
// server that stops can settle them: create one with [NewInFlight], give
// it to [AdmissionConfig], and call SettleAll once the server's grace
// period is over. It is safe for concurrent use.
type InFlight struct {
	mu   sync.Mutex
	open map[*requestState]struct{}
}

// NewInFlight returns an empty InFlight.
func NewInFlight() *InFlight { return &InFlight{open: map[*requestState]struct{}{}} }

func (f *InFlight) add(st *requestState) {
	f.mu.Lock()
	f.open[st] = struct{}{}
	f.mu.Unlock()
}

func (f *InFlight) remove(st *requestState) {
	f.mu.Lock()
	delete(f.open, st)
	f.mu.Unlock()
}

// Len returns how many reservations are open.
func (f *InFlight) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

// SettleAll settles every open reservation with the usage its handler has
// reported so far (with [ReportUsage] or [ReportProgress]); a handler still
// running afterwards is settled no second time. It returns how many it
// settled.
func (f *InFlight) SettleAll() int {
	f.mu.Lock()
	open := make([]*requestState, 0, len(f.open))
	for st := range f.open {
		open = append(open, st)
	}
	f.mu.Unlock()
	for _, st := range open {
		st.admit.a.settle(st)
	}
	return len(open)
}
