// Package alerts warns before budgets run out: when a budget's settled
// spend in its period crosses a threshold (by default 50%, 80% and 100% of
// its limit), a Notifier fires one Alert for that scope, period and
// threshold, to a callback and to an optional webhook signed with
// HMAC-SHA256, retried with backoff until it is delivered (at least
// once). Which alerts fired and which are still to be delivered is kept
// in a Ledger: in memory, on disk (OpenDurable) or on Redis (redisstore),
// so an alert fires once across instances and is still delivered after a
// restart.
package alerts

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Alert is one threshold crossed by one budget in one period. It is the
// webhook's JSON body.
type Alert struct {
	// ID identifies the alert: the same scope, period and threshold
	// always give the same ID, so a receiver can drop a repeated delivery.
	ID string `json:"id"`
	// Scope is the budget's kind ("key" or "account"); ScopeID its id
	// and Account the account it is tagged with.
	Scope   string `json:"scope"`
	ScopeID string `json:"scope_id"`
	Account string `json:"account"`
	// Period is the budget's period ("monthly"); PeriodEnd when it
	// resets, or null for a lifetime budget.
	Period    string     `json:"period"`
	PeriodEnd *time.Time `json:"period_end,omitempty"`
	// Limit and Spent are decimal USD ("5.00"): the budget's limit and
	// its settled spend when the alert fired.
	Limit string `json:"limit_usd"`
	Spent string `json:"spent_usd"`
	// Threshold is the percentage of Limit crossed.
	Threshold int `json:"threshold"`
	// Time is when the alert fired.
	Time time.Time `json:"time"`
}

// alertID names the alert of a scope, period and threshold.
func alertID(kind, id, account string, periodEnd time.Time, threshold int) string {
	end := "none"
	if !periodEnd.IsZero() {
		end = strconv.FormatInt(periodEnd.Unix(), 10)
	}
	return fmt.Sprintf("%s:%s:%s:%s:%d", account, kind, id, end, threshold)
}

// Ledger records which alerts fired and which are not yet delivered. Its
// methods are safe for concurrent use and, on shared stores, atomic
// across processes; err is non-nil only when the store failed.
type Ledger interface {
	// Claim records a as fired and pending; it returns false, changing
	// nothing, when an alert with a.ID was claimed before.
	Claim(ctx context.Context, a Alert) (bool, error)
	// Pending returns the claimed alerts not yet marked delivered.
	Pending(ctx context.Context) ([]Alert, error)
	// Delivered marks the alert id delivered.
	Delivered(ctx context.Context, id string) error
}

// Memory is a Ledger in one process's memory. The zero value is not
// usable: use NewMemory.
type Memory struct {
	mu      sync.Mutex
	claimed map[string]bool
	pending map[string]Alert
}

var _ Ledger = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{claimed: map[string]bool{}, pending: map[string]Alert{}}
}

// Claim implements Ledger.
func (m *Memory) Claim(_ context.Context, a Alert) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claimed[a.ID] {
		return false, nil
	}
	m.claimed[a.ID] = true
	m.pending[a.ID] = a
	return true, nil
}

// Pending implements Ledger.
func (m *Memory) Pending(context.Context) ([]Alert, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Alert, 0, len(m.pending))
	for _, a := range m.pending {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alert) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// Delivered implements Ledger.
func (m *Memory) Delivered(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending, id)
	return nil
}
