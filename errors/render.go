package errors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Shape is the JSON layout errors are rendered in. Whatever the shape, the
// status, catalog and headers are the same.
type Shape string

// The shapes a service can choose.
const (
	// ShapeOpenAI is the default: {"error":{"message","type","code","param",
	// "request_id"}}, which OpenAI's SDKs decode into typed errors.
	ShapeOpenAI Shape = "openai"
	// ShapeAnthropic is {"type":"error","error":{"type","message"},
	// "request_id"}, as Anthropic's SDKs expect.
	ShapeAnthropic Shape = "anthropic"
	// ShapeProblem is RFC 9457 application/problem+json, with code, param,
	// request_id and retry_after as extension members.
	ShapeProblem Shape = "problem"
	// ShapeFlat is {"error":code,"message","retryAfter"}.
	ShapeFlat Shape = "flat"
	// ShapeGateway is {"message","path","requestId","statusCode","timestamp"}.
	ShapeGateway Shape = "gateway"
)

// Shapes lists every shape, the default first.
func Shapes() []Shape {
	return []Shape{ShapeOpenAI, ShapeAnthropic, ShapeProblem, ShapeFlat, ShapeGateway}
}

// ParseShape returns the shape named s; the empty string is [ShapeOpenAI].
func ParseShape(s string) (Shape, error) {
	if s == "" {
		return ShapeOpenAI, nil
	}
	for _, sh := range Shapes() {
		if string(sh) == s {
			return sh, nil
		}
	}
	return "", fmt.Errorf("unknown error shape %q (want one of openai, anthropic, problem, flat, gateway)", s)
}

// ContentType is the media type of a body in shape s.
func (s Shape) ContentType() string {
	if s == ShapeProblem {
		return "application/problem+json"
	}
	return "application/json"
}

// Meta is what a rendered error says about the request it answers.
type Meta struct {
	// RequestID is the request's id, echoed in the body where the shape has
	// a place for it.
	RequestID string
	// Path is the request's URL path (gateway shape).
	Path string
	// Time is when the error happened (gateway shape); zero means now.
	Time time.Time
}

// SetHeaders sets the headers every error response carries: x-should-retry
// from the catalog and, for a retryable error, Retry-After (whole seconds,
// rounded up) and Retry-After-Ms.
func SetHeaders(h http.Header, e *Error) {
	putHeaders(h, e, "", "", nil)
}

// putHeaders sets SetHeaders' headers, and Content-Type and X-Request-Id
// when given, with the value slices and the Retry-After text taken from
// sp, or from one allocation of their own when sp has too little room.
func putHeaders(h http.Header, e *Error, contentType, requestID string, sp *Space) {
	d := e.RetryHint()
	setID := requestID != ""
	if v := h["X-Request-Id"]; setID && len(v) == 1 && v[0] == requestID {
		setID = false
	}
	nv, nt := 1, 0
	if d > 0 {
		nv, nt = nv+2, retryText
	}
	if contentType != "" {
		nv++
	}
	if setID {
		nv++
	}
	// The value slices and the text come from sp, or else from room of
	// their own, in one allocation of just their size.
	var vals []string
	var text []byte
	var own *errorRoom
	if sp.has(nv, nt) {
		vals, text = sp.Values(nv), sp.Text()
	} else {
		own = new(errorRoom)
		vals, text = own.vals[:nv], own.text[:0]
	}
	put := func(key, v string) {
		vals[0] = v
		h[key] = vals[:1:1]
		vals = vals[1:]
	}
	if e.Retryable {
		put("X-Should-Retry", "true")
	} else {
		put("X-Should-Retry", "false")
	}
	if d > 0 {
		b := strconv.AppendInt(text[:0], Seconds(d), 10)
		n := len(b)
		b = strconv.AppendInt(b, Milliseconds(d), 10)
		var s string
		if own != nil && unsafe.SliceData(b) == &own.text[0] {
			// The room is its own, never written again.
			s = unsafe.String(&own.text[0], len(b))
		} else {
			s = sp.String(b)
		}
		put("Retry-After", s[:n])
		put("Retry-After-Ms", s[n:])
	}
	if contentType != "" {
		put("Content-Type", contentType)
	}
	if setID {
		put("X-Request-Id", requestID)
	}
}

