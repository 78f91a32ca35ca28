package errors

import (
	"fmt"
	"time"
)

// The constructors below return a fresh *Error for one code each, with the
// catalog's status, type and retryable flag. Where a constructor takes a
// message, an empty one takes the catalog's default sentence.

// InvalidRequest is 400 invalid_request: the body or request as a whole
// could not be understood (malformed JSON, trailing data, a truncated body).
func InvalidRequest(message string) *Error { return New(CodeInvalidRequest, message) }

// InvalidArgument is 400 invalid_argument: param (a JSON path such as
// "messages[0].role") holds a value the API does not accept.
func InvalidArgument(param, message string) *Error {
	e := New(CodeInvalidArgument, message)
	e.Param = param
	return e
}

// ContextExceeded is 400 context_exceeded: the input does not fit the
// model's context window.
func ContextExceeded(message string) *Error { return New(CodeContextExceeded, message) }

// UnsafeContent is 400 unsafe_content: a content policy rejected the input.
func UnsafeContent(message string) *Error { return New(CodeUnsafeContent, message) }

// UnsupportedInterface is 400 unsupported_interface: the model does not
// serve this kind of request.
func UnsupportedInterface(message string) *Error { return New(CodeUnsupportedInterface, message) }

// MissingAPIKey is 401 missing_api_key: the request carried no key.
func MissingAPIKey() *Error {
	return New(CodeMissingAPIKey, "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'.")
}

// InvalidAPIKey is 401 invalid_api_key: the key is not known. The message
// never repeats the key.
func InvalidAPIKey() *Error {
	return New(CodeInvalidAPIKey, "Incorrect API key provided.")
}

// ExpiredAPIKey is 401 expired_api_key: the key was valid until at, and
// the message says when (in UTC, RFC 3339). The message never repeats the
// key.
func ExpiredAPIKey(at time.Time) *Error {
	return New(CodeExpiredAPIKey, "The API key provided expired at "+at.UTC().Format(time.RFC3339)+". Ask for a new key.")
}

// MalformedAuthorization is 401 missing_api_key for an Authorization
// header that is not "Bearer KEY" (another scheme, or no key after the
// scheme): no usable key was provided, and the message says why. It never
// repeats the header.
func MalformedAuthorization() *Error {
	return New(CodeMissingAPIKey, "Malformed Authorization header: expected 'Bearer YOUR_KEY', the scheme Bearer followed by the key.")
}

// BudgetExceeded is 402 budget_exceeded; message names the scope and limit
// that ran out.
func BudgetExceeded(message string) *Error { return New(CodeBudgetExceeded, message) }

// Unauthorized is 403 unauthorized: the key may not perform this request.
func Unauthorized(message string) *Error { return New(CodeUnauthorized, message) }

// ModelNotAllowed is 403 model_not_allowed for model (clipped), with param
// "model".
func ModelNotAllowed(model string) *Error {
	e := Newf(CodeModelNotAllowed, "Your API key is not allowed to use the model '%s'.", Clip(model))
	e.Param = "model"
	return e
}

// NotFound is 404 not_found.
func NotFound(message string) *Error { return New(CodeNotFound, message) }

// UnknownModel is 404 unknown_model for model (clipped), with param
// "model".
func UnknownModel(model string) *Error {
	e := Newf(CodeUnknownModel, "The model '%s' does not exist.", Clip(model))
	e.Param = "model"
	return e
}

// MethodNotAllowed is 405 method_not_allowed.
func MethodNotAllowed(message string) *Error { return New(CodeMethodNotAllowed, message) }

// Conflict is 409 conflict.
func Conflict(message string) *Error { return New(CodeConflict, message) }

// IdempotencyConflict is 409 idempotency_conflict, retryable after
// retryAfter: a request with the same idempotency key is still running.
func IdempotencyConflict(retryAfter time.Duration) *Error {
	e := New(CodeIdempotencyConflict, "")
	e.RetryAfter = retryAfter
	return e
}

// IdempotencyMismatch is 422 idempotency_mismatch: the idempotency key was
// used before with a different request.
func IdempotencyMismatch() *Error { return New(CodeIdempotencyMismatch, "") }

