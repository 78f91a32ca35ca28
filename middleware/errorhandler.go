package middleware

import (
	"context"
	stderrors "errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/internal/logthrottle"
)

// ErrorHandlerConfig configures [ErrorHandlerWithConfig].
type ErrorHandlerConfig struct {
	// Shape is the envelope layout. Default: apierrors.ShapeOpenAI.
	Shape apierrors.Shape
	// ShapeFor, when set, returns the layout of c's route, so that one
	// service answers OpenAI routes in OpenAI's envelope and Anthropic
	// routes in Anthropic's, mid-stream errors included; "" takes Shape.
	// It must not allocate: it runs on every error.
	ShapeFor func(c echo.Context) apierrors.Shape
	// AnthropicOverloadedStatus is the status model_overloaded answers
	// with where the layout is apierrors.ShapeAnthropic: 503, the
	// catalog's (default), or 529, Anthropic's own, which its SDKs decode
	// as OverloadedError (see [apierrors.Overloaded529]). Other layouts
	// always answer 503.
	AnthropicOverloadedStatus int
	// Logger receives 5xx causes and panics, with the request id and the
	// status the client got, at most one line a second per error code
	// (the next line counts those left out; panics are always logged).
	// Default: slog.Default().
	Logger *slog.Logger
	// Map, when set, is asked first to turn an error into an *apierrors.Error;
	// returning nil falls through to [ToAPIError]. Use it for a service's
	// own error types.
	Map func(err error) *apierrors.Error
}

// DefaultErrorHandlerConfig renders OpenAI's envelope and logs with
// slog.Default().
var DefaultErrorHandlerConfig = ErrorHandlerConfig{Shape: apierrors.ShapeOpenAI}

// ErrorHandler returns Echo's global error handler with
// [DefaultErrorHandlerConfig]: assign it to e.HTTPErrorHandler.
func ErrorHandler() echo.HTTPErrorHandler {
	h, err := ErrorHandlerWithConfig(DefaultErrorHandlerConfig)
	if err != nil {
		panic(err)
	}
	return h
}

// ErrorHandlerWithConfig returns Echo's global error handler: every error a
// handler or middleware returns is mapped with [ToAPIError] and rendered in
// cfg.Shape with X-Request-Id, x-should-retry and, for retryable errors,
// Retry-After and Retry-After-Ms. HEAD requests get no body. A response
// already committed is left alone, except an event stream, which gets the
// error as one last event. 5xx causes are logged, never sent.
func ErrorHandlerWithConfig(cfg ErrorHandlerConfig) (echo.HTTPErrorHandler, error) {
	return cfg.ToHandler()
}

