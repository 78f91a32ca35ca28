package ratelimit

import (
	"net/http"
	"strconv"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
)

// The header names SetHeaders writes, in canonical form.
const (
	HeaderLimitRequests     = "X-Ratelimit-Limit-Requests"
	HeaderRemainingRequests = "X-Ratelimit-Remaining-Requests"
	HeaderResetRequests     = "X-Ratelimit-Reset-Requests"
	HeaderLimitTokens       = "X-Ratelimit-Limit-Tokens"
	HeaderRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	HeaderResetTokens       = "X-Ratelimit-Reset-Tokens"
	// HeaderPolicy and HeaderRateLimit are the IETF draft's
	// (draft-ietf-httpapi-ratelimit-headers) RateLimit-Policy and RateLimit.
	HeaderPolicy    = "Ratelimit-Policy"
	HeaderRateLimit = "Ratelimit"
)

// Outcome is one limit's part in a response's headers: the policy that
// applied and the decision it gave.
type Outcome struct {
	Policy   Policy
	Decision Decision
}

// SetHeaders writes the rate-limit headers of a response on h: for each of
// requests and tokens that is not nil, x-ratelimit-limit-*,
// x-ratelimit-remaining-* and x-ratelimit-reset-* (a Go duration such as
// "6m0s", as OpenAI sends it), and one item each in the IETF draft's
// RateLimit-Policy (`"requests";q=60;w=60`) and RateLimit
// (`"requests";r=59;t=1`, t in whole seconds rounded up). All values share
// one allocation.
func SetHeaders(h http.Header, requests, tokens *Outcome) {
	SetHeadersWith(h, requests, tokens, nil)
}

// SetHeadersWith is SetHeaders with the value slices and text kept in sp
// (see [apierrors.Space]) while it has room; a nil sp allocates as
// SetHeaders does.
func SetHeadersWith(h http.Header, requests, tokens *Outcome, sp *apierrors.Space) {
	if requests == nil && tokens == nil {
		return
	}
	var ends [8]int
	// Built in place when the room is likely to hold it; else on the stack,
	// and copied to the room if it fits after all, or allocated once.
	b := sp.Text()
	if cap(b) < 96 {
		var buf [256]byte
		b = buf[:0]
	}
	b, n := appendAll(b, &ends, requests, tokens)
	putAll(h, sp.String(b), &ends, n, sp.Values(n), requests, tokens)
}

// appendAll appends every header value of SetHeaders, recording where each
// ends, and returns how many there are.
func appendAll(b []byte, ends *[8]int, requests, tokens *Outcome) ([]byte, int) {
	n := 0
	if requests != nil {
		b, n = appendTriple(b, ends, n, requests)
	}
	if tokens != nil {
		b, n = appendTriple(b, ends, n, tokens)
	}
	b = appendItems(b, requests, tokens, true)
	ends[n] = len(b)
	n++
	b = appendItems(b, requests, tokens, false)
	ends[n] = len(b)
	return b, n + 1
}

// putAll sets the headers whose values appendAll wrote in s, with the
// value slices cut from vals.
func putAll(h http.Header, s string, ends *[8]int, n int, vals []string, requests, tokens *Outcome) {
	start := 0
	for i := 0; i < n; i++ {
		vals[i] = s[start:ends[i]]
		start = ends[i]
	}
	i := 0
	if requests != nil {
		h[HeaderLimitRequests] = vals[0:1:1]
		h[HeaderRemainingRequests] = vals[1:2:2]
		h[HeaderResetRequests] = vals[2:3:3]
		i = 3
	}
	if tokens != nil {
		h[HeaderLimitTokens] = vals[i : i+1 : i+1]
		h[HeaderRemainingTokens] = vals[i+1 : i+2 : i+2]
		h[HeaderResetTokens] = vals[i+2 : i+3 : i+3]
		i += 3
	}
	h[HeaderPolicy] = vals[i : i+1 : i+1]
	h[HeaderRateLimit] = vals[i+1 : i+2 : i+2]
}