// errorRoom is the room of an error response's headers when the Space
// given has too little left.
type errorRoom struct {
	vals [5]string
	text [retryText]byte
}

// retryText is the most text Retry-After and Retry-After-Ms take together:
// for any Duration, at most 10 and 13 digits.
const retryText = 23

// Space is room for the header values of one response: the slices that
// http.Header holds them in and the text of those that are built per
// response. A caller that has per-request memory to spare keeps a Space
// there and passes it to [WriteWith] (and to what else writes headers for
// the same response, such as the rate limiter's), which then allocate
// nothing. The zero value is ready to use; it has room for the headers of
// a rate-limited route and of a 429 together.
//
// Room once given out is never given again: the headers refer to it for
// as long as they are in use. A Space that has too little room left is
// not used, and the memory is allocated instead. It is not safe for
// concurrent use.
type Space struct {
	vals [9]string
	text [86]byte
	// nv and nt count the value slices and bytes of text given out.
	nv, nt uint8
}

// Values returns n value slices from sp's room, or newly allocated ones
// when sp is nil or has fewer than n left; nil for n <= 0.
func (sp *Space) Values(n int) []string {
	if n <= 0 {
		return nil
	}
	if sp == nil || n > len(sp.vals)-int(sp.nv) {
		return make([]string, n)
	}
	i := int(sp.nv)
	sp.nv += uint8(n)
	return sp.vals[i : i+n : i+n]
}

// Text returns sp's unused text room, empty, for building a value in
// place with append before passing it to String; nil when sp is nil or
// full.
func (sp *Space) Text() []byte {
	if sp == nil || int(sp.nt) >= len(sp.text) {
		return nil
	}
	return sp.text[sp.nt:sp.nt:len(sp.text)]
}

// String returns b as a string kept in sp's room: b itself when it was
// built in the room Text returned, else a copy in the room. It allocates
// when sp is nil or has too little text room left.
func (sp *Space) String(b []byte) string {
	if sp == nil || len(b) == 0 || len(b) > len(sp.text)-int(sp.nt) {
		return string(b)
	}
	i := int(sp.nt)
	if unsafe.SliceData(b) != &sp.text[i] {
		copy(sp.text[i:], b)
	}
	sp.nt += uint8(len(b))
	// The room is never written again.
	return unsafe.String(&sp.text[i], len(b))
}

// has reports whether sp has room for nv more value slices and nt more
// bytes of text.
func (sp *Space) has(nv, nt int) bool {
	return sp != nil && len(sp.vals)-int(sp.nv) >= nv && len(sp.text)-int(sp.nt) >= nt
}

// bodyPool holds the buffers error bodies are rendered in: a body is
// copied out by the ResponseWriter's Write, so its buffer is reusable at
// once.
var bodyPool = sync.Pool{New: func() any { return new([512]byte) }}

// Write renders e to w in shape s: headers, status and, except for HEAD
// requests, the body. It is for servers that do not use Echo; Echo services
// get the same through middleware.ErrorHandler. It allocates once, for
// the header values.
func Write(w http.ResponseWriter, r *http.Request, s Shape, e *Error, m Meta) {
	WriteWith(w, r, s, e, m, nil)
}

// WriteWith is Write with the header values kept in sp (see [Space]); a
// nil or used sp allocates one.
func WriteWith(w http.ResponseWriter, r *http.Request, s Shape, e *Error, m Meta, sp *Space) {
	write(w, r, s, e, m, sp, nil)
}

// write writes e in shape s, with the body from t when it is not nil.
func write(w http.ResponseWriter, r *http.Request, s Shape, e *Error, m Meta, sp *Space, t *BodyTemplate) {
	putHeaders(w.Header(), e, s.ContentType(), m.RequestID, sp)
	if m.Path == "" && r != nil && r.URL != nil {
		m.Path = r.URL.Path
	}
	w.WriteHeader(e.Status)
	if r != nil && r.Method == http.MethodHead {
		return
	}
	if t != nil && t.writeParts(w, m.RequestID) {
		return
	}
	buf := bodyPool.Get().(*[512]byte)
	var b []byte
	if t != nil {
		b = t.AppendBody(buf[:0], m)
	} else {
		b = s.AppendBody(buf[:0], e, m)
	}
	_, _ = w.Write(b)
	bodyPool.Put(buf)
}

