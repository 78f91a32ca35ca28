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
// (`"requests";r=59;t=1`, t in whole seconds rounded up). The values are
// written into one string and their slices cut from one array: two
// allocations, however many headers.
func SetHeaders(h http.Header, requests, tokens *Outcome) {
	SetHeadersOf(h, Outcomes{Requests: requests, Tokens: tokens})
}

// SetHeadersOf is [SetHeaders] for every limit of o. OpenAI's
// x-ratelimit-* dialect has no names for split token limits: input and
// output token limits appear as the "input_tokens" and "output_tokens"
// items of RateLimit-Policy and RateLimit only. Two allocations.
func SetHeadersOf(h http.Header, o Outcomes) {
	outs := [4]*Outcome{o.Requests, o.Tokens, o.InputTokens, o.OutputTokens}
	if outs == [4]*Outcome{} {
		return
	}
	var buf [512]byte
	var ends [8]int
	b, n := buf[:0], 0
	for _, out := range outs[:2] {
		if out == nil {
			continue
		}
		b = strconv.AppendInt(b, out.Policy.Limit, 10)
		ends[n] = len(b)
		b = strconv.AppendInt(b, out.Decision.Remaining, 10)
		ends[n+1] = len(b)
		b = appendDuration(b, out.Decision.ResetAfter)
		ends[n+2] = len(b)
		n += 3
	}
	b = appendItems(b, &outs, true)
	ends[n] = len(b)
	b = appendItems(b, &outs, false)
	ends[n+1] = len(b)
	n += 2
	text := string(b)
	vals := make([]string, n)
	start := 0
	for i := range n {
		vals[i] = text[start:ends[i]]
		start = ends[i]
	}
	put := func(k string) {
		h[k], vals = vals[:1:1], vals[1:]
	}
	if o.Requests != nil {
		put(HeaderLimitRequests)
		put(HeaderRemainingRequests)
		put(HeaderResetRequests)
	}
	if o.Tokens != nil {
		put(HeaderLimitTokens)
		put(HeaderRemainingTokens)
		put(HeaderResetTokens)
	}
	put(HeaderPolicy)
	put(HeaderRateLimit)
}

// appendDuration appends d as time.Duration.String writes it ("6m0s",
// "1.5s", "0s"): for the whole-millisecond durations decisions carry, with
// no allocation; anything else through String.
func appendDuration(b []byte, d time.Duration) []byte {
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

// appendItems appends the RateLimit-Policy value (policy true) or the
// RateLimit value: one item per outcome.
func appendItems(b []byte, outs *[4]*Outcome, policy bool) []byte {
	first := true
	for i, o := range outs {
		if o == nil {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = appendItem(b, itemNames[i], o, policy)
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

// itemNames are the names of the items of RateLimit and RateLimit-Policy,
// in the order of Outcomes' fields.
var itemNames = [4]string{`"requests"`, `"tokens"`, `"input_tokens"`, `"output_tokens"`}

// The header names SetAnthropicHeaders writes, in canonical form:
// Anthropic's anthropic-ratelimit-* dialect.
const (
	HeaderAnthropicRequestsLimit         = "Anthropic-Ratelimit-Requests-Limit"
	HeaderAnthropicRequestsRemaining     = "Anthropic-Ratelimit-Requests-Remaining"
	HeaderAnthropicRequestsReset         = "Anthropic-Ratelimit-Requests-Reset"
	HeaderAnthropicTokensLimit           = "Anthropic-Ratelimit-Tokens-Limit"
	HeaderAnthropicTokensRemaining       = "Anthropic-Ratelimit-Tokens-Remaining"
	HeaderAnthropicTokensReset           = "Anthropic-Ratelimit-Tokens-Reset"
	HeaderAnthropicInputTokensLimit      = "Anthropic-Ratelimit-Input-Tokens-Limit"
	HeaderAnthropicInputTokensRemaining  = "Anthropic-Ratelimit-Input-Tokens-Remaining"
	HeaderAnthropicInputTokensReset      = "Anthropic-Ratelimit-Input-Tokens-Reset"
	HeaderAnthropicOutputTokensLimit     = "Anthropic-Ratelimit-Output-Tokens-Limit"
	HeaderAnthropicOutputTokensRemaining = "Anthropic-Ratelimit-Output-Tokens-Remaining"
	HeaderAnthropicOutputTokensReset     = "Anthropic-Ratelimit-Output-Tokens-Reset"
)

// Outcomes are every limit of one response, as SetHeadersOf and
// SetAnthropicHeaders write them; a nil field is a limit that does not
// apply.
type Outcomes struct {
	// Requests is the requests limit (RPM).
	Requests *Outcome
	// Tokens is a limit on input and output tokens together.
	Tokens *Outcome
	// InputTokens and OutputTokens are split token limits (ITPM, OTPM).
	InputTokens, OutputTokens *Outcome
}

// anthropicNames are the limit, remaining and reset headers of each
// field of Outcomes, in order.
var anthropicNames = [4][3]string{
	{HeaderAnthropicRequestsLimit, HeaderAnthropicRequestsRemaining, HeaderAnthropicRequestsReset},
	{HeaderAnthropicTokensLimit, HeaderAnthropicTokensRemaining, HeaderAnthropicTokensReset},
	{HeaderAnthropicInputTokensLimit, HeaderAnthropicInputTokensRemaining, HeaderAnthropicInputTokensReset},
	{HeaderAnthropicOutputTokensLimit, HeaderAnthropicOutputTokensRemaining, HeaderAnthropicOutputTokensReset},
}

// SetAnthropicHeaders writes the rate-limit headers of a response on h as
// Anthropic's API sends them: for each limit of o that is not nil,
// anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-limit,
// -remaining and -reset, the reset being the RFC 3339 time (UTC, whole
// seconds rounded up, so never early) at which the bucket is full again,
// counted from now. Like SetHeaders it costs two allocations, however
// many headers.
func SetAnthropicHeaders(h http.Header, now time.Time, o Outcomes) {
	outs := [4]*Outcome{o.Requests, o.Tokens, o.InputTokens, o.OutputTokens}
	var buf [512]byte
	var ends [12]int
	b, n := buf[:0], 0
	for _, out := range outs {
		if out == nil {
			continue
		}
		b = strconv.AppendInt(b, out.Policy.Limit, 10)
		ends[n] = len(b)
		b = strconv.AppendInt(b, out.Decision.Remaining, 10)
		ends[n+1] = len(b)
		b = resetTime(now, out.Decision.ResetAfter).AppendFormat(b, time.RFC3339)
		ends[n+2] = len(b)
		n += 3
	}
	if n == 0 {
		return
	}
	text := string(b)
	vals := make([]string, n)
	start := 0
	for i := range n {
		vals[i] = text[start:ends[i]]
		start = ends[i]
	}
	for i, out := range outs {
		if out == nil {
			continue
		}
		for _, k := range anthropicNames[i] {
			h[k], vals = vals[:1:1], vals[1:]
		}
	}
}

// resetTime is now + d in UTC, rounded up to the second.
func resetTime(now time.Time, d time.Duration) time.Time {
	t := now.Add(max(d, 0)).UTC()
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}
