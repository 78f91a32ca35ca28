// Package admission reserves, in one step, everything a request may use:
// requests and tokens from rate limits, a slot of a concurrency limit, and
// money from budgets. A request is admitted only if every claim fits, and
// then all of them are taken at once; if one does not fit, nothing is taken
// anywhere. After the request, one Settle gives back what was not used and
// frees the slots. So no cap is ever exceeded: not by a request that asks
// for too much, not by many requests at once, not by a handler that reports
// more than it was allowed (Settle never charges past the reservation).
//
// A Store keeps the state. Memory serves one process; package durable keeps
// a Memory's spend on disk; package admission/redisstore shares the state
// between instances. Every store passes the conformance suite in package
// admissiontest, so one can replace another without changing an answer.
//
// The package knows nothing of HTTP: package middleware builds a Request
// from an API request and turns a refusal into a 429 or a 402.
package admission

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/internal/bucket"
	"github.com/gatekit/gatekit/ratelimit"
)

// Most claims of each kind one Request may hold.
const (
	// MaxRates is the most rate claims of one Request: requests per
	// minute and per day, tokens, input and output tokens, and a spare.
	MaxRates = 6
	// MaxSlots is the most concurrency claims of one Request.
	MaxSlots = 4
	// MaxBudgets is the most budget claims of one Request.
	MaxBudgets = budget.MaxScopes
)

// Defaults of every Store's configuration.
const (
	// DefaultTTL is how long an unsettled reservation holds its slots and
	// budget amounts when a store's configuration sets no TTL.
	DefaultTTL = 10 * time.Minute
	// DefaultSettleGrace is how long after a reservation expires Settle
	// still records its spend, when a store's configuration sets none.
	DefaultSettleGrace = time.Hour
)

// Errors a Store returns for calls it cannot carry out, besides backend
// failures. Test for them with errors.Is.
var (
	// ErrInvalidRequest: a Request breaks a rule of Validate.
	ErrInvalidRequest = errors.New("admission: invalid request")
	// ErrUnknownReservation: the reservation was never made by this
	// store, was settled already, or expired more than the store's
	// settle grace ago and was forgotten.
	ErrUnknownReservation = errors.New("admission: unknown reservation")
)

// Rate is a claim on a token bucket: N units of Key's bucket under Policy.
type Rate struct {
	// Key names the bucket among the Request's Holder's; stores keep it
	// under the Request's Tag.
	Key string
	// Policy is the bucket's rate and burst.
	Policy ratelimit.Policy
	// N is the units the request takes; 0 only checks that the bucket is
	// not empty.
	N int64
	// Refund makes Settle give back the units the request did not use
	// (tokens); without it what was taken stays taken (requests).
	Refund bool
}

// Slot is a claim on a concurrency limit: one of Limit slots of Key, held
// until Settle or the reservation's expiry.
type Slot struct {
	// Key names the limit among the Request's Holder's; stores keep it
	// under the Request's Tag.
	Key string
	// Limit is how many reservations may hold a slot of Key at once; at
	// least 1.
	Limit int64
}

// Request is everything one request must fit.
type Request struct {
	// Tag groups every key of the request, the way budget.Scope.Tag does:
	// stores keep them together (one Redis Cluster slot). Use the
	// account. It must not contain '{' or '}'.
	Tag string
	// Holder is whose limits the rate and slot claims are, such as an API
	// key's id: a bucket or a slot limit is named by Tag, Holder and Key
	// together, so that one Key (a route's) serves every holder. It may be
	// empty.
	Holder string
	// Rates and Slots are the rate and concurrency claims, at most
	// MaxRates and MaxSlots of them.
	Rates []Rate
	Slots []Slot
	// Budgets are the budgets the request must fit, at most MaxBudgets,
	// each with the Request's Tag: Cost is held in every one of them, in
	// its current period. A budget fits Cost when spent + held + Cost <=
	// Limit (a Cost of 0 fits while the budget is not exhausted).
	Budgets []budget.Scope
	// Cost is the most the request may cost.
	Cost budget.Micros
}

// Kind says which sort of claim refused a Request.
type Kind uint8

// The kinds of claims.
const (
	KindNone Kind = iota
	KindRate
	KindSlot
	KindBudget
)

