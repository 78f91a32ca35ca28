package admission

import (
	"context"
	"time"

	"github.com/gatekit/gatekit/idempotency"
)

// Once is an idempotent request's claim on its key, made together with
// its reservation by [OnceStore.ReserveOnce].
type Once struct {
	// Key names the request, scoped as the caller needs (by principal, in
	// gatekit's middleware). It is kept under the Request's Tag, so one
	// Key under two Tags is two entries.
	Key string
	// Fingerprint tells payloads apart: the same Key with another
	// fingerprint is a mismatch.
	Fingerprint string
	// Lease is how long a running request holds the Key; positive.
	Lease time.Duration
}

// Done is how a request begun by [OnceStore.ReserveOnce] ends its key:
// with Record kept for TTL, to be replayed, or, when Record is nil, with
// the key freed so that a retry runs again.
type Done struct {
	// Key and Token are the Once's Key and the Token ReserveOnce returned.
	Key, Token string
	// Record is the response to keep, or nil to free the key.
	Record *idempotency.Record
	// TTL is how long Record is kept; positive when Record is set.
	TTL time.Duration
}

// OnceStore is a Store that also keeps idempotency entries, so that an
// idempotent request begins with its reservation in one call and ends
// with its settlement in another: one store round trip before the handler
// and one after it, as for any other request. The Redis store is one; the
// in-process stores need none, since their calls cost no round trip.
type OnceStore interface {
	Store
	// ReserveOnce looks up o.Key under r.Tag first. If a request holds it
	// or finished with it, ReserveOnce returns what it found
	// (idempotency.InProgress, Completed with the Record, or Mismatch) and
	// takes nothing. Otherwise it is Reserve; when the reservation is
	// allowed, the key is claimed in the same step, and the Begin is
	// Started with a Token; when refused, the Begin is zero and the key
	// stays free. A Request with no claims at all only claims the key.
	ReserveOnce(ctx context.Context, r *Request, o Once) (Result, idempotency.Begin, error)
	// SettleOnce is Settle and the end of d.Key in one step. With the zero
	// ID (a reservation that left nothing to settle) it only ends the key.
	// It returns idempotency.ErrLeaseLost when the key was no longer held
	// with d.Token, after settling all the same.
	SettleOnce(ctx context.Context, r *Request, id ID, u Usage, d Done) (SettleResult, error)
}
