package ratelimit_test

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/gatekit/gatekit/ratelimit"
)

func TestSetHeadersWritesOpenAIAndIETFHeaders(t *testing.T) {
	h := http.Header{}
	req := &ratelimit.Outcome{Policy: ratelimit.PerMinute(60), Decision: ratelimit.Decision{Allowed: true, Limit: 60, Remaining: 59, ResetAfter: time.Second}}
	tok := &ratelimit.Outcome{Policy: ratelimit.PerMinute(10000), Decision: ratelimit.Decision{Allowed: true, Limit: 10000, Remaining: 0, ResetAfter: 6 * time.Minute}}
	ratelimit.SetHeaders(h, req, tok)
	want := map[string]string{
		"X-Ratelimit-Limit-Requests":     "60",
		"X-Ratelimit-Remaining-Requests": "59",
		"X-Ratelimit-Reset-Requests":     "1s",
		"X-Ratelimit-Limit-Tokens":       "10000",
		"X-Ratelimit-Remaining-Tokens":   "0",
		"X-Ratelimit-Reset-Tokens":       "6m0s",
		"Ratelimit-Policy":               `"requests";q=60;w=60, "tokens";q=10000;w=60`,
		"Ratelimit":                      `"requests";r=59;t=1, "tokens";r=0;t=360`,
	}
	if len(h) != len(want) {
		t.Errorf("got %d headers, want %d: %v", len(h), len(want), h)
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	h2 := http.Header{}
	ratelimit.SetHeaders(h2, nil, tok)
	if h2.Get("X-Ratelimit-Limit-Requests") != "" || h2.Get("Ratelimit") != `"tokens";r=0;t=360` {
		t.Errorf("tokens only: %v", h2)
	}
	h3 := http.Header{}
	ratelimit.SetHeaders(h3, nil, nil)
	if len(h3) != 0 {
		t.Errorf("no outcomes wrote %v", h3)
	}
}

func TestResetHeaderMatchesDurationString(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []time.Duration{0, time.Millisecond, 999 * time.Millisecond, time.Second, 1500 * time.Millisecond,
		time.Minute, 6 * time.Minute, time.Hour + time.Millisecond, 49 * time.Hour, 10*time.Second + 100*time.Millisecond}
	for range 10000 {
		cases = append(cases, time.Duration(r.Int64N(int64(72*time.Hour/time.Millisecond)))*time.Millisecond)
	}
	for _, d := range cases {
		h := http.Header{}
		ratelimit.SetHeaders(h, &ratelimit.Outcome{Policy: ratelimit.PerMinute(1), Decision: ratelimit.Decision{ResetAfter: d}}, nil)
		if got := h.Get("X-Ratelimit-Reset-Requests"); got != d.String() {
			t.Fatalf("reset for %d ms = %q, want %q", d/time.Millisecond, got, d.String())
		}
	}
}

func BenchmarkSetHeaders(b *testing.B) {
	h := http.Header{}
	o := &ratelimit.Outcome{Policy: ratelimit.PerMinute(600), Decision: ratelimit.Decision{Allowed: true, Limit: 600, Remaining: 321, ResetAfter: 27 * time.Second}}
	b.ReportAllocs()
	for b.Loop() {
		ratelimit.SetHeaders(h, o, nil)
	}
}

func TestSetHeadersAllocatesTwice(t *testing.T) {
	rpm, tpm := ratelimit.PerMinute(600), ratelimit.PerMinute(100_000)
	req := &ratelimit.Outcome{Policy: rpm, Decision: ratelimit.Decision{Allowed: true, Limit: 600, Remaining: 321, ResetAfter: 27 * time.Second}}
	tok := &ratelimit.Outcome{Policy: tpm, Decision: ratelimit.Decision{Allowed: true, Limit: 100_000, Remaining: 99_000, ResetAfter: 1500 * time.Millisecond}}
	h := http.Header{}
	ratelimit.SetHeaders(h, req, tok)
	if got := testing.AllocsPerRun(100, func() { ratelimit.SetHeaders(h, req, tok) }); got != 2 {
		t.Fatalf("%v allocations, want 2", got)
	}
}