// appendTriple appends an outcome's limit, remaining and reset values,
// recording where each ends.
func appendTriple(b []byte, ends *[8]int, n int, o *Outcome) ([]byte, int) {
	b = strconv.AppendInt(b, o.Policy.Limit, 10)
	ends[n] = len(b)
	b = strconv.AppendInt(b, o.Decision.Remaining, 10)
	ends[n+1] = len(b)
	b = appendDuration(b, o.Decision.ResetAfter)
	ends[n+2] = len(b)
	return b, n + 3
}

// appendItems appends the RateLimit-Policy value (policy true) or the
// RateLimit value: one item per outcome.
func appendItems(b []byte, requests, tokens *Outcome, policy bool) []byte {
	if requests != nil {
		b = appendItem(b, itemNames[0], requests, policy)
	}
	if tokens != nil {
		if requests != nil {
			b = append(b, ", "...)
		}
		b = appendItem(b, itemNames[1], tokens, policy)
	}
	return b
}

func appendItem(b []byte, name string, o *Outcome, policy bool) []byte {
	b = append(b, name...)
	if policy {
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, o.Policy.Limit, 10)
		b = append(b, ";w="...)
		return strconv.AppendInt(b, ceilSeconds(o.Policy.Window), 10)
	}
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, o.Decision.Remaining, 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, ceilSeconds(o.Decision.ResetAfter), 10)
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// appendDuration appends d as time.Duration.String writes it ("6m0s",
// "1.5s", "0s"), without allocating.
func appendDuration(b []byte, d time.Duration) []byte {
	return formatDuration(b, d)
}

// formatDuration writes the same text as time.Duration.String for the
// non-negative whole-millisecond durations decisions carry, falling back
// to String for anything else.
func formatDuration(b []byte, d time.Duration) []byte {
	if d < 0 || d%time.Millisecond != 0 || d >= 1<<62 {
		return append(b, d.String()...)
	}
	if d == 0 {
		return append(b, "0s"...)
	}
	if d < time.Second {
		b = strconv.AppendInt(b, int64(d/time.Millisecond), 10)
		return append(b, "ms"...)
	}
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	if h > 0 {
		b = strconv.AppendInt(b, int64(h), 10)
		b = append(b, 'h')
	}
	if h > 0 || m > 0 {
		b = strconv.AppendInt(b, int64(m), 10)
		b = append(b, 'm')
	}
	b = strconv.AppendInt(b, int64(d/time.Second), 10)
	if ms := int64(d % time.Second / time.Millisecond); ms != 0 {
		frac := [4]byte{'.', byte('0' + ms/100), byte('0' + ms/10%10), byte('0' + ms%10)}
		n := 4
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 's')
}

// PolicyHeaders holds the header values that depend only on the policies
// (the limits and RateLimit-Policy), formatted once, so that a response
// writes only its remaining counts and reset times. It is immutable and
// safe for concurrent use.
type PolicyHeaders struct {
	requests, tokens Policy
	has              [2]bool // requests, tokens
	limits           [2]string
	policy           string
}

// NewPolicyHeaders formats the policy-only header values of requests and
// tokens (either may be nil).
func NewPolicyHeaders(requests, tokens *Policy) *PolicyHeaders {
	ph := &PolicyHeaders{}
	var req, tok *Outcome
	if requests != nil {
		ph.requests, ph.has[0], req = *requests, true, &Outcome{Policy: *requests}
		ph.limits[0] = strconv.FormatInt(requests.Limit, 10)
	}
	if tokens != nil {
		ph.tokens, ph.has[1], tok = *tokens, true, &Outcome{Policy: *tokens}
		ph.limits[1] = strconv.FormatInt(tokens.Limit, 10)
	}
	ph.policy = string(appendItems(nil, req, tok, true))
	return ph
}

