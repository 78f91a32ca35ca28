package middleware

import (
	"context"
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
	if l.MaxParallel == 0 {
		l.MaxParallel = fallback.MaxParallel
	}
	return l
}

// none reports whether l limits nothing.
func (l Limits) none() bool { return l.Requests == nil && l.Tokens == nil && l.MaxParallel <= 0 }

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
	// Reserved is the tokens and cost reserved before the handler ran.
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
}

// AdmissionWithConfig admits each authenticated request in one step:
// before the handler it reserves, all or nothing, one request from every
// request limit, its prompt estimate plus its output allowance from every
// token limit, one slot of every concurrency limit and its largest
// possible cost from every budget. A request that does not fit is 429
// rate_limit_exceeded, tokens_exceeded or concurrency_exceeded, or 402
// budget_exceeded, and takes nothing; one that could never fit is refused
// as not retryable. After the handler (or its panic, or the client leaving)
// it settles once: the tokens and money not used are given back and the
// slot freed; usage reported beyond the reservation is not charged, but
// logged, counted and passed to OnSettle. Every limited response carries
// x-ratelimit-* and RateLimit headers. Requests without a principal (Auth
// did not run) pass unlimited.
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
	a := &admitter{cfg: cfg}
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper != nil && cfg.Skipper(c) {
			return next(c)
		}
		return a.serve(c, next)
	}, nil
}

type admitter struct {
	cfg      AdmissionConfig
	keys     keyCache
	failures storeFailureLog
}

// routeKeys are the store keys of a route's limits, the same for every
// principal (the Request's Holder tells principals apart).
type routeKeys struct{ requests, tokens, slot string }

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
	rk = &routeKeys{
		requests: LimitKey(method, route, false),
		tokens:   LimitKey(method, route, true),
		slot:     method + " " + route + "\x00c",
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
	rates                    [2]admission.Rate
	slots                    [1]admission.Slot
	tokenIdx                 int // index of the token claim in req.Rates, or -1
	id                       admission.ID
	allowance                int64
	model                    string
	// settled is set, under the record's lock, by the one settlement.
	settled bool
}

func (a *admitter) serve(c echo.Context, next echo.HandlerFunc) error {
	p := GetPrincipal(c)
	if p == nil {
		return next(c)
	}
	lim := a.cfg.LimitsFor(c, p)
	var scopes []budget.Scope
	if a.cfg.BudgetsFor != nil {
		scopes = a.cfg.BudgetsFor(c, p)
	}
	if lim.none() && len(scopes) == 0 {
		return next(c)
	}
	var est Estimate
	if lim.Tokens != nil || len(scopes) > 0 {
		var err error
		if est, err = a.cfg.Estimate(c); err != nil {
			return err
		}
	}
	st := state(c)
	ad := &st.admit
	req := c.Request()
	*ad = admitted{a: a, p: p, ctx: req.Context(), requestID: GetRequestID(c), method: req.Method, route: c.Path(),
		tokenIdx: -1, model: est.Model}
	if err := a.plan(ad, lim, scopes, est); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var start time.Time
	if a.cfg.Metrics != nil {
		start = time.Now()
	}
	res, err := a.cfg.Store.Reserve(ctx, &ad.req)
	if err == nil && !res.Allowed && a.shrink(ad, &res, est) {
		// The default allowance did not fit the room left: ask once more
		// for what there is room for.
		res, err = a.cfg.Store.Reserve(ctx, &ad.req)
	}
	if m := a.cfg.Metrics; m != nil {
		m.observeStore(time.Since(start), err)
	}
	if err != nil {
		a.failures.warn(ctx, a.cfg.Logger, "admission: store failed", slog.String("request_id", GetRequestID(c)),
			slog.String("principal", p.ID), slog.String("error", err.Error()))
		if a.cfg.Fail == FailOpen {
			st.allowance, st.admitted = ad.allowance, ad.metered()
			return next(c)
		}
		return apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("admission store: %w", err))
	}
	a.setHeaders(c, lim, &res)
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
	if ad.id == (admission.ID{}) && a.cfg.OnSettle == nil {
		// A requests limit alone: nothing to give back, nobody to tell.
		return next(c)
	}
	st.open = true
	if a.cfg.InFlight != nil {
		a.cfg.InFlight.add(st)
	}
	defer func() {
		// Settled also when the handler panics, before the panic goes on
		// to Recover.
		a.settle(st)
	}()
	return next(c)
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
func (ad *admitted) metered() bool { return ad.tokenIdx >= 0 || len(ad.req.Budgets) > 0 }

