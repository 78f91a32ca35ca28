package middleware

import (
	"encoding/json"
	stderrors "errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// Binder is a strict JSON echo.Binder. Path parameters (and, for GET,
// DELETE and HEAD, query parameters) bind as Echo's DefaultBinder binds
// them; a body must be application/json (or a +json type) holding exactly
// one JSON value whose fields all exist in the target. Every failure is an
// *apierrors.Error:
//
//   - no or another Content-Type: 415 unsupported_media_type;
//   - empty, malformed, truncated or trailing data: 400 invalid_request
//     saying where the body broke;
//   - an unknown field or a value of the wrong type: 400 invalid_argument
//     naming the field;
//   - a body over the route's limit: 413 payload_too_large.
//
// After binding, the target is validated with the Echo instance's Validator
// when there is one, unless SkipValidation is set.
type Binder struct {
	// SkipValidation leaves validation to the handler (c.Validate).
	SkipValidation bool

	params echo.DefaultBinder
}

// NewBinder returns a Binder that validates what it binds.
func NewBinder() *Binder { return &Binder{} }

// Bind fills i from the request and validates it.
func (b *Binder) Bind(i any, c echo.Context) error {
	if len(c.ParamNames()) > 0 {
		if err := b.params.BindPathParams(c, i); err != nil {
			return apierrors.InvalidRequest(fmt.Sprintf("Invalid path parameter: %s.", httpErrorText(err)))
		}
	}
	req := c.Request()
	switch req.Method {
	case http.MethodGet, http.MethodDelete, http.MethodHead:
		if req.URL.RawQuery != "" {
			if err := b.params.BindQueryParams(c, i); err != nil {
				return apierrors.InvalidRequest(fmt.Sprintf("Invalid query parameter: %s.", httpErrorText(err)))
			}
		}
		if req.ContentLength == 0 {
			return b.validate(i, c)
		}
	}
	if err := BindJSON(c, i); err != nil {
		return err
	}
	return b.validate(i, c)
}

func (b *Binder) validate(i any, c echo.Context) error {
	if b.SkipValidation || c.Echo().Validator == nil {
		return nil
	}
	return c.Validate(i)
}

// httpErrorText is the message of an *echo.HTTPError, or err's text.
func httpErrorText(err error) string {
	var he *echo.HTTPError
	if stderrors.As(err, &he) {
		if he.Internal != nil {
			return he.Internal.Error()
		}
		return fmt.Sprint(he.Message)
	}
	return err.Error()
}

// IsJSON reports whether a Content-Type names JSON: application/json or any
// type with a +json suffix, with or without parameters.
func IsJSON(contentType string) bool {
	mt := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	return mt == echo.MIMEApplicationJSON || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// BindJSON decodes the request body strictly into i, without validating
// it; see [Binder] for what it rejects and how.
func BindJSON(c echo.Context, i any) error {
	req := c.Request()
	ct := req.Header.Get(echo.HeaderContentType)
	if !IsJSON(ct) {
		return apierrors.UnsupportedMediaType(echo.MIMEApplicationJSON, mediaType(ct))
	}
	if req.Body == nil || req.Body == http.NoBody {
		return apierrors.InvalidRequest("The request body is empty; expected a JSON object.")
	}
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(i); err != nil {
		return decodeError(err, dec)
	}
	// Exactly one value: anything but white space after it is an error.
	// More skips the white space (reading on as needed), so the offset is
	// that of the first byte after it, counted from 1 as json.SyntaxError
	// counts.
	dec.More()
	at := dec.InputOffset() + 1
	if _, err := dec.Token(); err != io.EOF {
		if err != nil && !isSyntax(err) && !stderrors.Is(err, io.ErrUnexpectedEOF) {
			return decodeError(err, dec)
		}
		return apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: unexpected data after the JSON value (at byte %d).", at))
	}
	return nil
}

func isSyntax(err error) bool {
	var se *json.SyntaxError
	return stderrors.As(err, &se)
}

// decodeError maps what encoding/json returns to the envelope.
func decodeError(err error, dec *json.Decoder) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case stderrors.As(err, &tooLarge):
		return apierrors.PayloadTooLarge(tooLarge.Limit)
	case err == io.EOF:
		return apierrors.InvalidRequest("The request body is empty; expected a JSON object.")
	case stderrors.Is(err, io.ErrUnexpectedEOF):
		// The decoder's offset stays at the start of the value it could not
		// finish; what it read of that value is still buffered.
		read := dec.InputOffset()
		if rest, ok := dec.Buffered().(interface{ Len() int }); ok {
			read += int64(rest.Len())
		}
		return apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: it ended unexpectedly (at byte %d).", read))
	case stderrors.As(err, &syntax):
		return apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: %s (at byte %d).", syntax.Error(), syntax.Offset))
	case stderrors.As(err, &typ):
		return apierrors.From(typ)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return apierrors.InvalidArgument(name, fmt.Sprintf("Unrecognized request argument supplied: %s.", name))
	}
	var invalid *json.InvalidUnmarshalError
	if stderrors.As(err, &invalid) {
		return apierrors.InternalError(err)
	}
	return apierrors.InvalidRequest("The request body could not be read.").WithCause(err)
}
