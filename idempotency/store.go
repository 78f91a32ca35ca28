package idempotency

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// ErrLeaseLost is returned by Complete and Abort when the caller no longer
// holds the key: its token does not match the key's in-progress marker,
// because the lease ran out (and perhaps another request claimed the key),
// the key was already completed or aborted, or the token was never issued.
// Nothing was changed. For the middleware it means the response cannot be
// kept for replay; the request itself still succeeded or failed as it did.
var ErrLeaseLost = errors.New("idempotency: lease lost")

// ErrInvalidTTL is returned by a Store asked for a lease or a retention that
// is not a positive duration.
var ErrInvalidTTL = errors.New("idempotency: lease or ttl is not positive")

// Store keeps idempotency entries: for each key, nothing, an in-progress
// marker, or a completed Record. Every store in gatekit implements it with
// the same semantics, verified by the conformance suite in package
// idempotencytest.
//
// A key is an opaque string chosen by the caller, of any bytes (NUL
// included); gatekit's middleware passes the principal's id, a NUL and the
// client's Idempotency-Key. Stores never interpret it.
//
// Lifetimes are whole milliseconds: a lease or ttl is rounded up to the next
// millisecond, and an entry created at instant t with lifetime d is alive
// until, and gone from, t + d (t truncated to the millisecond).
//
// For every method, err is non-nil only when the store could not answer: it
// failed or timed out, ctx ended, a duration is not positive (ErrInvalidTTL),
// or, for Complete and Abort, the caller's lease is lost (ErrLeaseLost). A
// conflict or a mismatch is never an error: it is a State. Callers choose
// whether to fail open (run the request without idempotency) or closed on
// error.
//
// Implementations are safe for concurrent use, and each method is atomic
// across every process sharing the store: of any number of concurrent Begins
// on a free key, exactly one is Started.
type Store interface {
	// Begin claims key for a request whose payload has the given
	// fingerprint, or reports what holds it:
	//
	//   - no live entry: it creates an in-progress marker for fingerprint
	//     that expires after lease, and returns Started with a Token. The
	//     caller runs the request, then calls Complete or Abort with the
	//     token.
	//   - an in-progress marker: InProgress if its fingerprint is the same
	//     (the request is still running: 409), Mismatch otherwise (422).
	//   - a completed record: Completed with a copy of the Record if the
	//     fingerprint is the same (replay it), Mismatch otherwise.
	//
	// Only a Started result changes the store. Replays do not extend a
	// record's life.
	Begin(ctx context.Context, key, fingerprint string, lease time.Duration) (Begin, error)

	// Complete replaces the in-progress marker that token identifies with
	// rec, kept for ttl from now. rec.Fingerprint is ignored: the record
	// keeps the fingerprint Begin was given. If rec.CreatedAt is zero, it
	// is set to the time of the call by the store's clock. The store keeps
	// its own copy of rec; the caller may reuse rec.Body afterwards.
	//
	// If the key is no longer held with token (the lease ran out, the key
	// was completed or aborted already), Complete changes nothing and
	// returns ErrLeaseLost, so a slow request can never overwrite the
	// marker or record of a request that claimed the key after it.
	Complete(ctx context.Context, key, token string, rec Record, ttl time.Duration) error

	// Abort deletes the in-progress marker that token identifies, freeing
	// key at once: for a request rejected before its handler ran, or one
	// that failed in a way that must not be replayed. Like Complete, it
	// changes nothing and returns ErrLeaseLost if the key is no longer
	// held with token.
	Abort(ctx context.Context, key, token string) error
}

// State is what Begin found under a key.
type State uint8

// The states Begin reports. The zero State is none of them.
const (
	// Started: the key was free and is now claimed by the caller, who must
	// run the request and then Complete or Abort it.
	Started State = iota + 1
	// InProgress: a request with the same fingerprint holds the key and
	// has not finished (409 idempotency_conflict, retryable).
	InProgress
	// Completed: a request with the same fingerprint finished; its Record
	// is to be replayed.
	Completed
	// Mismatch: the key is held, in progress or completed, by a request
	// with a different fingerprint (422 idempotency_mismatch).
	Mismatch
)

// String returns the state's name, such as "InProgress".
func (s State) String() string {
	switch s {
	case Started:
		return "Started"
	case InProgress:
		return "InProgress"
	case Completed:
		return "Completed"
	case Mismatch:
		return "Mismatch"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Begin is the answer of Store.Begin.
type Begin struct {
	// State is what was found under the key.
	State State
	// Token, set only when State is Started, identifies the caller's
	// in-progress marker: Complete and Abort must present it. It is opaque
	// and never empty.
	Token string
	// Record, set only when State is Completed, is the stored response,
	// with the fingerprint it was stored under. It is a copy that belongs
	// to the caller.
	Record *Record
}

// Record is a finished request's response, as kept for replay.
//
// A Record comes back from a store equal to what was given to Complete,
// except that Fingerprint is the one given to Begin, a nil Header or Body
// may come back empty and vice versa, and CreatedAt keeps its instant to the
// nanosecond but not necessarily its Location.
type Record struct {
	// Fingerprint identifies the request's payload: by convention the hex
	// SHA-256 of its method, path and body (see Fingerprint).
	Fingerprint string
	// Status is the HTTP status code sent.
	Status int
	// Header holds the response headers worth replaying (content type,
	// request id of the original...), chosen by the caller.
	Header http.Header
	// Body is the response body as sent, any bytes. For a stream it is the
	// raw text/event-stream bytes.
	Body []byte
	// Stream reports that Body is a server-sent events stream, to be
	// replayed as one.
	Stream bool
	// CreatedAt is when the response was recorded.
	CreatedAt time.Time
}