// BodyTemplate is an error's body rendered once in one shape, for errors
// answered many times over (a 429 to a client that keeps sending): each
// response then copies it, putting in its own request id, instead of
// rendering the error again. It is immutable and safe for concurrent use.
type BodyTemplate struct {
	shape Shape
	err   Error
	// The body is prefix + the request id as a JSON string + suffix, or
	// just prefix when the shape has no request id. open and close are
	// prefix and suffix with the string's quotes.
	prefix, suffix []byte
	open, close    []byte
	hole           bool
}

// writeParts writes the template's body with the request id id in place
// as it is, when that needs no escaping: in three writes, with no copy of
// the body. It reports false, having written nothing, for an id that needs
// escaping.
func (t *BodyTemplate) writeParts(w io.Writer, id string) bool {
	if !t.hole || id == "" || plainPrefix(id) != len(id) {
		return false
	}
	_, _ = w.Write(t.open)
	// Writers must not modify or keep what they are given.
	_, _ = w.Write(unsafe.Slice(unsafe.StringData(id), len(id)))
	_, _ = w.Write(t.close)
	return true
}

// templateHole stands for the request id while a template is rendered.
const templateHole = "gatekit-template-request-id-hole"

// Template renders e in shape s as a BodyTemplate. It reports false for
// a shape whose body holds more than the request id that varies between
// responses (the gateway shape's path and time).
func (s Shape) Template(e *Error) (*BodyTemplate, bool) {
	if s == ShapeGateway {
		return nil, false
	}
	t := &BodyTemplate{shape: s, err: *e}
	body := s.AppendBody(nil, e, Meta{RequestID: templateHole})
	hole := []byte(`"` + templateHole + `"`)
	switch bytes.Count(body, hole) {
	case 0:
		t.prefix = body
	case 1:
		i := bytes.Index(body, hole)
		t.prefix, t.suffix, t.hole = body[:i], body[i+len(hole):], true
		t.open, t.close = body[:i+1], body[i+len(hole)-1:]
	default:
		return nil, false // the error's own text holds the placeholder
	}
	// The error's text could still hold the placeholder where the id is
	// not: check the template against a rendering with another id.
	const other = "req_template_check"
	if !bytes.Equal(t.AppendBody(nil, Meta{RequestID: other}), s.AppendBody(nil, e, Meta{RequestID: other})) {
		return nil, false
	}
	return t, true
}

// AppendBody appends the body for a response with meta m to dst: the same
// bytes as Shape.AppendBody for the template's shape and error.
func (t *BodyTemplate) AppendBody(dst []byte, m Meta) []byte {
	if !t.hole {
		return append(dst, t.prefix...)
	}
	if m.RequestID == "" {
		return t.shape.AppendBody(dst, &t.err, m)
	}
	dst = append(dst, t.prefix...)
	dst = appendString(dst, m.RequestID)
	return append(dst, t.suffix...)
}

// Write is WriteWith for e, the error t was made from (or one differing
// only in RetryAfter within the same second), with the body from t.
func (t *BodyTemplate) Write(w http.ResponseWriter, r *http.Request, e *Error, m Meta, sp *Space) {
	write(w, r, t.shape, e, m, sp, t)
}

// AppendBody appends e, rendered in shape s, to dst and returns the result.
// The body is one line of JSON with no trailing newline.
func (s Shape) AppendBody(dst []byte, e *Error, m Meta) []byte {
	switch s {
	case ShapeAnthropic:
		return appendAnthropic(dst, e, m)
	case ShapeProblem:
		return appendProblem(dst, e, m)
	case ShapeFlat:
		return appendFlat(dst, e)
	case ShapeGateway:
		return appendGateway(dst, e, m)
	default:
		return appendOpenAI(dst, e, m)
	}
}

// AppendEvent appends e as one server-sent event to dst: for the OpenAI
// shape `data: {"error":{...}}` and a blank line; for the Anthropic shape an
// `event: error` line before its data; for the others the shape's body as
// data.
func (s Shape) AppendEvent(dst []byte, e *Error, m Meta) []byte {
	if s == ShapeAnthropic {
		dst = append(dst, "event: error\n"...)
	}
	dst = append(dst, "data: "...)
	dst = s.AppendBody(dst, e, m)
	return append(dst, "\n\n"...)
}