// String names k as metrics and logs say it.
func (k Kind) String() string {
	switch k {
	case KindRate:
		return "rate"
	case KindSlot:
		return "slot"
	case KindBudget:
		return "budget"
	}
	return "none"
}

// ID identifies a reservation within the store that made it. The zero ID
// identifies none.
type ID struct {
	// Tag is the Request's Tag.
	Tag string
	// Seq tells a Tag's reservations apart.
	Seq uint64
}

// String formats id for logs: Tag, "/", Seq.
func (id ID) String() string { return id.Tag + "/" + strconv.FormatUint(id.Seq, 10) }

// Result is a Store's answer to Reserve.
type Result struct {
	// Allowed reports whether every claim was taken. A refusal takes
	// nothing anywhere.
	Allowed bool
	// ID identifies the reservation, for Settle; zero when refused.
	ID ID
	// Rates holds, for each rate claim in order, its bucket's decision:
	// after the claim was taken when Allowed, and as the claim found it
	// when not (then only the refusing claim has Allowed false).
	Rates [MaxRates]ratelimit.Decision
	// InUse holds, for each slot claim in order, how many slots are held:
	// the request's own included when Allowed.
	InUse [MaxSlots]int64
	// Budget is the index of the budget claim Balance describes: the one
	// that refused, or when Allowed the one with the least remaining
	// afterwards (the first of them on a tie). Meaningless without budget
	// claims.
	Budget int
	// Balance is that budget's balance: after the claim was held when
	// Allowed, before it when refused.
	Balance budget.Balance
	// Refused names the claim that refused, the first in the order
	// rates, slots, budgets: its Kind and its index among its kind's
	// claims. KindNone when Allowed.
	Refused Kind
	Index   int
	// Never reports that the refusing claim can never fit, whatever
	// happens meanwhile: a rate claim of more than its burst, or a Cost
	// of more than a budget's whole Limit (any Cost, for a Limit of 0).
	Never bool
}

// RetryAfter is the soonest the refused claim could fit: the bucket's
// wait for a rate claim; 0, meaning unknown, for a slot (it frees when
// another request ends) and for a budget or a claim that can never fit.
func (r *Result) RetryAfter() time.Duration {
	if r.Refused == KindRate && !r.Never {
		return r.Rates[r.Index].RetryAfter
	}
	return 0
}

// Usage is what a request used, as Settle records it.
type Usage struct {
	// Used holds, for each rate claim in order, the units the request
	// used. A Refund claim gets back N minus Used (nothing when Used >= N);
	// other claims ignore it.
	Used [MaxRates]int64
	// Cost is what the request cost, recorded as spent in every budget of
	// the reservation, but never more than the Request's Cost: the excess
	// is the caller's to report, never charged past the cap.
	Cost budget.Micros
}

// SettleResult is a Store's answer to Settle.
type SettleResult struct {
	// Expired reports that the reservation had outlived its TTL, so its
	// slots and budget amounts were no longer held; its spend was
	// recorded and its unused units given back all the same.
	Expired bool
}

// Store keeps admission state. Every implementation in gatekit passes the
// conformance suite in package admissiontest.
//
// Reserve takes every claim of r or none: when one does not fit, the
// Result says which and nothing changes. A reservation holds its slots and
// budget amounts until Settle, or until the store's TTL passes: it then expires and
// stops holding anything, so a process that dies between Reserve and
// Settle leaks nothing. Units taken from buckets are not given back on
// expiry. Settle of an expired reservation still records its spend (money
// spent is money spent) for the store's settle grace; after that it
// returns ErrUnknownReservation and records nothing.
//
// A Request with no slot claim, no budget and no Refund rate claim leaves
// nothing to settle (see Request.Settles): Reserve takes its units and
// makes no reservation, and its ID is zero. So a Request with N == 0 in
// every such rate claim only looks at its buckets.
//
// Settle must be given the Request its reservation was made with: stores
// keep only what they must, and read the claims from it. It frees the
// slots, ends the budget holds recording u.Cost (capped by r.Cost) as
// spent in the period the reservation was made in, and gives back the
// units Refund claims did not use. A second Settle of one reservation
// returns ErrUnknownReservation and changes nothing.
//
// err is non-nil only when no answer could be given: the backend failed or
// timed out, ctx ended, r is not valid (ErrInvalidRequest), or the
// reservation is unknown (ErrUnknownReservation). A refusal is never an
// error.
//
// Implementations are safe for concurrent use, and each call is atomic
// across every process sharing the store's backend.
type Store interface {
	// Reserve takes every claim of r, or none.
	Reserve(ctx context.Context, r *Request) (Result, error)
	// Settle ends reservation id of r, recording u.
	Settle(ctx context.Context, r *Request, id ID, u Usage) (SettleResult, error)
	// Balance returns scope's balance in its current period.
	Balance(ctx context.Context, scope budget.Scope) (budget.Balance, error)
}

