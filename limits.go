package gatekit

import (
	"fmt"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/middleware"
)

// routeTable maps a request's method and route pattern to a value, with ""
// standing for every method. Lookups do not allocate.
type routeTable[V any] map[string]map[string]V

func (t routeTable[V]) put(key string, v V) {
	method, path, _ := parseRouteKey(key)
	m := t[method]
	if m == nil {
		m = map[string]V{}
		t[method] = m
	}
	m[path] = v
}

// get returns the value for method and route, its method's entry first.
func (t routeTable[V]) get(method, route string) (V, bool) {
	if v, ok := t[method][route]; ok {
		return v, true
	}
	v, ok := t[""][route]
	return v, ok
}

// limitResolver answers a request's limits: the key's own, then its tier's
// for the route, then its tier's for every route, then the route's.
type limitResolver struct {
	routes routeTable[middleware.Limits]
	tiers  map[string]tierLimits
}

type tierLimits struct {
	all    middleware.Limits
	routes routeTable[middleware.Limits]
}

func newLimitResolver(cfg Config) *limitResolver {
	r := &limitResolver{routes: routeTable[middleware.Limits]{}, tiers: map[string]tierLimits{}}
	for key, rc := range cfg.Routes {
		r.routes.put(key, rc.LimitConfig.limits())
	}
	for name, tc := range cfg.Tiers {
		t := tierLimits{all: tc.LimitConfig.limits(), routes: routeTable[middleware.Limits]{}}
		for key, lc := range tc.Routes {
			t.routes.put(key, lc.limits())
		}
		r.tiers[name] = t
	}
	return r
}

// limitsFor is a middleware.AdmissionConfig.LimitsFor.
func (r *limitResolver) limitsFor(c echo.Context, p *middleware.Principal) middleware.Limits {
	return r.limits(p, c.Request().Method, c.Path())
}

// limits resolves p's limits on a route.
func (r *limitResolver) limits(p *middleware.Principal, method, route string) middleware.Limits {
	lim := p.Limits
	if t, ok := r.tiers[p.Tier]; ok {
		if tl, ok := t.routes.get(method, route); ok {
			lim = lim.Or(tl)
		}
		lim = lim.Or(t.all)
	}
	if rl, ok := r.routes.get(method, route); ok {
		lim = lim.Or(rl)
	}
	return lim
}

// keyStore builds the static key store of cfg.Keys.
func keyStore(cfg Config) (*middleware.StaticKeys, error) {
	keys := middleware.NewStaticKeys()
	for _, k := range cfg.Keys {
		models := k.Models
		if len(models) == 0 {
			models = cfg.Tiers[k.Tier].Models
		}
		account := k.Account
		if account == "" {
			account = k.ID
		}
		p := &middleware.Principal{ID: k.ID, Account: account, Tier: k.Tier, Models: models, Limits: k.LimitConfig.limits(),
			Budgets: budgetScopes(cfg, k, account)}
		var err error
		if k.Key != "" {
			err = keys.Add(k.Key, p)
		} else {
			d, _ := middleware.ParseKeyDigest(k.KeySHA256)
			err = keys.AddDigest(d, p)
		}
		if err != nil {
			return nil, fmt.Errorf("gatekit: %w", err)
		}
	}
	return keys, nil
}

// authSkipper skips authentication outside the configured path prefixes.
func authSkipper(paths []string) func(echo.Context) bool {
	if len(paths) == 0 {
		return func(echo.Context) bool { return false }
	}
	return func(c echo.Context) bool {
		path := c.Request().URL.Path
		for _, p := range paths {
			if strings.HasPrefix(path, p) {
				return false
			}
		}
		return true
	}
}

// budgetScopes are the budgets of a key: its own (or its tier's, per key)
// and its account's, all tagged with the account so one hold spans them.
func budgetScopes(cfg Config, k KeyConfig, account string) []budget.Scope {
	var scopes []budget.Scope
	own := k.Budget
	if own == nil {
		own = cfg.Tiers[k.Tier].Budget
	}
	if own != nil {
		period, _ := own.period()
		scopes = append(scopes, budget.Scope{Tag: account, Kind: "key", ID: k.ID, Limit: budget.Micros(own.Limit), Period: period})
	}
	if ab, ok := cfg.Budgets.Accounts[account]; ok {
		period, _ := ab.period()
		scopes = append(scopes, budget.Scope{Tag: account, Kind: "account", ID: account, Limit: budget.Micros(ab.Limit), Period: period})
	}
	return scopes
}

// billable answers whether a request's route is budgeted, and its scopes.
type billable struct {
	routes routeTable[bool]
}

func newBillable(cfg Config) *billable {
	b := &billable{routes: routeTable[bool]{}}
	for _, r := range cfg.Budgets.Routes {
		b.routes.put(r, true)
	}
	return b
}

// scopesFor is a middleware.AdmissionConfig.BudgetsFor.
func (b *billable) scopesFor(c echo.Context, p *middleware.Principal) []budget.Scope {
	if ok, _ := b.routes.get(c.Request().Method, c.Path()); !ok {
		return nil
	}
	return p.Budgets
}

// prices builds the price list of cfg.Prices.
func prices(cfg Config) *middleware.Prices {
	ps := &middleware.Prices{Models: map[string]middleware.Price{}}
	for model, pc := range cfg.Prices.Models {
		ps.Models[model] = middleware.Price{Input: budget.Micros(pc.Input), Output: budget.Micros(pc.Output)}
	}
	if d := cfg.Prices.Default; d != nil {
		ps.Default = &middleware.Price{Input: budget.Micros(d.Input), Output: budget.Micros(d.Output)}
	}
	return ps
}
