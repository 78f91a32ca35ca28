package gatekit

import (
	"context"
	"strings"
	"time"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// KeyStatus is what a key may still do: its limits on a route and its
// budgets, as a status route shows the key's holder. It marshals to JSON.
type KeyStatus struct {
	ID       string       `json:"id"`
	Account  string       `json:"account"`
	Tier     string       `json:"tier,omitempty"`
	Models   []string     `json:"models,omitempty"`
	Route    string       `json:"route"`
	Requests *LimitStatus `json:"requests,omitempty"`
	Tokens   *LimitStatus `json:"tokens,omitempty"`
	// InputTokens and OutputTokens are split token limits (itpm, otpm).
	InputTokens  *LimitStatus `json:"input_tokens,omitempty"`
	OutputTokens *LimitStatus `json:"output_tokens,omitempty"`
	// MaxParallel is how many of the key's requests may run on the route
	// at once; 0 for no limit.
	MaxParallel int64          `json:"max_parallel,omitempty"`
	Budgets     []BudgetStatus `json:"budgets"`
}

// LimitStatus is one rate limit's state.
type LimitStatus struct {
	// Limit is the units granted per Window.
	Limit int64 `json:"limit"`
	// Window is the policy's window, as a Go duration ("1m0s").
	Window string `json:"window"`
	// Remaining is the whole units available now.
	Remaining int64 `json:"remaining"`
	// ResetsIn is how long until the bucket is full, as a Go duration.
	ResetsIn string `json:"resets_in"`
}

// BudgetStatus is one budget's state in its current period. Amounts are
// decimal USD strings ("0.25"), exact.
type BudgetStatus struct {
	Kind      string     `json:"kind"`
	ID        string     `json:"id"`
	Period    string     `json:"period"`
	Limit     string     `json:"limit_usd"`
	Spent     string     `json:"spent_usd"`
	Held      string     `json:"held_usd"`
	Remaining string     `json:"remaining_usd"`
	ResetsAt  *time.Time `json:"resets_at,omitempty"`
}

// Status reports p's limits on the route (method and Echo route pattern)
// and p's budgets, without spending anything from either.
func (g *Gate) Status(ctx context.Context, p *middleware.Principal, method, route string) (KeyStatus, error) {
	st := KeyStatus{ID: p.ID, Account: p.Account, Tier: p.Tier, Models: p.Models, Route: method + " " + route, Budgets: []BudgetStatus{}}
	if g.store == nil {
		return st, nil
	}
	lim := g.limitsR.limits(p, method, route)
	st.MaxParallel = lim.MaxParallel
	tag := p.Account
	if tag == "" {
		tag = p.ID
	}
	look := admission.Request{Tag: tag, Holder: p.ID}
	var rates [4]admission.Rate
	var outs [4]**LimitStatus
	for _, l := range []struct {
		policy *ratelimit.Policy
		meter  middleware.Meter
		out    **LimitStatus
	}{
		{lim.Requests, middleware.MeterRequests, &st.Requests}, {lim.Tokens, middleware.MeterTokens, &st.Tokens},
		{lim.InputTokens, middleware.MeterInputTokens, &st.InputTokens}, {lim.OutputTokens, middleware.MeterOutputTokens, &st.OutputTokens},
	} {
		if l.policy != nil {
			rates[len(look.Rates)] = admission.Rate{Key: middleware.LimitKey(method, route, l.meter), Policy: *l.policy}
			outs[len(look.Rates)] = l.out
			look.Rates = rates[:len(look.Rates)+1]
		}
	}
	if len(look.Rates) > 0 {
		res, err := g.store.Reserve(ctx, &look)
		if err != nil {
			return KeyStatus{}, err
		}
		for i, r := range look.Rates {
			d := res.Rates[i]
			*outs[i] = &LimitStatus{Limit: r.Policy.Limit, Window: r.Policy.Window.String(), Remaining: d.Remaining, ResetsIn: d.ResetAfter.String()}
		}
	}
	for _, s := range p.Budgets {
		b, err := g.store.Balance(ctx, s)
		if err != nil {
			return KeyStatus{}, err
		}
		bs := BudgetStatus{Kind: s.Kind, ID: s.ID, Period: s.Period.String(), Limit: usd(b.Limit), Spent: usd(b.Spent), Held: usd(b.Held), Remaining: usd(b.Remaining)}
		if !b.ResetsAt.IsZero() {
			t := b.ResetsAt
			bs.ResetsAt = &t
		}
		st.Budgets = append(st.Budgets, bs)
	}
	return st, nil
}

// usd writes an amount without its unit: "5.00".
func usd(m budget.Micros) string { return strings.TrimSuffix(m.String(), " USD") }
