package errors

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxDecodeBody is the most bytes of an error body Decode reads.
const MaxDecodeBody = 64 << 10

// Decode reads an error response (status >= 400) into an *Error: status,
// code, type, message, param and request id from the body in any of the
// five shapes, retryable from x-should-retry (else the catalog, else the
// status), and RetryAfter from Retry-After-Ms or Retry-After. A body that is
// not an envelope still yields an *Error named after the status, with the
// body's first line as message. It reads at most MaxDecodeBody bytes and
// closes the body. It returns nil for a status below 400.
func Decode(res *http.Response) *Error {
	if res == nil || res.StatusCode < 400 {
		return nil
	}
	var body []byte
	if res.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(res.Body, MaxDecodeBody))
		res.Body.Close()
	}
	return DecodeBody(res.StatusCode, res.Header, body)
}

// DecodeBody is [Decode] for a response already read: its status, headers
// and body.
func DecodeBody(status int, h http.Header, body []byte) *Error {
	e := &Error{Status: status}
	decodeShape(e, body)
	if e.Code == "" {
		e.Code = codeForStatus(status)
	}
	spec, known := Lookup(e.Code)
	if e.Type == "" {
		if known {
			e.Type = spec.Type
		} else {
			e.Type = TypeServer
			if status < 500 {
				e.Type = TypeInvalidRequest
			}
		}
	}
	if e.Message == "" {
		e.Message = firstLine(body)
		if e.Message == "" {
			e.Message = http.StatusText(status)
		}
		if e.Message == "" {
			e.Message = fmt.Sprintf("HTTP status %d.", status)
		}
	}
	switch strings.ToLower(h.Get("X-Should-Retry")) {
	case "true":
		e.Retryable = true
	case "false":
		e.Retryable = false
	default:
		if known && spec.Status == status {
			e.Retryable = spec.Retryable
		} else {
			e.Retryable = RetryableStatus(status)
		}
	}
	if d, ok := RetryAfterHeader(h, time.Now()); ok {
		e.RetryAfter = d
	}
	if id := h.Get("X-Request-Id"); id != "" {
		e.RequestID = id
	}
	return e
}

// RetryableStatus reports whether a status is worth retrying when the
// server says nothing more: 408, 429, 502, 503 and 504.
func RetryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// RetryAfterHeader reads the wait a response asks for: Retry-After-Ms
// first, then Retry-After in seconds or as an HTTP date (relative to now).
// ok is false when neither header holds a usable value.
func RetryAfterHeader(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < 1e12 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 || s > 1e9 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

// decodeShape fills e from whichever shape body is in.
func decodeShape(e *Error, body []byte) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return
	}
	str := func(m map[string]json.RawMessage, k string) string {
		var s string
		if v, ok := m[k]; ok && json.Unmarshal(v, &s) == nil {
			return s
		}
		return ""
	}
	if inner, ok := raw["error"]; ok {
		var obj map[string]json.RawMessage
		if json.Unmarshal(inner, &obj) == nil {
			// openai: {"error":{...}}; anthropic: {"type":"error","error":{...}}
			e.Message = str(obj, "message")
			e.Type = str(obj, "type")
			e.Code = Code(str(obj, "code"))
			e.Param = str(obj, "param")
			e.RequestID = str(obj, "request_id")
			if e.RequestID == "" {
				e.RequestID = str(raw, "request_id")
			}
			if str(raw, "type") == "error" {
				// Anthropic's types are not ours; the status says the code.
				e.Type = ""
			}
			return
		}
		// flat: {"error":"code","message":...}
		e.Code = Code(str(raw, "error"))
		e.Message = str(raw, "message")
		return
	}
	if _, ok := raw["detail"]; ok {
		// problem: RFC 9457 with our extension members
		e.Message = str(raw, "detail")
		e.Code = Code(str(raw, "code"))
		e.Param = str(raw, "param")
		e.RequestID = str(raw, "request_id")
		return
	}
	// gateway: {"message","path","requestId","statusCode","timestamp"}
	e.Message = str(raw, "message")
	e.RequestID = str(raw, "requestId")
}

// codeForStatus names the catalog code a bare status most likely means.
func codeForStatus(status int) Code {
	switch status {
	case 400:
		return CodeInvalidRequest
	case 401:
		return CodeInvalidAPIKey
	case 402:
		return CodeBudgetExceeded
	case 403:
		return CodeUnauthorized
	case 404:
		return CodeNotFound
	case 405:
		return CodeMethodNotAllowed
	case 409:
		return CodeConflict
	case 413:
		return CodePayloadTooLarge
	case 415:
		return CodeUnsupportedMediaType
	case 422:
		return CodeIdempotencyMismatch
	case 429:
		return CodeRateLimitExceeded
	case 501:
		return CodeNotImplemented
	case 502:
		return CodeModelServerError
	case 503:
		return CodeServiceUnavailable
	case 504:
		return CodeModelTimeout
	}
	if status >= 500 {
		return CodeInternalError
	}
	return Code(fmt.Sprintf("http_%d", status))
}

// firstLine is the first line of a non-JSON body, trimmed and bounded.
func firstLine(body []byte) string {
	s := strings.TrimSpace(string(body))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > 200 {
		s = s[:200]
	}
	if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
		return ""
	}
	return s
}
