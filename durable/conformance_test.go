package durable_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/budget/budgettest"
	"github.com/gatekit/gatekit/durable"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/idempotencytest"
)

// open opens a Store in dir, closed when the test ends.
func open(tb testing.TB, dir string, cfg *durable.Config) *durable.Store {
	tb.Helper()
	s, err := durable.Open(dir, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestLedgerConformance(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flush time.Duration
	}{{"WriteBehind", 0}, {"EverySettle", -1}} {
		t.Run(mode.name, func(t *testing.T) {
			budgettest.Run(t, func(t *testing.T, now func() time.Time, loc *time.Location) budget.Ledger {
				return open(t, t.TempDir(), &durable.Config{Now: now, Location: loc, FlushInterval: mode.flush}).Ledger()
			})
		})
	}
}

func TestIdempotencyConformance(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flush time.Duration
	}{{"WriteBehind", 0}, {"EverySettle", -1}} {
		t.Run(mode.name, func(t *testing.T) {
			idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
				return open(t, t.TempDir(), &durable.Config{Now: now, FlushInterval: mode.flush}).Idempotency()
			})
		})
	}
}

// TestLedgerConformanceAcrossRestarts runs the suite against a ledger that
// closes and reopens its Store whenever no hold is outstanding: before
// every Hold and Balance at such a moment, so that every spend the suite
// checks after a settlement has been through the file.
func TestLedgerConformanceAcrossRestarts(t *testing.T) {
	var restarts atomic.Int64
	budgettest.Run(t, func(t *testing.T, now func() time.Time, loc *time.Location) budget.Ledger {
		r := &restartingLedger{t: t, dir: t.TempDir(), cfg: &durable.Config{Now: now, Location: loc}, restarts: &restarts}
		r.s = open(t, r.dir, r.cfg)
		return r
	})
	if restarts.Load() < 50 {
		t.Fatalf("only %d restarts", restarts.Load())
	}
	t.Logf("%d restarts", restarts.Load())
}

type restartingLedger struct {
	t        *testing.T
	dir      string
	cfg      *durable.Config
	restarts *atomic.Int64

	mu          sync.RWMutex // held to restart; read-held by calls
	s           *durable.Store
	outstanding atomic.Int64 // holds made and not yet ended
}

// restartIfIdle closes and reopens the store if no hold is outstanding.
func (r *restartingLedger) restartIfIdle() {
	if r.outstanding.Load() != 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outstanding.Load() != 0 {
		return
	}
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.s = open(r.t, r.dir, r.cfg)
	r.restarts.Add(1)
}

func (r *restartingLedger) Hold(ctx context.Context, scopes []budget.Scope, amount budget.Micros) (budget.HoldResult, error) {
	r.restartIfIdle()
	r.mu.RLock()
	defer r.mu.RUnlock()
	res, err := r.s.Ledger().Hold(ctx, scopes, amount)
	if res.Allowed {
		r.outstanding.Add(1)
	}
	return res, err
}

func (r *restartingLedger) Settle(ctx context.Context, id budget.HoldID, actual budget.Micros) (budget.SettleResult, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	res, err := r.s.Ledger().Settle(ctx, id, actual)
	if err == nil {
		r.outstanding.Add(-1)
	}
	return res, err
}

func (r *restartingLedger) Release(ctx context.Context, id budget.HoldID) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	err := r.s.Ledger().Release(ctx, id)
	if err == nil {
		r.outstanding.Add(-1)
	}
	return err
}

func (r *restartingLedger) Balance(ctx context.Context, scope budget.Scope) (budget.Balance, error) {
	r.restartIfIdle()
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.s.Ledger().Balance(ctx, scope)
}

// TestIdempotencyConformanceAcrossRestarts runs the suite against a store
// that closes and reopens whenever no key is in progress, before every
// Begin at such a moment: every replay the suite checks then comes from the
// file.
func TestIdempotencyConformanceAcrossRestarts(t *testing.T) {
	var restarts atomic.Int64
	idempotencytest.Run(t, func(t *testing.T, now func() time.Time) idempotency.Store {
		r := &restartingStore{t: t, dir: t.TempDir(), cfg: &durable.Config{Now: now}, restarts: &restarts}
		r.s = open(t, r.dir, r.cfg)
		return r
	})
	if restarts.Load() < 50 {
		t.Fatalf("only %d restarts", restarts.Load())
	}
	t.Logf("%d restarts", restarts.Load())
}

type restartingStore struct {
	t        *testing.T
	dir      string
	cfg      *durable.Config
	restarts *atomic.Int64

	mu          sync.RWMutex
	s           *durable.Store
	outstanding atomic.Int64 // keys begun and not yet completed or aborted
}

func (r *restartingStore) restartIfIdle() {
	if r.outstanding.Load() != 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outstanding.Load() != 0 {
		return
	}
	if err := r.s.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.s = open(r.t, r.dir, r.cfg)
	r.restarts.Add(1)
}

func (r *restartingStore) Begin(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Begin, error) {
	r.restartIfIdle()
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, err := r.s.Idempotency().Begin(ctx, key, fingerprint, lease)
	if b.State == idempotency.Started {
		r.outstanding.Add(1)
	}
	return b, err
}

func (r *restartingStore) Complete(ctx context.Context, key, token string, rec idempotency.Record, ttl time.Duration) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	err := r.s.Idempotency().Complete(ctx, key, token, rec, ttl)
	if err == nil {
		r.outstanding.Add(-1)
	}
	return err
}

func (r *restartingStore) Abort(ctx context.Context, key, token string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	err := r.s.Idempotency().Abort(ctx, key, token)
	if err == nil {
		r.outstanding.Add(-1)
	}
	return err
}