// Pinger is implemented by stores whose state lives in a backend that can
// be unreachable, such as admission/redisstore's Redis: Ping reports
// whether the backend answers now, returning nil if it does and otherwise
// why not, within the store's own timeout. Readiness checks use it (see
// gatekit.Gate.Ready); stores in memory do not implement it, as they
// always answer.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Validate reports why r cannot be reserved, or nil if it can. The error
// wraps ErrInvalidRequest. Every store checks it first; it is exported for
// stores in other packages.
func Validate(r *Request) error { return validate(r, nil) }

// validate is Validate, writing the bucket parameters of r's rate claims
// to params when it is not nil.
func validate(r *Request, params *[MaxRates]bucket.Params) error {
	switch {
	case r.Tag == "":
		return fmt.Errorf("%w: empty Tag", ErrInvalidRequest)
	case strings.ContainsAny(r.Tag, "{}"):
		return fmt.Errorf("%w: Tag %q contains '{' or '}'", ErrInvalidRequest, r.Tag)
	case len(r.Rates) > MaxRates || len(r.Slots) > MaxSlots || len(r.Budgets) > MaxBudgets:
		return fmt.Errorf("%w: %d rates, %d slots, %d budgets: more than %d, %d, %d", ErrInvalidRequest,
			len(r.Rates), len(r.Slots), len(r.Budgets), MaxRates, MaxSlots, MaxBudgets)
	}
	for i, c := range r.Rates {
		switch {
		case c.Key == "":
			return fmt.Errorf("%w: rate %d has an empty Key", ErrInvalidRequest, i)
		case c.N < 0:
			return fmt.Errorf("%w: rate %d takes %d units", ErrInvalidRequest, i, c.N)
		}
		p, err := bucket.New(c.Policy.Limit, c.Policy.Window, c.Policy.Burst)
		if err != nil {
			return fmt.Errorf("%w: rate %d: %w", ErrInvalidRequest, i, err)
		}
		if params != nil {
			params[i] = p
		}
		for _, o := range r.Rates[:i] {
			if o.Key == c.Key {
				return fmt.Errorf("%w: rate key %q appears twice", ErrInvalidRequest, c.Key)
			}
		}
	}
	for i, s := range r.Slots {
		switch {
		case s.Key == "":
			return fmt.Errorf("%w: slot %d has an empty Key", ErrInvalidRequest, i)
		case s.Limit < 1:
			return fmt.Errorf("%w: slot %d has a Limit of %d", ErrInvalidRequest, i, s.Limit)
		}
		for _, o := range r.Slots[:i] {
			if o.Key == s.Key {
				return fmt.Errorf("%w: slot key %q appears twice", ErrInvalidRequest, s.Key)
			}
		}
	}
	for _, b := range r.Budgets {
		if b.Tag != r.Tag {
			return fmt.Errorf("%w: budget %v has Tag %q, not the request's %q", ErrInvalidRequest, b, b.Tag, r.Tag)
		}
	}
	if len(r.Budgets) > 0 {
		if err := budget.ValidateHold(r.Budgets, r.Cost); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
	} else if err := budget.ValidateAmount(r.Cost); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

// Settles reports whether a reservation of r holds anything Settle must
// end or give back: a slot, a budget amount, or units of a Refund rate
// claim. Without, Reserve makes no reservation (see Store).
func (r *Request) Settles() bool {
	if len(r.Slots) > 0 || len(r.Budgets) > 0 {
		return true
	}
	for _, c := range r.Rates {
		if c.Refund && c.N > 0 {
			return true
		}
	}
	return false
}
