package durable

import (
	"context"
	"time"

	"github.com/gatekit/gatekit/idempotency"
)

// idemStore is a Store's idempotency.Store: its idempotency.Memory, closed
// with the Store, and in every-settle mode waiting for each completion's
// write.
type idemStore struct{ s *Store }

var _ idempotency.Store = (*idemStore)(nil)

// Begin implements idempotency.Store.Begin.
func (i *idemStore) Begin(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Begin, error) {
	if i.s.closed.Load() {
		return idempotency.Begin{}, ErrClosed
	}
	return i.s.records.Begin(ctx, key, fingerprint, lease)
}

// Complete implements idempotency.Store.Complete. The record is queued for
// the next write; with a negative FlushInterval, Complete returns once it is
// written, with the write's error if it failed (the record is kept in memory
// all the same, and written by the next write).
func (i *idemStore) Complete(ctx context.Context, key, token string, rec idempotency.Record, ttl time.Duration) error {
	if i.s.closed.Load() {
		return ErrClosed
	}
	if err := i.s.records.Complete(ctx, key, token, rec, ttl); err != nil || !i.s.sync {
		return err
	}
	return i.s.waitWritten(i.s.swaps.Load())
}

// Abort implements idempotency.Store.Abort.
func (i *idemStore) Abort(ctx context.Context, key, token string) error {
	if i.s.closed.Load() {
		return ErrClosed
	}
	return i.s.records.Abort(ctx, key, token)
}
