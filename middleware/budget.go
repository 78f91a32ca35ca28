package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
)

// Settlement is what one budgeted request cost, as [BudgetConfig.OnSettle]
// receives it: the record a provider writes to its billing database.
type Settlement struct {
	// RequestID is the request's id.
	RequestID string
	// Principal is who made the request.
	Principal *Principal
	// Method and Route name the route (its pattern, not the raw path).
	Method, Route string
	// Usage is what the handler reported.
	Usage Usage
	// Held is what was reserved before the handler ran.
	Held budget.Micros
	// Cost is what was recorded as spent.
	Cost budget.Micros
	// Hold identifies the ledger's hold.
	Hold budget.HoldID
	// Time is when the request was settled.
	Time time.Time
}

// BudgetConfig configures [BudgetWithConfig].
type BudgetConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// Ledger keeps the budgets. Required.
	Ledger budget.Ledger
	// ScopesFor returns the budgets a request by p must fit (its key's, its
	// account's); none means the request is not budgeted. Required.
	ScopesFor func(c echo.Context, p *Principal) []budget.Scope
	// Estimate returns the most the request can cost, held before the
	// handler runs. It must be an upper bound for the guarantee that
	// concurrent requests never overspend to hold. Required.
	Estimate func(c echo.Context, p *Principal) (budget.Micros, error)
	// Cost prices the usage the handler reported. Required.
	Cost func(c echo.Context, u Usage) budget.Micros
	// OnSettle, when set, is called after each settlement, after the
	// response; it must not block for long.
	OnSettle func(ctx context.Context, s Settlement)
	// Fail is what happens when the Ledger fails before the handler.
	// Default: FailClosed (503). Failing open lets the request run
	// unbudgeted.
	Fail FailMode
	// Metrics, when set, counts spend, open holds and refusals.
	Metrics *Metrics
	// Logger receives ledger failures. Default: slog.Default().
	Logger *slog.Logger
}

// BudgetWithConfig holds each budgeted request's estimated maximum cost
// before the handler runs, in every scope the request belongs to at once,
// and afterwards settles the hold to the actual cost of the usage the
// handler reported with [ReportUsage]. A request that does not fit is 402
// budget_exceeded naming the budget that ran out. When the handler fails,
// panics or the client leaves before any usage is reported, the hold is
// released; holds a crashed process never ends expire in the ledger.
// Streaming handlers that spend more than was held call [ReportProgress],
// which grows the hold or answers budget_exceeded to end the stream.
func BudgetWithConfig(cfg BudgetConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg; it fails when a
// required field is missing.
func (cfg BudgetConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg BudgetConfig) ToStep() (Step, error) {
	switch {
	case cfg.Ledger == nil:
		return nil, fmt.Errorf("budget: a Ledger is required")
	case cfg.ScopesFor == nil:
		return nil, fmt.Errorf("budget: ScopesFor is required")
	case cfg.Estimate == nil:
		return nil, fmt.Errorf("budget: Estimate is required")
	case cfg.Cost == nil:
		return nil, fmt.Errorf("budget: Cost is required")
	}
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &budgeter{cfg: cfg}
	return func(c echo.Context, next echo.HandlerFunc) error {
		if cfg.Skipper(c) {
			return next(c)
		}
		return b.serve(c, next)
	}, nil
}

type budgeter struct {
	cfg      BudgetConfig
	failures storeFailureLog
}

// budgetHold is the request's live hold, kept in its state so that
// ReportProgress can grow it.
type budgetHold struct {
	b      *budgeter
	id     budget.HoldID
	held   budget.Micros
	scopes []budget.Scope
}

func (b *budgeter) serve(c echo.Context, next echo.HandlerFunc) (err error) {
	p := GetPrincipal(c)
	if p == nil {
		return next(c)
	}
	scopes := b.cfg.ScopesFor(c, p)
	if len(scopes) == 0 {
		return next(c)
	}
	estimate, err := b.cfg.Estimate(c, p)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	res, err := b.cfg.Ledger.Hold(ctx, scopes, estimate)
	if err != nil {
		b.failures.warn(ctx, b.cfg.Logger, "budget: hold failed", slog.String("request_id", GetRequestID(c)),
			slog.String("principal", p.ID), slog.String("error", err.Error()))
		if m := b.cfg.Metrics; m != nil {
			m.budgetError()
		}
		if b.cfg.Fail == FailOpen {
			return next(c)
		}
		return apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("budget ledger: %w", err))
	}
	if !res.Allowed {
		if m := b.cfg.Metrics; m != nil {
			m.budgetRefused(res.Scope.Kind)
		}
		return exceeded(res)
	}
	if m := b.cfg.Metrics; m != nil {
		m.holdOpened()
	}
	h := &budgetHold{b: b, id: res.ID, held: estimate, scopes: scopes}
	st := state(c)
	st.hold = h

	settled := false
	defer func() {
		if settled {
			return
		}
		// The handler panicked: nothing it did is billable here.
		b.release(c, h)
		if r := recover(); r != nil {
			panic(r)
		}
	}()
	err = next(c)
	u, ok := GetUsage(c)
	if !ok && st.progressed {
		u, ok = st.progress, true
	}
	if ok {
		b.settle(c, p, h, u)
	} else {
		b.release(c, h)
	}
	settled = true
	return err
}

