package middleware

import (
	"bytes"
	stderrors "errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// Binder is a strict JSON echo.Binder. Path parameters (and, for GET,
// DELETE and HEAD, query parameters) bind as Echo's DefaultBinder binds
// them; a body must be application/json (or a +json type) holding exactly
// one JSON value in UTF-8 whose names all match a field of the target
// exactly (case included). Every failure is an *apierrors.Error, quoting
// client input only clipped ([apierrors.Clip]):
//
//   - no or another Content-Type, or a charset other than UTF-8: 415
//     unsupported_media_type;
//   - empty, malformed, truncated, not UTF-8 or trailing data: 400
//     invalid_request saying where the body broke;
//   - an unknown name, a name given twice or a value of the wrong type: 400
//     invalid_argument naming the field by its path ("messages[1].role");
//   - a body over the route's limit: 413 payload_too_large.
//
// After binding, the target is validated with the Echo instance's
// Validator when there is one, unless SkipValidation is set. A Binder is
// safe for concurrent use and must not be copied after first use.
type Binder struct {
	// SkipValidation leaves validation to the handler (c.Validate).
	SkipValidation bool

	params echo.DefaultBinder
	// decoders keeps JSON decoders, with their read buffers, between
	// requests: a fresh decoder's buffer is most of a bind's cost.
	decoders sync.Pool
}

// NewBinder returns a Binder that validates what it binds.
func NewBinder() *Binder { return &Binder{} }

// Bind fills i from the request and validates it.
func (b *Binder) Bind(i any, c echo.Context) error {
	if len(c.ParamNames()) > 0 {
		if err := b.params.BindPathParams(c, i); err != nil {
			return apierrors.InvalidRequest(fmt.Sprintf("Invalid path parameter: %s.", apierrors.Clip(httpErrorText(err))))
		}
	}
	req := c.Request()
	switch req.Method {
	case http.MethodGet, http.MethodDelete, http.MethodHead:
		if req.URL.RawQuery != "" {
			if err := b.params.BindQueryParams(c, i); err != nil {
				return apierrors.InvalidRequest(fmt.Sprintf("Invalid query parameter: %s.", apierrors.Clip(httpErrorText(err))))
			}
		}
		if req.ContentLength == 0 {
			return b.validate(i, c)
		}
	}
	if err := bindJSON(c, i, &b.decoders); err != nil {
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
// it; see [Binder] for what it rejects and how ([Binder.Bind] reuses its
// decoders; BindJSON makes a fresh one each call). It decodes with
// github.com/go-json-experiment/json: names match their fields exactly
// (case included), a name given twice and invalid UTF-8 are errors, and
// every error names where in the body it is as a param path
// ("messages[1].role").
func BindJSON(c echo.Context, i any) error { return bindJSON(c, i, nil) }

// bindJSON is [BindJSON] taking its decoder from pool when it is set.
func bindJSON(c echo.Context, i any, pool *sync.Pool) error {
	req := c.Request()
	ct := req.Header.Get(echo.HeaderContentType)
	if !IsJSON(ct) {
		return apierrors.UnsupportedMediaType(echo.MIMEApplicationJSON, mediaType(ct))
	}
	if strings.IndexByte(ct, ';') >= 0 {
		if err := checkCharset(ct); err != nil {
			return err
		}
	}
	if v := reflect.ValueOf(i); v.Kind() != reflect.Pointer || v.IsNil() {
		return apierrors.InternalError(fmt.Errorf("binder: cannot decode into %T: want a non-nil pointer", i))
	}
	if req.Body == nil || req.Body == http.NoBody {
		return apierrors.InvalidRequest("The request body is empty; expected a JSON object.")
	}
	readFailed, err := decodeBody(req.Body, i, pool)
	if readFailed {
		endConnection(c)
	}
	return err
}

// maxPooledBody is the largest body after which a decoder goes back to
// its pool.
const maxPooledBody = 64 << 10

// decodeBody decodes exactly one JSON value from body into i, with a
// decoder from pool (a fresh one when pool is nil). readFailed reports
// that reading the body failed, rather than what it holds: the rest of it
// may still be on the connection.
func decodeBody(body io.Reader, i any, pool *sync.Pool) (readFailed bool, err error) {
	var dec *jsontext.Decoder
	if pool != nil {
		dec, _ = pool.Get().(*jsontext.Decoder)
	}
	if dec == nil {
		dec = jsontext.NewDecoder(body)
	} else {
		dec.Reset(body)
	}
	if pool != nil {
		defer func() {
			// A large body may have grown the decoder's buffer: such a
			// decoder is left to the collector rather than kept.
			if dec.InputOffset() <= maxPooledBody {
				dec.Reset(http.NoBody) // keeps no request's body
				pool.Put(dec)
			}
		}()
	}
	if err := json.UnmarshalDecode(dec, i, json.RejectUnknownMembers(true)); err != nil {
		return decodeError(err, reflect.TypeOf(i))
	}
	// Exactly one value: anything but white space after it is an error.
	// PeekKind skips the white space (reading on as needed); the offset
	// reported is that of the first byte after it, counted from 1.
	kind := dec.PeekKind()
	rest := dec.UnreadBuffer()
	at := dec.InputOffset() + int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n"))) + 1
	if kind == 0 {
		// The end of the body, a byte no JSON value starts with, or a
		// failed read: ReadToken tells which.
		_, err := dec.ReadToken()
		if err == io.EOF {
			return false, nil
		}
		if _, syntax := stderrors.AsType[*jsontext.SyntacticError](err); !syntax {
			return true, bodyReadError(err)
		}
	}
	return false, apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: unexpected data after the JSON value (at byte %d).", at))
}

// checkCharset accepts a JSON Content-Type whose charset, if any, is
// UTF-8: JSON exchanged between systems is UTF-8 (RFC 8259), and a body in
// another charset read as UTF-8 would be read wrong.
func checkCharset(ct string) error {
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return apierrors.New(apierrors.CodeUnsupportedMediaType,
			fmt.Sprintf("The Content-Type '%s' could not be parsed; expected 'application/json'.", apierrors.Clip(ct)))
	}
	cs, ok := params["charset"]
	if !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8") {
		return nil
	}
	return apierrors.UnsupportedCharset(cs)
}

// decodeError maps what the decoder returns to the envelope; t is the
// type decoded into, which tells array indices from object names in the
// error's location. readFailed reports an error reading the body rather
// than one in what it holds.
func decodeError(err error, t reflect.Type) (readFailed bool, _ error) {
	if err == io.EOF {
		return false, apierrors.InvalidRequest("The request body is empty; expected a JSON object.")
	}
	if isBodyTooLargeOrLate(err) {
		return true, bodyReadError(err)
	}
	if e, ok := apierrors.As(err); ok {
		// A type's own UnmarshalJSON said what is wrong.
		return false, e
	}
	if syn, ok := stderrors.AsType[*jsontext.SyntacticError](err); ok {
		return false, syntaxError(syn, t)
	}
	if sem, ok := stderrors.AsType[*json.SemanticError](err); ok {
		return false, semanticError(sem, t)
	}
	return true, bodyReadError(err)
}

// syntaxError words a body that is not well-formed JSON.
func syntaxError(syn *jsontext.SyntacticError, t reflect.Type) error {
	param := paramPath(t, syn.JSONPointer)
	switch {
	case syn.Err == jsontext.ErrDuplicateName:
		return apierrors.InvalidArgument(param, fmt.Sprintf("Duplicate request argument supplied: %s appears more than once.", param))
	case stderrors.Is(syn.Err, io.ErrUnexpectedEOF):
		return apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: it ended unexpectedly (at byte %d).", syn.ByteOffset))
	case syn.Err != nil && strings.Contains(syn.Err.Error(), "invalid UTF-8"):
		// The decoder exports no value for this error; its text is the
		// one way to tell it.
		e := apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: it is not valid UTF-8 (at byte %d).", syn.ByteOffset+1))
		e.Param = param
		return e
	}
	what := "syntax error"
	if syn.Err != nil {
		what = syn.Err.Error()
	}
	return apierrors.InvalidRequest(fmt.Sprintf("We could not parse the JSON body of your request: %s (at byte %d).", apierrors.Clip(what), syn.ByteOffset+1))
}

// semanticError words well-formed JSON that does not fit the target: an
// unknown name, or a value of the wrong type or out of range.
func semanticError(sem *json.SemanticError, t reflect.Type) error {
	param := paramPath(t, sem.JSONPointer)
	if sem.Err == json.ErrUnknownName {
		return apierrors.InvalidArgument(param, fmt.Sprintf("Unrecognized request argument supplied: %s.", param))
	}
	mismatch := sem.Err == nil || stderrors.Is(sem.Err, strconv.ErrSyntax) || stderrors.Is(sem.Err, strconv.ErrRange)
	switch {
	case sem.GoType == nil || stderrors.Is(sem.Err, stderrors.ErrUnsupported) || (sem.JSONKind == 0 && !decodesItself(sem.GoType)):
		// A Go type the decoder cannot fill: the server's fault. (A type
		// that decodes itself and refuses a value reports no kind.)
		return apierrors.InternalError(sem)
	case !mismatch && param == "":
		// A type's own method refused the value and says why; what it
		// says is clipped, as it may quote the value.
		return apierrors.InvalidRequest(fmt.Sprintf("The request body holds a value the API does not accept: %s.", methodText(sem.Err))).WithCause(sem)
	case !mismatch:
		return apierrors.InvalidArgument(param, fmt.Sprintf("Invalid value for '%s': %s.", param, methodText(sem.Err))).WithCause(sem)
	}
	got := jsonKindName(sem.JSONKind)
	if len(sem.JSONValue) > 0 && sem.JSONKind == '0' {
		got += " " + apierrors.Clip(string(sem.JSONValue))
	}
	want := goKindName(sem.GoType)
	if param == "" {
		return apierrors.InvalidRequest(fmt.Sprintf("The request body must be %s, but got %s instead.", want, got))
	}
	return apierrors.InvalidArgument(param, fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", param, want, got))
}

// methodText is what a type's own decoding method said of a value it
// refused, clipped, without a final period.
func methodText(err error) string {
	return apierrors.Clip(strings.TrimSuffix(err.Error(), "."))
}

// jsonKindName names a JSON kind as the client wrote it.
func jsonKindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "another value"
}

// goKindName names what a Go type takes, the way a JSON client thinks of
// it.
func goKindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// paramPath turns a JSON Pointer into the envelope's param path:
// "/messages/1/role" is "messages[1].role". The target type t says which
// tokens are array indices; where it cannot (inside an interface value, or
// a type that decodes itself) a token of digits is taken for one. Each
// name and the whole path are clipped ([apierrors.Clip]).
func paramPath(t reflect.Type, ptr jsontext.Pointer) string {
	var b strings.Builder
	for tok := range ptr.Tokens() {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t != nil && decodesItself(t) {
			t = nil
		}
		index := false
		var next reflect.Type
		switch {
		case t == nil || t.Kind() == reflect.Interface:
			index = tok != "" && strings.Trim(tok, "0123456789") == ""
		case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
			index, next = true, t.Elem()
		case t.Kind() == reflect.Map:
			next = t.Elem()
		case t.Kind() == reflect.Struct:
			next = fieldType(t, tok)
		}
		tok = apierrors.Clip(tok)
		if index {
			b.WriteString("[" + tok + "]")
		} else {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(tok)
		}
		t = next
		if b.Len() > apierrors.MaxQuote {
			break
		}
	}
	return apierrors.Clip(b.String())
}

// decodesItself reports whether t has its own JSON decoding method, so
// that its Go shape says nothing of its JSON one.
func decodesItself(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pt := reflect.PointerTo(t)
	return pt.Implements(reflect.TypeFor[json.UnmarshalerFrom]()) || pt.Implements(reflect.TypeFor[json.Unmarshaler]())
}

// fieldType is the type of the field of struct t that the JSON name
// decodes into, or nil when there is none.
func fieldType(t reflect.Type, name string) reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" && opts == "" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if tag == "" && ft.Kind() == reflect.Struct && (f.Anonymous || strings.Contains(","+opts+",", ",inline,")) {
			if found := fieldType(ft, name); found != nil {
				return found
			}
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name && f.IsExported() {
			return f.Type
		}
	}
	return nil
}