// Set writes the same headers as SetHeadersWith, with the value slices
// and text kept in sp while it has room (nil allocates). Outcomes of other
// policies than ph's are written by SetHeadersWith itself.
func (ph *PolicyHeaders) Set(h http.Header, requests, tokens *Outcome, sp *apierrors.Space) {
	if !samePolicy(&ph.requests, ph.has[0], requests) || !samePolicy(&ph.tokens, ph.has[1], tokens) {
		SetHeadersWith(h, requests, tokens, sp)
		return
	}
	n := 2 // RateLimit-Policy and RateLimit
	if requests != nil {
		n += 3
	}
	if tokens != nil {
		n += 3
	}
	if n == 2 {
		return
	}
	var ends [5]int
	b := sp.Text() // in place, as SetHeadersWith does
	if cap(b) < 48 {
		var buf [128]byte
		b = buf[:0]
	}
	b = appendVarying(b, &ends, requests, tokens)
	ph.put(h, sp.String(b), &ends, sp.Values(n), requests, tokens)
}

// appendVarying appends the values that vary per response: remaining and
// reset per outcome, then the RateLimit value, whose remaining counts are
// copied from the first.
func appendVarying(b []byte, ends *[5]int, requests, tokens *Outcome) []byte {
	var digits [2][2]int // where each outcome's remaining count is in b
	n := 0
	for i, o := range [2]*Outcome{requests, tokens} {
		if o == nil {
			continue
		}
		start := len(b)
		b = strconv.AppendInt(b, o.Decision.Remaining, 10)
		digits[i] = [2]int{start, len(b)}
		ends[n] = len(b)
		b = appendDuration(b, o.Decision.ResetAfter)
		ends[n+1] = len(b)
		n += 2
	}
	for i, o := range [2]*Outcome{requests, tokens} {
		if o == nil {
			continue
		}
		if i == 1 && requests != nil {
			b = append(b, ", "...)
		}
		b = append(b, itemNames[i]...)
		b = append(b, ";r="...)
		b = append(b, b[digits[i][0]:digits[i][1]]...)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(o.Decision.ResetAfter), 10)
	}
	ends[n] = len(b)
	return b
}

// itemNames are the names of the requests and tokens items of RateLimit and
// RateLimit-Policy.
var itemNames = [2]string{`"requests"`, `"tokens"`}

// put sets the headers, with the varying values cut from s and the value
// slices from vals (one per header).
func (ph *PolicyHeaders) put(h http.Header, s string, ends *[5]int, vals []string, requests, tokens *Outcome) {
	i, j, start := 0, 0, 0
	cut := func() string {
		v := s[start:ends[j]]
		start = ends[j]
		j++
		return v
	}
	if requests != nil {
		vals[0], vals[1], vals[2] = ph.limits[0], cut(), cut()
		h[HeaderLimitRequests] = vals[0:1:1]
		h[HeaderRemainingRequests] = vals[1:2:2]
		h[HeaderResetRequests] = vals[2:3:3]
		i = 3
	}
	if tokens != nil {
		vals[i], vals[i+1], vals[i+2] = ph.limits[1], cut(), cut()
		h[HeaderLimitTokens] = vals[i : i+1 : i+1]
		h[HeaderRemainingTokens] = vals[i+1 : i+2 : i+2]
		h[HeaderResetTokens] = vals[i+2 : i+3 : i+3]
		i += 3
	}
	vals[i], vals[i+1] = ph.policy, cut()
	h[HeaderPolicy] = vals[i : i+1 : i+1]
	h[HeaderRateLimit] = vals[i+1 : i+2 : i+2]
}

// samePolicy reports whether an outcome is of policy p, present when has
// is true (both absent counts as the same).
func samePolicy(p *Policy, has bool, o *Outcome) bool {
	if !has || o == nil {
		return !has && o == nil
	}
	return *p == o.Policy
}
