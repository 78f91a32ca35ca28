package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
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

// Limits of the full-stack route, and what its keys may spend: high
// enough that no allowed scenario is ever refused.
const (
	// fullMaxParallel is the route's max_parallel: far more than the
	// goroutines serving one key at once.
	fullMaxParallel = 1024
	// keyBudget is each key's monthly budget: a million USD.
	keyBudget = gatekit.Money(1_000_000 * 1_000_000)
)

// modelPrice is what Model costs per million tokens: $0.50 in, $1.50 out,
// so that every request holds and spends a few micro-dollars.
var modelPrice = gatekit.PriceConfig{Input: 500_000, Output: 1_500_000}

// setupGatekitFull mounts gatekit as an LLM API would: every key in
// Config.Keys with a monthly budget of its own, a route with rpm, tpm and
// max_parallel that is billable at modelPrice, the default memory store,
// and, with metrics, Prometheus metrics on a registry of their own. Its
// handler reports usage, so that settlement refunds tokens and records
// spend. With deny, the route allows one request a minute, which priming
// uses up, so every measured request is a 429.
func setupGatekitFull(deny, metrics bool) func(*Suite, *Keys) (*Env, error) {
	return func(_ *Suite, keys *Keys) (*Env, error) {
		rpm, want := int64(NeverDeny), http.StatusOK
		if deny {
			rpm, want = 1, http.StatusTooManyRequests
		}
		route := http.MethodPost + " " + Route
		cfg := gatekit.Config{
			Keys: make([]gatekit.KeyConfig, len(keys.Raw)),
			Routes: map[string]gatekit.RouteConfig{
				route: {LimitConfig: gatekit.LimitConfig{RPM: rpm, TPM: NeverDeny, MaxParallel: fullMaxParallel}},
			},
			Budgets: gatekit.BudgetsConfig{Routes: []string{route}},
			Prices:  gatekit.PricesConfig{Models: map[string]gatekit.PriceConfig{Model: modelPrice}},
			Logger:  discardLogger(),
		}
		if metrics {
			cfg.Metrics = prometheus.NewRegistry()
		}
		for i := range keys.Raw {
			cfg.Keys[i] = gatekit.KeyConfig{ID: keys.IDs[i], Key: keys.Raw[i],
				Budget: &gatekit.BudgetConfig{Limit: keyBudget, Period: "monthly"}}
		}
		e := echo.New()
		gate, err := gatekit.Mount(e, cfg)
		if err != nil {
			return nil, err
		}
		addBillableRoute(e)
		return &Env{Handler: e, Keys: keys, Want: want, Verify: func() error { return checkSettled(gate, keys.IDs[0]) }}, nil
	}
}

// checkSettled returns an error unless key id's budget holds nothing and
// has been charged, for each of its requests, what the handler reported
// (the price of UsagePromptTokens and UsageCompletionTokens), not what was
// reserved.
func checkSettled(gate *gatekit.Gate, id string) error {
	scope := budget.Scope{Tag: id, Kind: "key", ID: id, Limit: budget.Micros(keyBudget), Period: budget.Monthly}
	bal, err := gate.Store().Balance(context.Background(), scope)
	if err != nil {
		return err
	}
	price := middleware.Price{Input: budget.Micros(modelPrice.Input), Output: budget.Micros(modelPrice.Output)}
	cost := price.Cost(UsagePromptTokens, UsageCompletionTokens)
	if bal.Held != 0 || bal.Spent == 0 || bal.Spent%cost != 0 {
		return fmt.Errorf("key %s's budget: %s spent, %s held; want a multiple of %s (the reported usage) spent and nothing held", id, bal.Spent, bal.Held, cost)
	}
	return nil
}

// addBillableRoute registers Route on e with a handler that reports the
// usage of ChatResponseJSON, as a handler behind gatekit's budgets does.
func addBillableRoute(e *echo.Echo) {
	usage := middleware.Usage{Model: Model, PromptTokens: UsagePromptTokens, CompletionTokens: UsageCompletionTokens}
	e.POST(Route, func(c echo.Context) error {
		if err := middleware.ReportUsage(c, usage); err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, ChatResponseJSON)
	})
}

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
// baseline that gatekit-auth-admission is read against, since Auth is the
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

// rateLimited returns Auth and Admission on store, in one Chain, with
// every principal limited to NeverDeny requests a minute and nothing else:
// gatekit's rate limiting alone, headers included. With only a requests
// limit, admission reads no body.
func rateLimited(keys *Keys, store admission.Store) (echo.MiddlewareFunc, error) {
	p := ratelimit.PerMinute(NeverDeny)
	sk, err := staticKeys(keys, middleware.Limits{Requests: &p})
	if err != nil {
		return nil, err
	}
	auth, err := middleware.AuthConfig{Keys: sk}.ToStep()
	if err != nil {
		return nil, err
	}
	admit, err := middleware.AdmissionConfig{Store: store, Logger: discardLogger()}.ToStep()
	if err != nil {
		return nil, err
	}
	return middleware.Chain(auth, admit)
}

func setupGatekitAuthAdmission(_ *Suite, keys *Keys) (*Env, error) {
	m, err := admission.NewMemory(nil)
	if err != nil {
		return nil, err
	}
	mw, err := rateLimited(keys, m)
	if err != nil {
		return nil, err
	}
	e, err := gatekitEcho(mw)
	if err != nil {
		return nil, err
	}
	return &Env{Handler: e, Keys: keys, Want: http.StatusOK}, nil
}
