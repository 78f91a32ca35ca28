// Package ratelimit decides whether a request fits its quota: requests per
// minute, tokens per minute, or any other unit per window.
//
// A Policy is a token bucket: Limit units per Window, of which at most Burst
// can be saved up. A Limiter holds one bucket per key and answers Allow: take
// n units now, or deny with an exact RetryAfter. Every Decision carries what
// rate-limit headers need: the limit, the remaining units, and the time until
// the bucket is full again.
//
// Memory, in this package, implements Limiter for a single process; package
// ratelimittest holds the conformance suite a Limiter must pass. Requests
// that gatekit's middleware admits are limited by package admission, whose
// stores (memory and Redis) run the same bucket arithmetic.
//
// The package knows nothing of HTTP; gatekit's middleware package turns
// decisions into headers and 429 responses.
package ratelimit
