// Package admin is gatekit's admin API: Echo routes a provider mounts
// where it wants (the demo: /admin/v1 on its own listener) to create,
// list, read, update, rotate and revoke API keys, to read and set account
// budgets, and to read a key's usage and remaining limits. Every request
// needs the admin token as "Authorization: Bearer TOKEN", compared in
// constant time; every error is answered in gatekit's envelope. Request
// bodies are application/json, decoded as strictly as gatekit's binder
// decodes them ([middleware.BindJSON]).
//
//	g, _ := gatekit.Mount(e, cfg) // with cfg.RuntimeKeys.Store set
//	if err := admin.Register(e.Group("/admin/v1"), admin.Config{Gate: g, Token: token}); err != nil {
//		log.Fatal(err)
//	}
//
// Mount the group outside gatekit's Auth.Paths: admin requests carry the
// admin token, not an API key. The routes are described by openapi.yaml
// in this directory ([OpenAPI]).
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/middleware"
)

//go:embed openapi.yaml
var openapi []byte

// OpenAPI returns the OpenAPI 3.1 description of the admin API.
func OpenAPI() []byte { return append([]byte(nil), openapi...) }

// DefaultUsageRoute is the route a key's usage is read for when the
// request names none.
const DefaultUsageRoute = "POST /v1/chat/completions"

// MaxPage is the most keys one page of a listing holds.
const MaxPage = 1000

// Config configures [Register].
type Config struct {
	// Gate is gatekit as mounted, with Config.RuntimeKeys.Store set.
	// Required.
	Gate *gatekit.Gate
	// Token is the admin token requests must carry. Required; at least 16
	// characters.
	Token string
	// UsageRoute is the route ("METHOD /path") whose limits a key's usage
	// shows when the request names none. Default: DefaultUsageRoute.
	UsageRoute string
}

// Register adds the admin routes to g. It fails without a Gate with
// runtime keys or with a short token.
func Register(g *echo.Group, cfg Config) error {
	if cfg.Gate == nil || cfg.Gate.Registry() == nil {
		return errors.New("admin: a Gate with runtime keys (Config.RuntimeKeys.Store) is required")
	}
	if len(cfg.Token) < 16 {
		return errors.New("admin: the token must have at least 16 characters")
	}
	if cfg.UsageRoute == "" {
		cfg.UsageRoute = DefaultUsageRoute
	}
	a := &api{gate: cfg.Gate, reg: cfg.Gate.Registry(), token: sha256.Sum256([]byte(cfg.Token)), usageRoute: cfg.UsageRoute}
	g.Use(a.authenticate)
	g.POST("/keys", a.createKey)
	g.GET("/keys", a.listKeys)
	g.GET("/keys/:id", a.getKey)
	g.PATCH("/keys/:id", a.updateKey)
	g.POST("/keys/:id/rotate", a.rotateKey)
	g.POST("/keys/:id/revoke", a.revokeKey)
	g.GET("/keys/:id/usage", a.keyUsage)
	g.GET("/accounts/:id/budget", a.getBudget)
	g.PUT("/accounts/:id/budget", a.setBudget)
	return nil
}

type api struct {
	gate       *gatekit.Gate
	reg        *keys.Registry
	token      [sha256.Size]byte
	usageRoute string
}

// authenticate lets through requests carrying the admin token.
func (a *api) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, token, _ := strings.Cut(strings.TrimSpace(h), " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return apierrors.MissingAPIKey().WithMessage("The admin API needs the admin token as 'Authorization: Bearer TOKEN'.")
		}
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(got[:], a.token[:]) != 1 {
			return apierrors.InvalidAPIKey().WithMessage("Incorrect admin token provided.")
		}
		return next(c)
	}
}

// created is a new key with its secret, shown this once.
type created struct {
	keys.Key
	// Secret is the key itself; it is not stored and cannot be shown again.
	Secret string `json:"secret"`
}

