package budget

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults shared by every Ledger's configuration.
const (
	// DefaultHoldTTL is how long an unsettled hold reserves its amount when
	// a Ledger's HoldTTL is 0.
	DefaultHoldTTL = 10 * time.Minute
	// DefaultSettleGrace is how long after a hold expires Settle still
	// records its cost when a Ledger's SettleGrace is 0.
	DefaultSettleGrace = time.Hour
)

// MaxScopes is the most scopes one hold may span.
const MaxScopes = 8

// Errors a Ledger returns for calls it cannot carry out, besides backend
// failures. Test for them with errors.Is.
var (
	// ErrUnknownHold: the hold id was never issued by this Ledger, or the
	// hold was already settled or released, or it expired more than the
	// Ledger's SettleGrace ago and was forgotten.
	ErrUnknownHold = errors.New("budget: unknown hold")
	// ErrInvalidScope: a Scope is not valid (see Scope.Valid), or the
	// scopes of a hold are empty, too many, have different Tags or repeat
	// one budget.
	ErrInvalidScope = errors.New("budget: invalid scope")
	// ErrInvalidAmount: an amount is negative or more than MaxMicros.
	ErrInvalidAmount = errors.New("budget: invalid amount")
)

// Scope is one budget a request must fit: at most Limit spent per Period by
// everything charged to Kind ID.
//
// A budget is identified by Tag, Kind, ID and Period: two Scopes that agree
// on those four are the same budget, whatever their Limits (a changed Limit
// applies from the next Hold, to what was already spent). So a key may have a
// daily and a monthly budget at once.
type Scope struct {
	// Tag groups the budgets that one hold may span: every Scope of a Hold
	// must have the same Tag. Use the account id, for an account's budget
	// and for those of its keys alike. Stores keep a Tag's budgets together
	// (in one Redis Cluster slot; under one lock in Memory). Required; it
	// must not contain '{' or '}'.
	Tag string
	// Kind says what ID names, such as "key" or "account". Required; it
	// must not contain ':'.
	Kind string
	// ID names the key, account or other holder of the budget. Required.
	ID string
	// Limit is the most that may be spent per period, from 0 (nothing may
	// be spent) to MaxMicros.
	Limit Micros
	// Period is how often the budget starts over; None (the zero value)
	// means never.
	Period Period
}

// Valid reports why s cannot be used, or nil if it can. The error wraps
// ErrInvalidScope.
func (s Scope) Valid() error {
	switch {
	case s.Tag == "":
		return fmt.Errorf("%w: empty Tag", ErrInvalidScope)
	case strings.IndexByte(s.Tag, '{') >= 0 || strings.IndexByte(s.Tag, '}') >= 0:
		return fmt.Errorf("%w: Tag %q contains '{' or '}'", ErrInvalidScope, s.Tag)
	case s.Kind == "":
		return fmt.Errorf("%w: empty Kind", ErrInvalidScope)
	case strings.IndexByte(s.Kind, ':') >= 0:
		return fmt.Errorf("%w: Kind %q contains ':'", ErrInvalidScope, s.Kind)
	case s.ID == "":
		return fmt.Errorf("%w: empty ID", ErrInvalidScope)
	case s.Limit < 0 || s.Limit > MaxMicros:
		return fmt.Errorf("%w: Limit %d is outside [0, MaxMicros]", ErrInvalidScope, int64(s.Limit))
	case !s.Period.Valid():
		return fmt.Errorf("%w: unknown %v", ErrInvalidScope, s.Period)
	}
	return nil
}

// String names s for messages: "key k_123 (daily)".
func (s Scope) String() string {
	return s.Kind + " " + s.ID + " (" + s.Period.String() + ")"
}

// same reports whether s and o are the same budget.
func (s Scope) same(o Scope) bool {
	return s.Tag == o.Tag && s.Kind == o.Kind && s.ID == o.ID && s.Period == o.Period
}

// ValidateHold reports why a Hold of amount across scopes cannot be
// attempted, or nil if it can: the error wraps ErrInvalidScope or
// ErrInvalidAmount. Every Ledger checks this before anything else; it is
// exported for Ledger implementations in other packages.
func ValidateHold(scopes []Scope, amount Micros) error {
	if len(scopes) == 0 {
		return fmt.Errorf("%w: a hold needs at least one scope", ErrInvalidScope)
	}
	if len(scopes) > MaxScopes {
		return fmt.Errorf("%w: %d scopes, more than MaxScopes (%d)", ErrInvalidScope, len(scopes), MaxScopes)
	}
	for i, s := range scopes {
		if err := s.Valid(); err != nil {
			return err
		}
		if s.Tag != scopes[0].Tag {
			return fmt.Errorf("%w: scopes of one hold have different Tags (%q, %q)", ErrInvalidScope, scopes[0].Tag, s.Tag)
		}
		for _, o := range scopes[:i] {
			if s.same(o) {
				return fmt.Errorf("%w: %v appears twice", ErrInvalidScope, s)
			}
		}
	}
	return ValidateAmount(amount)
}