// PayloadTooLarge is 413 payload_too_large, naming limit (in bytes).
func PayloadTooLarge(limit int64) *Error {
	return Newf(CodePayloadTooLarge, "The request body exceeds the limit of %s.", FormatBytes(limit))
}

// UnsupportedMediaType is 415 unsupported_media_type: the body is not in
// the wanted content type. got, the request's, is clipped.
func UnsupportedMediaType(want, got string) *Error {
	if got == "" {
		return Newf(CodeUnsupportedMediaType, "The request has no Content-Type; expected '%s'.", want)
	}
	return Newf(CodeUnsupportedMediaType, "Unsupported Content-Type '%s'; expected '%s'.", Clip(got), want)
}

// RateLimitExceeded is 429 rate_limit_exceeded, retryable after retryAfter.
func RateLimitExceeded(message string, retryAfter time.Duration) *Error {
	e := New(CodeRateLimitExceeded, message)
	e.RetryAfter = retryAfter
	return e
}

// TokensExceeded is 429 tokens_exceeded, retryable after retryAfter.
func TokensExceeded(message string, retryAfter time.Duration) *Error {
	e := New(CodeTokensExceeded, message)
	e.RetryAfter = retryAfter
	return e
}

// ConcurrencyExceeded is 429 concurrency_exceeded: too many of the
// caller's requests are running at once. Retryable after retryAfter.
func ConcurrencyExceeded(message string, retryAfter time.Duration) *Error {
	e := New(CodeConcurrencyExceeded, message)
	e.RetryAfter = retryAfter
	return e
}

// InternalError is 500 internal_error. cause is logged, never sent.
func InternalError(cause error) *Error {
	e := New(CodeInternalError, "")
	e.Cause = cause
	return e
}

// FailedRequest is 500 failed_request.
func FailedRequest(message string) *Error { return New(CodeFailedRequest, message) }

// NotImplemented is 501 not_implemented.
func NotImplemented(message string) *Error { return New(CodeNotImplemented, message) }

// ModelServerError is 502 model_server_error, retryable.
func ModelServerError(message string) *Error { return New(CodeModelServerError, message) }

// ModelOverloaded is 503 model_overloaded, retryable after retryAfter (zero
// sends the default hint).
func ModelOverloaded(retryAfter time.Duration) *Error {
	e := New(CodeModelOverloaded, "")
	e.RetryAfter = retryAfter
	return e
}

// ModelUnavailable is 503 model_unavailable, not retryable.
func ModelUnavailable(message string) *Error { return New(CodeModelUnavailable, message) }

// ServiceUnavailable is 503 service_unavailable, retryable after
// retryAfter (zero sends the default hint).
func ServiceUnavailable(retryAfter time.Duration) *Error {
	e := New(CodeServiceUnavailable, "")
	e.RetryAfter = retryAfter
	return e
}

// ModelTimeout is 504 model_timeout, retryable.
func ModelTimeout(message string) *Error { return New(CodeModelTimeout, message) }

// StreamError is stream_error: a stream failed after it started.
func StreamError(message string) *Error { return New(CodeStreamError, message) }

// StreamTerminated is stream_terminated: the server ended a stream early.
func StreamTerminated(message string) *Error { return New(CodeStreamTerminated, message) }

// FormatBytes writes n bytes for people: "1 MiB", "75 MB" style units are
// chosen so that round limits read round.
func FormatBytes(n int64) string {
	type unit struct {
		size int64
		name string
	}
	for _, u := range [...]unit{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}, {1_000_000_000, "GB"}, {1_000_000, "MB"}, {1_000, "kB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

// UnsupportedCharset is 415 unsupported_media_type for a JSON body
// declared in a charset other than UTF-8 (charset, clipped, is the one the
// request named).
func UnsupportedCharset(charset string) *Error {
	return Newf(CodeUnsupportedMediaType, "Unsupported charset '%s' in the Content-Type; the body must be UTF-8 (charset=utf-8, or no charset).", Clip(charset))
}
