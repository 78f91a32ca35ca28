package ratelimit

import (
	"net/http"
	"strconv"
	"time"
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
	if requests == nil && tokens == nil {
		return
	}
	var buf [256]byte
	b := buf[:0]
	var ends [8]int // end offsets of the values in b
	n := 0
	mark := func() { ends[n] = len(b); n++ }
	for _, o := range [2]*Outcome{requests, tokens} {
		if o == nil {
			continue
		}
		b = strconv.AppendInt(b, o.Policy.Limit, 10)
		mark()
		b = strconv.AppendInt(b, o.Decision.Remaining, 10)
		mark()
		b = appendDuration(b, o.Decision.ResetAfter)
		mark()
	}
	sep := false
	for i, o := range [2]*Outcome{requests, tokens} {
		if o == nil {
			continue
		}
		if sep {
			b = append(b, ", "...)
		}
		sep = true
		b = append(b, []string{`"requests";q=`, `"tokens";q=`}[i]...)
		b = strconv.AppendInt(b, o.Policy.Limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, ceilSeconds(o.Policy.Window), 10)
	}
	mark()
	sep = false
	for i, o := range [2]*Outcome{requests, tokens} {
		if o == nil {
			continue
		}
		if sep {
			b = append(b, ", "...)
		}
		sep = true
		b = append(b, []string{`"requests";r=`, `"tokens";r=`}[i]...)
		b = strconv.AppendInt(b, o.Decision.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(o.Decision.ResetAfter), 10)
	}
	mark()

	s := string(b)
	vals := make([]string, n)
	start := 0
	for i := 0; i < n; i++ {
		vals[i] = s[start:ends[i]]
		start = ends[i]
	}
	i := 0
	put := func(key string) {
		h[key] = vals[i : i+1 : i+1]
		i++
	}
	if requests != nil {
		put(HeaderLimitRequests)
		put(HeaderRemainingRequests)
		put(HeaderResetRequests)
	}
	if tokens != nil {
		put(HeaderLimitTokens)
		put(HeaderRemainingTokens)
		put(HeaderResetTokens)
	}
	put(HeaderPolicy)
	put(HeaderRateLimit)
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
	var tmp [32]byte
	return append(b, formatDuration(tmp[:0], d)...)
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
		frac := []byte{'.', byte('0' + ms/100), byte('0' + ms/10%10), byte('0' + ms%10)}
		for frac[len(frac)-1] == '0' {
			frac = frac[:len(frac)-1]
		}
		b = append(b, frac...)
	}
	return append(b, 's')
}