// ValidateAmount reports why m cannot be held or settled, or nil if it can.
// The error wraps ErrInvalidAmount.
func ValidateAmount(m Micros) error {
	if m < 0 || m > MaxMicros {
		return fmt.Errorf("%w: %d is outside [0, MaxMicros]", ErrInvalidAmount, int64(m))
	}
	return nil
}

// HoldID identifies a hold within the Ledger that made it. Ledgers choose
// its fields; callers only keep it to pass back to Settle or Release. The
// zero HoldID identifies no hold.
type HoldID struct {
	// Tag is the Tag of the hold's scopes.
	Tag string
	// Seq tells the holds of a Tag apart; no two holds a Ledger makes on
	// one Tag have the same Seq.
	Seq uint64
}

// String formats id for logs: Tag, "/", Seq.
func (id HoldID) String() string {
	return id.Tag + "/" + strconv.FormatUint(id.Seq, 10)
}

// Balance is the state of one budget in its current period.
type Balance struct {
	// Limit is the budget's Limit.
	Limit Micros
	// Spent is what was settled in the period. It can exceed Limit when
	// settlements cost more than their holds.
	Spent Micros
	// Held is what live holds reserve in the period.
	Held Micros
	// Remaining is Limit - Spent - Held, or 0 if that is negative.
	Remaining Micros
	// ResetsAt is when the next period starts, in the Ledger's time zone;
	// the zero Time for a budget whose Period is None.
	ResetsAt time.Time
}

// NewBalance returns the Balance of a budget with the given limit, spent and
// held amounts, computing Remaining. It is for Ledger implementations.
func NewBalance(limit, spent, held Micros, resetsAt time.Time) Balance {
	return Balance{Limit: limit, Spent: spent, Held: held, Remaining: max(limit-spent-held, 0), ResetsAt: resetsAt}
}

// HoldResult is a Ledger's answer to Hold.
type HoldResult struct {
	// Allowed reports whether the amount was reserved, in every scope.
	// A refusal reserves nothing anywhere.
	Allowed bool
	// ID identifies the new hold; it is the zero HoldID when Hold refused.
	ID HoldID
	// Scope is the budget that Balance describes. When refused, it is the
	// first of the hold's scopes (in the order given to Hold) that had no
	// room; when allowed, the one with the least Remaining afterwards (the
	// first of them on a tie), the figure to show a client.
	Scope Scope
	// Balance is Scope's balance: before the refused request, or after the
	// allowed one.
	Balance Balance
}

// SettleResult is a Ledger's answer to Settle.
type SettleResult struct {
	// Held is what the hold had reserved: the amount given to Hold.
	Held Micros
	// Expired reports that the hold had outlived its TTL, so no longer
	// reserved anything; the actual cost was recorded as spent all the
	// same.
	Expired bool
	// Scope is the hold's budget with the least Remaining after the
	// settlement (the first of them, in the order given to Hold, on a tie).
	Scope Scope
	// Balance is Scope's balance after the settlement.
	Balance Balance
}

// Ledger reserves, records and reports spending against budgets. Every
// implementation in gatekit passes the conformance suite in package
// budgettest, so one can replace another without changing any answer.
//
// Amounts are checked in each budget's current period, computed from the
// Ledger's clock in its time zone. A budget fits an amount when Spent + Held
// + amount <= Limit; an amount of 0 fits when Spent + Held < Limit, that is
// while the budget is not exhausted. So a Limit of 0 refuses every hold, of
// any amount, and a hold of 0 (for work whose cost is only known afterwards)
// is refused by an exhausted budget.
//
// Every hold expires after the Ledger's HoldTTL unless settled or released
// before: it then stops reserving anything, so a process that crashes
// between Hold and Settle leaks nothing. Its record is kept for the
// Ledger's SettleGrace more, so that a late Settle still records what was
// spent (money spent is money spent, however late it is reported); after
// that the hold is forgotten and Settle returns ErrUnknownHold.
//
// err is non-nil only when no answer could be given: the backend failed or
// timed out, ctx ended, an argument was invalid (ErrInvalidScope,
// ErrInvalidAmount), or a hold id was unknown (ErrUnknownHold). Running out
// of budget is never an error: it is a HoldResult with Allowed false.
//
// Implementations are safe for concurrent use, and each call is atomic
// across every process sharing the Ledger's backend.
type Ledger interface {
	// Hold reserves amount in every one of scopes (1 to MaxScopes budgets
	// with the same Tag), in each one's current period, if it fits all of
	// them, and nothing anywhere otherwise.
	Hold(ctx context.Context, scopes []Scope, amount Micros) (HoldResult, error)

	// Settle ends hold id, recording actual, which may be more or less than
	// the amount held, as spent in every one of its budgets, in the period
	// the hold was made in. Settling an expired hold records actual too.
	// Settling a hold a second time returns ErrUnknownHold and records
	// nothing.
	Settle(ctx context.Context, id HoldID, actual Micros) (SettleResult, error)

	// Release ends hold id without recording any spending, for work that
	// failed or was abandoned before it cost anything. Releasing an expired
	// hold just forgets it; releasing a hold already ended returns
	// ErrUnknownHold.
	Release(ctx context.Context, id HoldID) error

	// Balance returns scope's balance in its current period. A budget never
	// used has Spent and Held 0.
	Balance(ctx context.Context, scope Scope) (Balance, error)
}
