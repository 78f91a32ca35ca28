// Package idempotency keeps the state behind Idempotency-Key: which keys are
// being handled right now, and the response each finished one gave, so that
// a retried request is answered from the record instead of running twice.
//
// A Store holds one entry per key. Begin claims a free key for the caller
// (an in-progress marker with a lease), or reports what holds it: the same
// request still running, a finished request whose Record can be replayed, or
// a different request under the same key. The caller that claimed the key
// then either Completes it, storing the response for a while, or Aborts it,
// freeing the key, presenting the token Begin gave it. A marker whose lease
// runs out frees its key by itself, so an instance that dies mid-request
// blocks the key for one lease at most.
//
// Two stores implement Store with identical answers: Memory, in this
// package, for a single process, and redisstore.Store for several instances
// sharing Redis. Package idempotencytest holds the conformance suite both
// pass.
//
// The package knows nothing of Echo; gatekit's middleware package turns
// these answers into replays, 409 idempotency_conflict and 422
// idempotency_mismatch. Keys are opaque: the middleware scopes them to the
// authenticated principal before they reach a Store.
package idempotency