// plan builds the request's claims: one request, the prompt plus the
// allowance in tokens, a slot, the cost of all of it in every budget.
func (a *admitter) plan(ad *admitted, lim Limits, scopes []budget.Scope, est Estimate) error {
	p := ad.p
	method, route := ad.method, ad.route
	tag := p.Account
	if tag == "" {
		tag = p.ID
	}
	price := a.cfg.Prices.Price(est.Model)
	prompt := max(est.PromptTokens, 0)
	explicit := est.MaxOutputTokens > 0
	allowance := a.cfg.DefaultOutputTokens
	if explicit {
		allowance = min(est.MaxOutputTokens, maxOutputTokens)
	}
	prompt = min(prompt, maxOutputTokens)
	if lim.Tokens != nil {
		burst := lim.Tokens.Burst
		if burst == 0 {
			burst = lim.Tokens.Limit
		}
		switch {
		case prompt+allowance > burst && (explicit || prompt >= burst):
			return tooLarge(p, prompt, est.MaxOutputTokens, explicit, *lim.Tokens)
		case prompt+allowance > burst:
			allowance = burst - prompt
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
	ad.allowance = allowance
	ad.req = admission.Request{Tag: tag, Holder: p.ID}
	keys := a.keys.get(method, route)
	n := 0
	if lim.Requests != nil {
		ad.rates[n] = admission.Rate{Key: keys.requests, Policy: *lim.Requests, N: 1}
		n++
	}
	if lim.Tokens != nil {
		ad.tokenIdx = n
		ad.rates[n] = admission.Rate{Key: keys.tokens, Policy: *lim.Tokens, N: prompt + allowance, Refund: true}
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

// shrink lowers a default allowance to what the refusal says there is
// room for, and reports whether a smaller request is worth asking for.
func (a *admitter) shrink(ad *admitted, res *admission.Result, est Estimate) bool {
	if est.MaxOutputTokens > 0 || res.Never {
		return false
	}
	p := max(min(est.PromptTokens, maxOutputTokens), 0)
	allowance := ad.allowance
	switch {
	case res.Refused == admission.KindRate && res.Index == ad.tokenIdx:
		allowance = min(allowance, res.Rates[res.Index].Remaining-p)
	case res.Refused == admission.KindBudget:
		allowance = min(allowance, a.cfg.Prices.Price(est.Model).OutputFor(res.Balance.Remaining, p))
	default:
		return false
	}
	if allowance < 1 || allowance >= ad.allowance {
		return false
	}
	ad.allowance = allowance
	if ad.tokenIdx >= 0 {
		ad.rates[ad.tokenIdx].N = p + allowance
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
	if ad.tokenIdx >= 0 {
		total := u.TotalTokens()
		s.ReservedTokens = ad.rates[ad.tokenIdx].N
		s.ChargedTokens = min(total, s.ReservedTokens)
		s.ExcessTokens = total - s.ChargedTokens
		used.Used[ad.tokenIdx] = s.ChargedTokens
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
	if ad.id != (admission.ID{}) { // else the reservation left nothing to settle
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

// setHeaders writes the rate-limit headers of the request's limits.
func (a *admitter) setHeaders(c echo.Context, lim Limits, res *admission.Result) {
	var reqOut, tokOut ratelimit.Outcome
	var reqPtr, tokPtr *ratelimit.Outcome
	i := 0
	if lim.Requests != nil {
		reqOut = ratelimit.Outcome{Policy: *lim.Requests, Decision: res.Rates[i]}
		reqPtr = &reqOut
		i++
	}
	if lim.Tokens != nil {
		tokOut = ratelimit.Outcome{Policy: *lim.Tokens, Decision: res.Rates[i]}
		tokPtr = &tokOut
	}
	ratelimit.SetHeaders(c.Response().Header(), reqPtr, tokPtr)
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
		if res.Index == ad.tokenIdx {
			if res.Never {
				return tooLarge(p, r.N-ad.allowance, ad.allowance, true, r.Policy)
			}
			b = append(b, " on tokens: limit "...)
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
		if res.Index == ad.tokenIdx {
			return "tokens"
		}
		return "requests"
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

// LimitKey is the store key (admission.Rate.Key) of a route's request or
// token bucket; the principal's id is the admission.Request's Holder.
func LimitKey(method, route string, tokens bool) string {
	kind := "\x00r"
	if tokens {
		kind = "\x00t"
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