func appendOpenAI(dst []byte, e *Error, m Meta) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"code":`...)
	dst = appendString(dst, string(e.Code))
	dst = append(dst, `,"param":`...)
	dst = appendNullableString(dst, e.Param)
	if m.RequestID != "" {
		dst = append(dst, `,"request_id":`...)
		dst = appendString(dst, m.RequestID)
	}
	if d := e.RetryHint(); d > 0 {
		dst = append(dst, `,"retry_after":`...)
		dst = strconv.AppendInt(dst, Seconds(d), 10)
	}
	return append(dst, "}}"...)
}

// anthropicType maps a status and our type onto the error types Anthropic's
// SDKs know.
func anthropicType(e *Error) string {
	switch {
	case e.Status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case e.Status == http.StatusGatewayTimeout:
		return "timeout_error"
	case e.Status == http.StatusServiceUnavailable || e.Status == 529:
		return "overloaded_error"
	case e.Type == TypeServer || e.Type == TypeEngine || e.Status >= 500:
		return "api_error"
	case e.Type == TypeConflict:
		return TypeInvalidRequest
	}
	return e.Type
}

func appendAnthropic(dst []byte, e *Error, m Meta) []byte {
	dst = append(dst, `{"type":"error","error":{"type":`...)
	dst = appendString(dst, anthropicType(e))
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, '}')
	if m.RequestID != "" {
		dst = append(dst, `,"request_id":`...)
		dst = appendString(dst, m.RequestID)
	}
	return append(dst, '}')
}

func appendProblem(dst []byte, e *Error, m Meta) []byte {
	dst = append(dst, `{"type":"about:blank","title":`...)
	title := http.StatusText(e.Status)
	if title == "" {
		title = "Error"
	}
	dst = appendString(dst, title)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = append(dst, `,"detail":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, `,"code":`...)
	dst = appendString(dst, string(e.Code))
	dst = append(dst, `,"param":`...)
	dst = appendNullableString(dst, e.Param)
	if m.RequestID != "" {
		dst = append(dst, `,"request_id":`...)
		dst = appendString(dst, m.RequestID)
	}
	if d := e.RetryHint(); d > 0 {
		dst = append(dst, `,"retry_after":`...)
		dst = strconv.AppendInt(dst, Seconds(d), 10)
	}
	return append(dst, '}')
}

func appendFlat(dst []byte, e *Error) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendString(dst, string(e.Code))
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	if d := e.RetryHint(); d > 0 {
		dst = append(dst, `,"retryAfter":`...)
		dst = strconv.AppendInt(dst, Seconds(d), 10)
	}
	return append(dst, '}')
}

func appendGateway(dst []byte, e *Error, m Meta) []byte {
	dst = append(dst, `{"message":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, `,"path":`...)
	dst = appendString(dst, m.Path)
	dst = append(dst, `,"requestId":`...)
	dst = appendNullableString(dst, m.RequestID)
	dst = append(dst, `,"statusCode":`...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = append(dst, `,"timestamp":"`...)
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	return append(dst, `"}`...)
}

func appendNullableString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendString(dst, s)
}

const hexDigits = "0123456789abcdef"

// plainWord reports whether none of the 8 bytes of w needs escaping or
// UTF-8 checking: all are ASCII from 0x20 up, and none is '"' or '\\'. It
// tests the 8 bytes at once (the "has a zero byte" and "has a byte less
// than n" tricks, exact for whether any byte matches).
func plainWord(w string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(w), 8))
	quote, backslash := x^('"'*ones), x^('\\'*ones)
	return (x|(x-0x20*ones)&^x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs == 0
}

// appendString appends s as a JSON string. Control characters, quotes and
// backslashes are escaped, invalid UTF-8 becomes U+FFFD, and U+2028/U+2029
// are escaped so the output is safe inside JavaScript too.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for {
		n := plainPrefix(s)
		dst = append(dst, s[:n]...)
		s = s[n:]
		if s == "" {
			return append(dst, '"')
		}
		b := s[0]
		if b < utf8.RuneSelf {
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
}

// plainPrefix returns the length of the longest prefix of s that a JSON
// string holds as it is: ASCII from 0x20 up, without '"' or '\\'.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s) && plainWord(s[i:i+8]); i += 8 {
	}
	for ; i < len(s) && plainByte[s[i]]; i++ {
	}
	return i
}

// plainByte reports, by byte, what plainPrefix takes.
var plainByte = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()