func (a *api) createKey(c echo.Context) error {
	var s keys.Spec
	if err := decode(c, &s); err != nil {
		return err
	}
	if s.Account == "" {
		return apierrors.InvalidArgument("account", "Missing required parameter: 'account'.")
	}
	k, secret, err := a.reg.Create(c.Request().Context(), s)
	if err != nil {
		return fail(err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, created{Key: k, Secret: secret})
}

// page is one page of a listing.
type page struct {
	Object string     `json:"object"`
	Data   []keys.Key `json:"data"`
	// HasMore reports whether another page follows.
	HasMore bool `json:"has_more"`
	// NextAfter is the after parameter of the next page.
	NextAfter string `json:"next_after,omitempty"`
}

func (a *api) listKeys(c echo.Context) error {
	limit := 100
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPage {
			return apierrors.InvalidArgument("limit", fmt.Sprintf("Invalid 'limit': want a whole number from 1 to %d.", MaxPage))
		}
		limit = n
	}
	ks, next, err := a.reg.List(c.Request().Context(), c.QueryParam("after"), limit)
	if err != nil {
		return fail(err)
	}
	if ks == nil {
		ks = []keys.Key{}
	}
	return c.JSON(http.StatusOK, page{Object: "list", Data: ks, HasMore: next != "", NextAfter: next})
}

func (a *api) getKey(c echo.Context) error {
	k, err := a.reg.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return fail(err)
	}
	return c.JSON(http.StatusOK, k)
}

// patch is an update: each field present replaces the key's; null
// clears it.
type patch struct {
	Tier      optional[string]       `json:"tier"`
	Models    optional[[]string]     `json:"models"`
	Limits    optional[*keys.Limits] `json:"limits"`
	Budget    optional[*keys.Budget] `json:"budget"`
	ExpiresAt optional[*time.Time]   `json:"expires_at"`
}

// optional is a field of a patch: set when the body holds it, to its zero
// value for null.
type optional[T any] struct {
	set bool
	v   T
}

// UnmarshalJSONFrom reads the field's value from the body's own decoder,
// so that its errors name their place in the body ("models[1]").
func (o *optional[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	o.set = true
	var zero T
	o.v = zero
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		return err
	}
	return json.UnmarshalDecode(dec, &o.v)
}

// apply sets *dst to the field's value when the patch holds it.
func (o optional[T]) apply(dst *T) {
	if o.set {
		*dst = o.v
	}
}