// ToHandler builds the error handler described by cfg; it fails for an
// unknown shape.
func (cfg ErrorHandlerConfig) ToHandler() (echo.HTTPErrorHandler, error) {
	shape, err := apierrors.ParseShape(string(cfg.Shape))
	if err != nil {
		return nil, err
	}
	cfg.Shape = shape
	switch cfg.AnthropicOverloadedStatus {
	case 0, http.StatusServiceUnavailable, apierrors.StatusOverloaded:
	default:
		return nil, fmt.Errorf("error handler: AnthropicOverloadedStatus must be 503 or 529, not %d", cfg.AnthropicOverloadedStatus)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	throttles := &logthrottle.ByKey{}
	return func(err error, c echo.Context) {
		if err == nil {
			return
		}
		var e *apierrors.Error
		if cfg.Map != nil {
			e = cfg.Map(err)
		}
		if e == nil {
			e = ToAPIError(err, c)
		}
		e = bounded(e)
		shape := cfg.Shape
		if cfg.ShapeFor != nil {
			if s := cfg.ShapeFor(c); s != "" {
				shape = s
			}
		}
		if shape == apierrors.ShapeAnthropic && cfg.AnthropicOverloadedStatus == apierrors.StatusOverloaded {
			e = apierrors.Overloaded529(e)
		}
		req := c.Request()
		res := c.Response()
		id := GetRequestID(c)
		cfg.log(throttles, req, res, id, e, err)

		meta := apierrors.Meta{RequestID: id, Path: req.URL.Path}
		if res.Committed {
			if isEventStream(res.Header().Get(echo.HeaderContentType)) {
				_, _ = res.Write(shape.AppendEvent(nil, e, meta))
				_ = http.NewResponseController(res).Flush()
			}
			return
		}
		// A handler may have set these for the body it meant to write.
		h := res.Header()
		delete(h, "Content-Length")
		delete(h, "Content-Encoding")
		apierrors.Write(res, req, shape, e, meta)
	}, nil
}

// log records what the client is not told: the cause of a 5xx, with the
// request id and the status the client got (a stream's 200 when the error
// came after it started), throttled per code. A client that went away is
// noted at debug level only.
func (cfg ErrorHandlerConfig) log(throttles *logthrottle.ByKey, req *http.Request, res *echo.Response, id string, e *apierrors.Error, err error) {
	if e.Status < 500 {
		return
	}
	ctx := req.Context()
	if stderrors.Is(err, context.Canceled) && ctx.Err() != nil {
		cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "client went away", slog.String("request_id", id),
			slog.String("method", apierrors.Clip(req.Method)), slog.String("path", apierrors.Clip(req.URL.Path)))
		return
	}
	status := e.Status
	if res.Committed {
		status = res.Status
	}
	attrs := []slog.Attr{
		slog.String("request_id", id),
		slog.String("method", apierrors.Clip(req.Method)),
		slog.String("path", apierrors.Clip(req.URL.Path)),
		slog.Int("status", status),
		slog.String("code", string(e.Code)),
		slog.String("error", err.Error()),
	}
	var p *PanicError
	if stderrors.As(err, &p) {
		// A panic is a bug, each with its own stack: never held back.
		attrs = append(attrs, slog.String("stack", string(p.Stack)))
		cfg.Logger.LogAttrs(ctx, slog.LevelError, "request failed", attrs...)
		return
	}
	throttles.Get(string(e.Code)).Log(ctx, cfg.Logger, slog.LevelError, "request failed", attrs...)
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// ToAPIError maps err to the *apierrors.Error a client sees: an
// *apierrors.Error as it is, Echo's *echo.HTTPError by its status (so Echo's
// own 404, 405, 413 and 415 become not_found, method_not_allowed,
// payload_too_large and unsupported_media_type), validator errors as
// invalid_argument naming the field, and the rest through apierrors.From.
// All matching is with errors.As; err is never changed.
func ToAPIError(err error, c echo.Context) *apierrors.Error {
	if e, ok := apierrors.As(err); ok {
		return e
	}
	if e := fromValidator(err); e != nil {
		return e
	}
	var he *echo.HTTPError
	if stderrors.As(err, &he) {
		return fromHTTPError(he, c)
	}
	return apierrors.From(err)
}

// fromHTTPError maps an Echo error by status. Echo's messages are generic
// ("Not Found"), so ours name the request instead.
func fromHTTPError(he *echo.HTTPError, c echo.Context) *apierrors.Error {
	if he.Internal != nil {
		if e, ok := apierrors.As(he.Internal); ok {
			return e
		}
		var tooLarge *http.MaxBytesError
		if stderrors.As(he.Internal, &tooLarge) {
			return apierrors.PayloadTooLarge(tooLarge.Limit)
		}
	}
	req := c.Request()
	msg := ""
	if s, ok := he.Message.(string); ok && s != http.StatusText(he.Code) {
		msg = s
	}
	var e *apierrors.Error
	switch he.Code {
	case http.StatusNotFound:
		e = apierrors.NotFound(fmt.Sprintf("Unknown request URL: %s %s.", apierrors.Clip(req.Method), apierrors.Clip(req.URL.Path)))
	case http.StatusMethodNotAllowed:
		e = apierrors.MethodNotAllowed(fmt.Sprintf("Method %s is not allowed for %s.", apierrors.Clip(req.Method), apierrors.Clip(req.URL.Path)))
	case http.StatusRequestEntityTooLarge:
		e = apierrors.New(apierrors.CodePayloadTooLarge, "")
	case http.StatusUnsupportedMediaType:
		e = apierrors.UnsupportedMediaType("application/json", mediaType(req.Header.Get(echo.HeaderContentType)))
	case http.StatusUnauthorized:
		e = apierrors.InvalidAPIKey()
	case http.StatusForbidden:
		e = apierrors.Unauthorized(msg)
	case http.StatusConflict:
		e = apierrors.Conflict(msg)
	case http.StatusTooManyRequests:
		e = apierrors.RateLimitExceeded("", 0)
	case http.StatusNotImplemented:
		e = apierrors.NotImplemented("")
	case http.StatusBadGateway:
		e = apierrors.ModelServerError("")
	case http.StatusServiceUnavailable:
		e = apierrors.ServiceUnavailable(0)
	case http.StatusGatewayTimeout:
		e = apierrors.ModelTimeout("")
	default:
		if he.Code >= 500 {
			return apierrors.InternalError(he)
		}
		e = apierrors.InvalidRequest(msg)
		if he.Code >= 400 {
			e.Status = he.Code
		}
	}
	if he.Code >= 500 {
		e.Cause = he
	}
	return e
}

// mediaType returns the media type of a Content-Type value, without
// parameters, or the raw value when it does not parse.
func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

// maxMessage is the most bytes of a message the error handler sends; a
// longer one is cut, so that no error, however it was built, makes a large
// response.
const maxMessage = 1024

// bounded returns e, or a copy with its message cut to maxMessage bytes
// and its param to apierrors.MaxQuote, each marked as cut.
func bounded(e *apierrors.Error) *apierrors.Error {
	if len(e.Message) <= maxMessage && len(e.Param) <= apierrors.MaxQuote {
		return e
	}
	c := *e
	if len(c.Message) > maxMessage {
		n := maxMessage
		for n > maxMessage-utf8.UTFMax && !utf8.RuneStart(c.Message[n]) {
			n--
		}
		c.Message = c.Message[:n] + apierrors.CutMark
	}
	c.Param = apierrors.Clip(c.Param)
	return &c
}