// exceeded words a refusal: which budget ran out, and its limit.
func exceeded(res budget.HoldResult) *apierrors.Error {
	s := res.Scope
	per := map[budget.Period]string{budget.None: "in total", budget.Daily: "per day", budget.Weekly: "per week", budget.Monthly: "per month"}[s.Period]
	msg := fmt.Sprintf("Budget exceeded for %s %s: %s %s.", s.Kind, s.ID, s.Limit, per)
	if !res.Balance.ResetsAt.IsZero() {
		msg = fmt.Sprintf("Budget exceeded for %s %s: %s %s; it resets at %s.", s.Kind, s.ID, s.Limit, per, res.Balance.ResetsAt.UTC().Format(time.RFC3339))
	}
	return apierrors.BudgetExceeded(msg)
}

func (b *budgeter) settle(c echo.Context, p *Principal, h *budgetHold, u Usage) {
	cost := b.cfg.Cost(c, u)
	// The client may be gone; what was used was used all the same.
	ctx := context.WithoutCancel(c.Request().Context())
	if _, err := b.cfg.Ledger.Settle(ctx, h.id, cost); err != nil {
		b.cfg.Logger.LogAttrs(ctx, slog.LevelError, "budget: settle failed", slog.String("request_id", GetRequestID(c)),
			slog.String("principal", p.ID), slog.String("hold", h.id.String()), slog.Int64("cost_micros", int64(cost)),
			slog.String("error", err.Error()))
		if m := b.cfg.Metrics; m != nil {
			m.budgetError()
			m.holdClosed()
		}
		return
	}
	if m := b.cfg.Metrics; m != nil {
		m.holdClosed()
		m.spend(h.scopes, cost)
	}
	if b.cfg.OnSettle != nil {
		b.cfg.OnSettle(ctx, Settlement{
			RequestID: GetRequestID(c), Principal: p, Method: c.Request().Method, Route: c.Path(),
			Usage: u, Held: h.held, Cost: cost, Hold: h.id, Time: time.Now(),
		})
	}
}

func (b *budgeter) release(c echo.Context, h *budgetHold) {
	ctx := context.WithoutCancel(c.Request().Context())
	if err := b.cfg.Ledger.Release(ctx, h.id); err != nil {
		// The hold expires on its own; note it and move on.
		b.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "budget: release failed", slog.String("request_id", GetRequestID(c)),
			slog.String("hold", h.id.String()), slog.String("error", err.Error()))
		if m := b.cfg.Metrics; m != nil {
			m.budgetError()
		}
	}
	if m := b.cfg.Metrics; m != nil {
		m.holdClosed()
	}
}

// ReportProgress tells the budget what a request has used so far, for
// handlers that stream. When the cost of u exceeds what is held, the hold
// grows to cover it; when the budget has no room for that, it returns 402
// budget_exceeded, which the handler returns to end the stream with an
// error event. If the handler never calls ReportUsage, the last progress is
// what is settled. Without a budget on the request it does nothing.
func ReportProgress(c echo.Context, u Usage) error {
	st := state(c)
	st.progress, st.progressed = u, true
	h := st.hold
	if h == nil {
		return nil
	}
	cost := h.b.cfg.Cost(c, u)
	if cost <= h.held {
		return nil
	}
	more := cost - h.held
	res, err := h.b.cfg.Ledger.Extend(c.Request().Context(), h.id, more)
	if err != nil {
		return apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("budget ledger: %w", err))
	}
	if !res.Allowed {
		if m := h.b.cfg.Metrics; m != nil {
			m.budgetRefused(res.Scope.Kind)
		}
		return exceeded(res)
	}
	h.held = cost
	return nil
}
