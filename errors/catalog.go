package errors

import "net/http"

// Code is a machine-readable error code, the `code` field of every envelope.
// Clients branch on it; it never changes meaning once published.
type Code string

// The codes of the catalog. Each has exactly one status, type and retryable
// flag, given by [Lookup].
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeInvalidArgument      Code = "invalid_argument"
	CodeContextExceeded      Code = "context_exceeded"
	CodeUnsafeContent        Code = "unsafe_content"
	CodeUnsupportedInterface Code = "unsupported_interface"
	CodeMissingAPIKey        Code = "missing_api_key"
	CodeInvalidAPIKey        Code = "invalid_api_key"
	CodeExpiredAPIKey        Code = "expired_api_key"
	CodeBudgetExceeded       Code = "budget_exceeded"
	CodeUnauthorized         Code = "unauthorized"
	CodeModelNotAllowed      Code = "model_not_allowed"
	CodeNotFound             Code = "not_found"
	CodeUnknownModel         Code = "unknown_model"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeConflict             Code = "conflict"
	CodeIdempotencyConflict  Code = "idempotency_conflict"
	CodeIdempotencyMismatch  Code = "idempotency_mismatch"
	CodePayloadTooLarge      Code = "payload_too_large"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeRateLimitExceeded    Code = "rate_limit_exceeded"
	CodeTokensExceeded       Code = "tokens_exceeded"
	CodeConcurrencyExceeded  Code = "concurrency_exceeded"
	CodeInternalError        Code = "internal_error"
	CodeFailedRequest        Code = "failed_request"
	CodeNotImplemented       Code = "not_implemented"
	CodeModelServerError     Code = "model_server_error"
	CodeModelOverloaded      Code = "model_overloaded"
	CodeModelUnavailable     Code = "model_unavailable"
	CodeServiceUnavailable   Code = "service_unavailable"
	CodeModelTimeout         Code = "model_timeout"
	CodeStreamError          Code = "stream_error"
	CodeStreamTerminated     Code = "stream_terminated"
)

// The error types of the envelope's `type` field, as OpenAI's SDKs know them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeBilling        = "billing_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeConflict       = "conflict_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeEngine         = "engine_error"
)

// Spec is one row of the catalog: what a code means on the wire.
type Spec struct {
	// Code is the envelope's `code`.
	Code Code
	// Status is the HTTP status the code is answered with.
	Status int
	// Type is the envelope's `type`.
	Type string
	// Retryable reports whether a client may send the same request again;
	// it is sent as the `x-should-retry` header.
	Retryable bool
	// MidStream marks codes that only occur inside an event stream, after
	// the status line was sent; Status is then what a non-stream response
	// would carry.
	MidStream bool
	// Message is the default human sentence for the code.
	Message string
}

// catalog is the table behind Catalog and Lookup, in the order the README
// shows it. It is never handed out; Catalog returns a copy.
var catalog = [...]Spec{
	{CodeInvalidRequest, http.StatusBadRequest, TypeInvalidRequest, false, false, "The request could not be understood."},
	{CodeInvalidArgument, http.StatusBadRequest, TypeInvalidRequest, false, false, "A parameter of the request is invalid."},
	{CodeContextExceeded, http.StatusBadRequest, TypeInvalidRequest, false, false, "The request exceeds the model's context length."},
	{CodeUnsafeContent, http.StatusBadRequest, TypeInvalidRequest, false, false, "The request was rejected by the content policy."},
	{CodeUnsupportedInterface, http.StatusBadRequest, TypeInvalidRequest, false, false, "The model does not support this interface."},
	{CodeMissingAPIKey, http.StatusUnauthorized, TypeAuthentication, false, false, "No API key was provided."},
	{CodeInvalidAPIKey, http.StatusUnauthorized, TypeAuthentication, false, false, "The API key provided is not valid."},
	{CodeExpiredAPIKey, http.StatusUnauthorized, TypeAuthentication, false, false, "The API key provided has expired."},
	{CodeBudgetExceeded, http.StatusPaymentRequired, TypeBilling, false, false, "The budget for this key has been exhausted."},
	{CodeUnauthorized, http.StatusForbidden, TypePermission, false, false, "The API key is not allowed to perform this request."},
	{CodeModelNotAllowed, http.StatusForbidden, TypePermission, false, false, "The API key is not allowed to use this model."},
	{CodeNotFound, http.StatusNotFound, TypeNotFound, false, false, "The requested resource does not exist."},
	{CodeUnknownModel, http.StatusNotFound, TypeNotFound, false, false, "The requested model does not exist."},
	{CodeMethodNotAllowed, http.StatusMethodNotAllowed, TypeInvalidRequest, false, false, "The method is not allowed for this resource."},
	{CodeConflict, http.StatusConflict, TypeConflict, false, false, "The request conflicts with the current state of the resource."},
	{CodeIdempotencyConflict, http.StatusConflict, TypeConflict, true, false, "A request with this idempotency key is still in progress."},
	{CodeIdempotencyMismatch, http.StatusUnprocessableEntity, TypeInvalidRequest, false, false, "This idempotency key was used with a different request."},
	{CodePayloadTooLarge, http.StatusRequestEntityTooLarge, TypeInvalidRequest, false, false, "The request body is too large."},
	{CodeUnsupportedMediaType, http.StatusUnsupportedMediaType, TypeInvalidRequest, false, false, "The request's content type is not supported."},
	{CodeRateLimitExceeded, http.StatusTooManyRequests, TypeRateLimit, true, false, "Rate limit reached for requests."},
	{CodeTokensExceeded, http.StatusTooManyRequests, TypeRateLimit, true, false, "Rate limit reached for tokens."},
	{CodeConcurrencyExceeded, http.StatusTooManyRequests, TypeRateLimit, true, false, "Too many requests are in flight at once."},
	{CodeInternalError, http.StatusInternalServerError, TypeServer, false, false, "The server had an error while processing the request."},
	{CodeFailedRequest, http.StatusInternalServerError, TypeServer, false, false, "The request could not be completed."},
	{CodeNotImplemented, http.StatusNotImplemented, TypeServer, false, false, "This operation is not implemented."},
	{CodeModelServerError, http.StatusBadGateway, TypeEngine, true, false, "The model server returned an error."},
	{CodeModelOverloaded, http.StatusServiceUnavailable, TypeEngine, true, false, "The model is overloaded. Please try again later."},
	{CodeModelUnavailable, http.StatusServiceUnavailable, TypeEngine, false, false, "The model is currently unavailable."},
	{CodeServiceUnavailable, http.StatusServiceUnavailable, TypeServer, true, false, "The service is temporarily unavailable. Please try again later."},
	{CodeModelTimeout, http.StatusGatewayTimeout, TypeEngine, true, false, "The model did not respond in time."},
	{CodeStreamError, http.StatusBadGateway, TypeEngine, true, true, "The stream failed before it completed."},
	{CodeStreamTerminated, http.StatusBadGateway, TypeEngine, true, true, "The stream was terminated before it completed."},
}

// Catalog returns every code with its status, type and retryable flag, in a
// stable order. The slice is a copy; changing it changes nothing else.
func Catalog() []Spec {
	out := make([]Spec, len(catalog))
	copy(out, catalog[:])
	return out
}

// Lookup returns the catalog row of code, and false for a code the catalog
// does not know.
func Lookup(code Code) (Spec, bool) {
	for _, sp := range catalog {
		if sp.Code == code {
			return sp, true
		}
	}
	return Spec{}, false
}
