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
// (`"requests";r=59;t=1`, t in whole seconds rounded up).
func SetHeaders(h http.Header, requests, tokens *Outcome) {
	if requests == nil && tokens == nil {
		return
	}
	if requests != nil {
		h.Set(HeaderLimitRequests, strconv.FormatInt(requests.Policy.Limit, 10))
		h.Set(HeaderRemainingRequests, strconv.FormatInt(requests.Decision.Remaining, 10))
		h.Set(HeaderResetRequests, requests.Decision.ResetAfter.String())
	}
	if tokens != nil {
		h.Set(HeaderLimitTokens, strconv.FormatInt(tokens.Policy.Limit, 10))
		h.Set(HeaderRemainingTokens, strconv.FormatInt(tokens.Decision.Remaining, 10))
		h.Set(HeaderResetTokens, tokens.Decision.ResetAfter.String())
	}
	h.Set(HeaderPolicy, string(appendItems(nil, requests, tokens, true)))
	h.Set(HeaderRateLimit, string(appendItems(nil, requests, tokens, false)))
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

// itemNames are the names of the requests and tokens items of RateLimit and
// RateLimit-Policy.
var itemNames = [2]string{`"requests"`, `"tokens"`}
