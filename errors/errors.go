// Package errors holds gatekit's error catalog and the envelope every failure
// is answered with.
//
// An [*Error] is a value a handler or middleware returns; the global error
// handler (package middleware) renders it in the service's [Shape]. Every
// code has one row in the catalog ([Catalog], [Lookup]): its HTTP status, its
// type and whether a client should retry. Constructors such as
// [InvalidArgument] and [RateLimitExceeded] fill those from the catalog.
//
// Errors are values: the With methods return a copy, so a package-level
// *Error can be shared between requests without one request's details
// leaking into another's response.
//
// The package is named errors after the precedent of Kubernetes'
// api/errors; import it as apierrors.
package errors

import (
	"context"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// Error is one failure as a client will see it. The zero value is not
// useful; build one with [New] or a constructor named after its code.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Type is the envelope's `type` (for example "invalid_request_error").
	Type string
	// Code is the envelope's `code`.
	Code Code
	// Message is a human sentence shown to the client. For 5xx errors it
	// never holds internal detail; that goes in Cause.
	Message string
	// Param is the JSON path of the offending field ("messages[0].role"),
	// or empty, rendered as null.
	Param string
	// Retryable reports whether the client may send the same request again.
	Retryable bool
	// RetryAfter is how long the client should wait before retrying; zero
	// means no specific hint (retryable errors are then sent a default of
	// one second).
	RetryAfter time.Duration
	// Cause is the underlying error, logged by the server and never sent.
	Cause error
	// RequestID is the id of the request that failed, on errors decoded
	// from a response by [Decode]. Servers leave it empty: the renderer
	// takes the id from [Meta].
	RequestID string
}

// DefaultRetryAfter is the hint sent with a retryable error that carries no
// RetryAfter of its own.
const DefaultRetryAfter = time.Second

// New returns the error for code with the catalog's status, type and
// retryable flag. An empty message takes the catalog's default sentence. A
// code outside the catalog yields an internal_error whose cause names it.
func New(code Code, message string) *Error {
	spec, ok := Lookup(code)
	if !ok {
		e := New(CodeInternalError, "")
		e.Cause = fmt.Errorf("unknown error code %q", code)
		return e
	}
	if message == "" {
		message = spec.Message
	}
	return &Error{
		Status:    spec.Status,
		Type:      spec.Type,
		Code:      spec.Code,
		Message:   message,
		Retryable: spec.Retryable,
	}
}

// Newf is [New] with a formatted message.
func Newf(code Code, format string, args ...any) *Error {
	return New(code, fmt.Sprintf(format, args...))
}

// Error returns the code and message, followed by the cause when there is
// one. It is meant for logs, not for clients.
func (e *Error) Error() string {
	if e.Cause != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Cause.Error()
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the cause, so errors.Is and errors.As see through an *Error.
func (e *Error) Unwrap() error { return e.Cause }

// WithParam returns a copy of e naming the offending field.
func (e *Error) WithParam(param string) *Error {
	c := *e
	c.Param = param
	return &c
}

// WithMessage returns a copy of e with another message.
func (e *Error) WithMessage(message string) *Error {
	c := *e
	c.Message = message
	return &c
}

// WithRetryAfter returns a copy of e hinting that the client wait d.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// WithCause returns a copy of e carrying cause for the server's logs.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Cause = cause
	return &c
}

// RetryHint is the wait a client is told: RetryAfter, or
// [DefaultRetryAfter] for a retryable error without one, or zero for an
// error that is not retryable.
func (e *Error) RetryHint() time.Duration {
	if !e.Retryable {
		return 0
	}
	if e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return DefaultRetryAfter
}

// Seconds rounds d up to whole seconds, as the Retry-After header and the
// envelope's retry_after carry it: a client that waits this long is never
// early. A positive d is at least one second.
func Seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

// Milliseconds rounds d up to whole milliseconds, as Retry-After-Ms carries
// it.
func Milliseconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// As returns the *Error in err's chain, if there is one.
func As(err error) (*Error, bool) {
	return stderrors.AsType[*Error](err)
}

// HasCode reports whether err's chain holds an *Error with code.
func HasCode(err error, code Code) bool {
	e, ok := As(err)
	return ok && e.Code == code
}

// From maps any error to the *Error a client should see. It finds, with
// errors.As, an *Error, an *http.MaxBytesError, a JSON syntax or type error,
// or a context deadline; anything else becomes internal_error with err kept
// as the cause. It never returns nil for a non-nil err and never changes
// err. Echo's and the validator's errors are mapped by package middleware,
// which calls From for the rest.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := As(err); ok {
		return e
	}
	var tooLarge *http.MaxBytesError
	if stderrors.As(err, &tooLarge) {
		return PayloadTooLarge(tooLarge.Limit)
	}
	var syntax *json.SyntaxError
	if stderrors.As(err, &syntax) {
		return InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: %s (at byte %d).", syntax.Error(), syntax.Offset))
	}
	var typ *json.UnmarshalTypeError
	if stderrors.As(err, &typ) {
		return typeError(typ)
	}
	if stderrors.Is(err, context.DeadlineExceeded) {
		return ModelTimeout("").WithCause(err)
	}
	if stderrors.Is(err, context.Canceled) {
		return New(CodeFailedRequest, "The request was cancelled.").WithCause(err)
	}
	return InternalError(err)
}

// typeError words a JSON type mismatch: against a named field it is an
// invalid_argument naming the field; against the whole body it is an
// invalid_request.
func typeError(typ *json.UnmarshalTypeError) *Error {
	want := "another type"
	if typ.Type != nil {
		want = jsonKind(typ.Type.Kind().String())
	}
	got := Clip(typ.Value)
	if typ.Field == "" {
		return InvalidRequest(fmt.Sprintf("The request body must be %s, but got %s instead.", want, got))
	}
	field := Clip(typ.Field)
	return InvalidArgument(field, fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", field, want, got))
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "another type"
}
