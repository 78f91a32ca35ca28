package ratelimit_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatekit/gatekit/ratelimit"
)

func TestSetAnthropicHeadersWritesEachLimitWithAnRFC3339ResetNeverEarly(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 250_000_000, time.FixedZone("CET", 3600))
	h := http.Header{}
	req := &ratelimit.Outcome{Policy: ratelimit.PerMinute(50), Decision: ratelimit.Decision{Remaining: 49, ResetAfter: 1200 * time.Millisecond}}
	in := &ratelimit.Outcome{Policy: ratelimit.PerMinute(40000), Decision: ratelimit.Decision{Remaining: 39000, ResetAfter: 1500 * time.Millisecond}}
	out := &ratelimit.Outcome{Policy: ratelimit.PerMinute(8000), Decision: ratelimit.Decision{Remaining: 8000, ResetAfter: 0}}
	ratelimit.SetAnthropicHeaders(h, now, ratelimit.Outcomes{Requests: req, InputTokens: in, OutputTokens: out})
	want := map[string]string{
		"anthropic-ratelimit-requests-limit":          "50",
		"anthropic-ratelimit-requests-remaining":      "49",
		"anthropic-ratelimit-requests-reset":          "2026-12-02T07:00:02Z", // 07:00:01.45, rounded up
		"anthropic-ratelimit-input-tokens-limit":      "40000",
		"anthropic-ratelimit-input-tokens-remaining":  "39000",
		"anthropic-ratelimit-input-tokens-reset":      "2026-12-02T07:00:02Z", // 07:00:01.75
		"anthropic-ratelimit-output-tokens-limit":     "8000",
		"anthropic-ratelimit-output-tokens-remaining": "8000",
		"anthropic-ratelimit-output-tokens-reset":     "2026-12-02T07:00:01Z", // now, rounded up
	}
	if len(h) != len(want) {
		t.Errorf("got %d headers, want %d: %v", len(h), len(want), h)
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.Get("anthropic-ratelimit-tokens-limit") != "" {
		t.Error("a combined token limit is written although none applies")
	}
}

func TestSetAnthropicHeadersWritesTheCombinedTokenLimitAndNothingWithoutLimits(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	h := http.Header{}
	tok := &ratelimit.Outcome{Policy: ratelimit.PerMinute(100), Decision: ratelimit.Decision{Remaining: 0, ResetAfter: time.Minute}}
	ratelimit.SetAnthropicHeaders(h, now, ratelimit.Outcomes{Tokens: tok})
	if len(h) != 3 || h.Get("anthropic-ratelimit-tokens-remaining") != "0" || h.Get("anthropic-ratelimit-tokens-reset") != "2026-12-02T08:01:00Z" {
		t.Fatalf("%v", h)
	}
	empty := http.Header{}
	ratelimit.SetAnthropicHeaders(empty, now, ratelimit.Outcomes{})
	if len(empty) != 0 {
		t.Fatalf("headers without limits: %v", empty)
	}
}

// Two allocations, whatever the number of headers: one string holds
// every value, one array every slice.
func TestSetAnthropicHeadersAllocatesTwice(t *testing.T) {
	now := time.Now()
	o := &ratelimit.Outcome{Policy: ratelimit.PerMinute(1000), Decision: ratelimit.Decision{Remaining: 999, ResetAfter: time.Second}}
	all := ratelimit.Outcomes{Requests: o, Tokens: o, InputTokens: o, OutputTokens: o}
	h := http.Header{}
	ratelimit.SetAnthropicHeaders(h, now, all)
	if got := testing.AllocsPerRun(100, func() { ratelimit.SetAnthropicHeaders(h, now, all) }); got != 2 {
		t.Fatalf("%v allocations, want 2", got)
	}
}

// On OpenAI's dialect split token limits are RateLimit items only.
func TestSetHeadersOfNamesSplitTokenLimitsInTheIETFHeaders(t *testing.T) {
	h := http.Header{}
	req := &ratelimit.Outcome{Policy: ratelimit.PerMinute(60), Decision: ratelimit.Decision{Remaining: 59, ResetAfter: time.Second}}
	in := &ratelimit.Outcome{Policy: ratelimit.PerMinute(40000), Decision: ratelimit.Decision{Remaining: 39000, ResetAfter: 1500 * time.Millisecond}}
	out := &ratelimit.Outcome{Policy: ratelimit.PerMinute(8000), Decision: ratelimit.Decision{Remaining: 7000, ResetAfter: 7500 * time.Millisecond}}
	ratelimit.SetHeadersOf(h, ratelimit.Outcomes{Requests: req, InputTokens: in, OutputTokens: out})
	want := map[string]string{
		"X-Ratelimit-Limit-Requests":     "60",
		"X-Ratelimit-Remaining-Requests": "59",
		"X-Ratelimit-Reset-Requests":     "1s",
		"Ratelimit-Policy":               `"requests";q=60;w=60, "input_tokens";q=40000;w=60, "output_tokens";q=8000;w=60`,
		"Ratelimit":                      `"requests";r=59;t=1, "input_tokens";r=39000;t=2, "output_tokens";r=7000;t=8`,
	}
	if len(h) != len(want) {
		t.Errorf("got %d headers, want %d: %v", len(h), len(want), h)
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	all := ratelimit.Outcomes{Requests: req, Tokens: req, InputTokens: in, OutputTokens: out}
	if got := testing.AllocsPerRun(100, func() { ratelimit.SetHeadersOf(h, all) }); got != 2 {
		t.Fatalf("%v allocations, want 2", got)
	}
}