func (a *api) updateKey(c echo.Context) error {
	var p patch
	if err := decode(c, &p); err != nil {
		return err
	}
	k, err := a.reg.Update(c.Request().Context(), c.Param("id"), func(k *keys.Key) error {
		p.Tier.apply(&k.Tier)
		p.Models.apply(&k.Models)
		p.Limits.apply(&k.Limits)
		p.Budget.apply(&k.Budget)
		p.ExpiresAt.apply(&k.ExpiresAt)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return c.JSON(http.StatusOK, k)
}

// rotation is the body of a rotation.
type rotation struct {
	// GraceSeconds is how long the current secret keeps working.
	GraceSeconds int64 `json:"grace_seconds"`
}

func (a *api) rotateKey(c echo.Context) error {
	var r rotation
	if c.Request().ContentLength != 0 {
		if err := decode(c, &r); err != nil {
			return err
		}
	}
	if r.GraceSeconds < 0 || r.GraceSeconds > 90*24*3600 {
		return apierrors.InvalidArgument("grace_seconds", "Invalid 'grace_seconds': want 0 to 7776000 (90 days).")
	}
	k, secret, err := a.reg.Rotate(c.Request().Context(), c.Param("id"), time.Duration(r.GraceSeconds)*time.Second)
	if err != nil {
		return fail(err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, created{Key: k, Secret: secret})
}

func (a *api) revokeKey(c echo.Context) error {
	k, err := a.reg.Revoke(c.Request().Context(), c.Param("id"))
	if err != nil {
		return fail(err)
	}
	return c.JSON(http.StatusOK, k)
}

func (a *api) keyUsage(c echo.Context) error {
	route := c.QueryParam("route")
	if route == "" {
		route = a.usageRoute
	}
	method, path, ok := strings.Cut(route, " ")
	if !ok || !strings.HasPrefix(path, "/") {
		return apierrors.InvalidArgument("route", "Invalid 'route': want \"METHOD /path\", as the route is registered.")
	}
	ctx := c.Request().Context()
	p, _, err := a.reg.Principal(ctx, c.Param("id"))
	if err != nil {
		return fail(err)
	}
	st, err := a.gate.Status(ctx, p, method, path)
	if err != nil {
		return fail(err)
	}
	return c.JSON(http.StatusOK, st)
}

// accountBudget is an account's budget and its state in the current
// period.
type accountBudget struct {
	Account string       `json:"account"`
	Budget  *keys.Budget `json:"budget"`
	// Balance is the budget's state now; null without a budget.
	Balance *gatekit.BudgetStatus `json:"balance"`
}

func (a *api) getBudget(c echo.Context) error {
	acct, err := a.reg.Account(c.Request().Context(), c.Param("id"))
	if err != nil {
		return fail(err)
	}
	return a.answerBudget(c, acct)
}

func (a *api) setBudget(c echo.Context) error {
	var b keys.Budget
	if err := decode(c, &b); err != nil {
		return err
	}
	acct, err := a.reg.SetAccountBudget(c.Request().Context(), c.Param("id"), &b)
	if err != nil {
		return fail(err)
	}
	return a.answerBudget(c, acct)
}

// answerBudget writes acct's budget with its balance.
func (a *api) answerBudget(c echo.Context, acct keys.Account) error {
	out := accountBudget{Account: acct.ID, Budget: acct.Budget}
	if acct.Budget != nil && a.gate.Store() != nil {
		s := budget.Scope{Tag: acct.ID, Kind: "account", ID: acct.ID, Limit: acct.Budget.Limit, Period: acct.Budget.Period}
		bal, err := a.gate.Store().Balance(c.Request().Context(), s)
		if err != nil {
			return fail(err)
		}
		st := gatekit.BudgetStatus{Kind: s.Kind, ID: s.ID, Period: s.Period.String(), Limit: keys.USD(bal.Limit), Spent: keys.USD(bal.Spent), Held: keys.USD(bal.Held), Remaining: keys.USD(bal.Remaining)}
		if !bal.ResetsAt.IsZero() {
			t := bal.ResetsAt
			st.ResetsAt = &t
		}
		out.Balance = &st
	}
	return c.JSON(http.StatusOK, out)
}

// decode reads the request's JSON body into v as gatekit's binder does
// ([middleware.BindJSON]): names match exactly, a name given twice,
// invalid UTF-8, an unknown field, a value of the wrong type or a second
// value is a 400 naming its place ("models[1]"), and a body that is not
// application/json is 415.
func decode(c echo.Context, v any) error {
	if c.Request().ContentLength == 0 {
		return apierrors.InvalidRequest("The request body is empty; expected a JSON object.")
	}
	return middleware.BindJSON(c, v)
}

// fail maps a registry's error to the envelope.
func fail(err error) error {
	var e *apierrors.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, keys.ErrNotFound):
		return apierrors.NotFound("No such key.")
	case errors.Is(err, keys.ErrReadOnly):
		return apierrors.Conflict("The key comes from the configuration file and cannot be changed here.")
	case errors.Is(err, keys.ErrConflict):
		return apierrors.Conflict("The key id is taken, or the key changed while this request ran.")
	case errors.Is(err, keys.ErrInvalid):
		msg := strings.TrimPrefix(err.Error(), "keys: invalid: ")
		return apierrors.InvalidRequest("Invalid request: " + apierrors.Clip(msg) + ".")
	}
	return apierrors.ServiceUnavailable(0).WithCause(fmt.Errorf("admin: %w", err))
}
