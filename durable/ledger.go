package durable

import (
	"context"

	"github.com/gatekit/gatekit/budget"
)

// ledger is a Store's budget.Ledger: its budget.Memory, closed with the
// Store, and in every-settle mode waiting for each settlement's write.
type ledger struct{ s *Store }

var _ budget.Ledger = (*ledger)(nil)

// Hold implements budget.Ledger.Hold.
func (l *ledger) Hold(ctx context.Context, scopes []budget.Scope, amount budget.Micros) (budget.HoldResult, error) {
	if l.s.closed.Load() {
		return budget.HoldResult{}, ErrClosed
	}
	return l.s.budgets.Hold(ctx, scopes, amount)
}

// Settle implements budget.Ledger.Settle. The settlement is queued for the
// next write; with a negative FlushInterval, Settle returns once it is
// written, with the write's error if it failed (the settlement is recorded
// in memory all the same, and written by the next write).
func (l *ledger) Settle(ctx context.Context, id budget.HoldID, actual budget.Micros) (budget.SettleResult, error) {
	if l.s.closed.Load() {
		return budget.SettleResult{}, ErrClosed
	}
	r, err := l.s.budgets.Settle(ctx, id, actual)
	if err != nil || !l.s.sync || actual == 0 {
		return r, err
	}
	return r, l.s.waitWritten(l.s.swaps.Load())
}

// Release implements budget.Ledger.Release.
func (l *ledger) Release(ctx context.Context, id budget.HoldID) error {
	if l.s.closed.Load() {
		return ErrClosed
	}
	return l.s.budgets.Release(ctx, id)
}

// Balance implements budget.Ledger.Balance.
func (l *ledger) Balance(ctx context.Context, scope budget.Scope) (budget.Balance, error) {
	if l.s.closed.Load() {
		return budget.Balance{}, ErrClosed
	}
	return l.s.budgets.Balance(ctx, scope)
}
