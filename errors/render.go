package errors

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
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
func SetHeaders(h http.Header, e *Error) { setHeaders(h, e, "", "") }

// setHeaders sets SetHeaders' headers and, when given, Content-Type and
// X-Request-Id, with their value slices cut from one array and the
// Retry-After values from one string: two allocations at most.
func setHeaders(h http.Header, e *Error, contentType, requestID string) {
	vals := make([]string, 0, 5)
	put := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if e.Retryable {
		put("X-Should-Retry", "true")
	} else {
		put("X-Should-Retry", "false")
	}
	if d := e.RetryHint(); d > 0 {
		var buf [40]byte
		b := strconv.AppendInt(buf[:0], Seconds(d), 10)
		n := len(b)
		text := string(strconv.AppendInt(b, Milliseconds(d), 10))
		put("Retry-After", text[:n])
		put("Retry-After-Ms", text[n:])
	}
	if contentType != "" {
		put("Content-Type", contentType)
	}
	if requestID != "" {
		put("X-Request-Id", requestID)
	}
}

// Write renders e to w in shape s: headers, status and, except for HEAD
// requests, the body. It is for servers that do not use Echo; Echo services
// get the same through middleware.ErrorHandler.
func Write(w http.ResponseWriter, r *http.Request, s Shape, e *Error, m Meta) {
	setHeaders(w.Header(), e, s.ContentType(), m.RequestID)
	if m.Path == "" && r != nil && r.URL != nil {
		m.Path = r.URL.Path
	}
	w.WriteHeader(e.Status)
	if r != nil && r.Method == http.MethodHead {
		return
	}
	var buf [512]byte
	_, _ = w.Write(s.AppendBody(buf[:0], e, m))
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
