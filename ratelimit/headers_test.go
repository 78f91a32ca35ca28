package ratelimit_test

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
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

func TestSetHeadersAllocatesTwice(t *testing.T) {
	h := http.Header{}
	o := &ratelimit.Outcome{Policy: ratelimit.PerMinute(600), Decision: ratelimit.Decision{Allowed: true, Limit: 600, Remaining: 321, ResetAfter: 27 * time.Second}}
	allocs := testing.AllocsPerRun(1000, func() { ratelimit.SetHeaders(h, o, o) })
	if allocs > 2 {
		t.Fatalf("SetHeaders allocates %.0f times, want at most 2", allocs)
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

func TestPolicyHeadersWriteWhatSetHeadersWrites(t *testing.T) {
	rpm, tpm := ratelimit.PerMinute(600), ratelimit.PerHour(1_000_000).WithBurst(50_000)
	other := ratelimit.PerSecond(3)
	out := func(p ratelimit.Policy, rem int64, reset time.Duration) *ratelimit.Outcome {
		return &ratelimit.Outcome{Policy: p, Decision: ratelimit.Decision{Limit: p.Limit, Remaining: rem, ResetAfter: reset}}
	}
	for _, tc := range []struct {
		name     string
		phReq    *ratelimit.Policy
		phTok    *ratelimit.Policy
		req, tok *ratelimit.Outcome
	}{
		{"requests", &rpm, nil, out(rpm, 599, 100*time.Millisecond), nil},
		{"tokens", nil, &tpm, nil, out(tpm, 12, 6*time.Minute)},
		{"both", &rpm, &tpm, out(rpm, 0, time.Minute), out(tpm, 49_999, 1500*time.Millisecond)},
		{"another policy", &rpm, nil, out(other, 1, time.Second), nil},
		{"fewer outcomes", &rpm, &tpm, out(rpm, 3, time.Second), nil},
	} {
		want, got := http.Header{}, http.Header{}
		ratelimit.SetHeaders(want, tc.req, tc.tok)
		ratelimit.NewPolicyHeaders(tc.phReq, tc.phTok).Set(got, tc.req, tc.tok, new(apierrors.Space))
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", tc.name, got, want)
		}
		for k := range want {
			if got.Get(k) != want.Get(k) {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, got.Get(k), want.Get(k))
			}
		}
	}
	ph := ratelimit.NewPolicyHeaders(&rpm, nil)
	h := http.Header{}
	o := out(rpm, 321, 27*time.Second)
	if n := testing.AllocsPerRun(1000, func() { ph.Set(h, o, nil, new(apierrors.Space)) }); n > 1 {
		t.Fatalf("Set with a Space allocates %.0f times beyond the Space, want 0", n-1)
	}
	// A Space whose text room is nearly used up still holds the value
	// slices; the text is allocated, once.
	spaces := make([]apierrors.Space, 1001)
	for i := range spaces {
		spaces[i].String(make([]byte, 80))
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { ph.Set(h, o, nil, &spaces[i]); i++ }); n > 1 {
		t.Fatalf("Set with a Space short of text room allocates %.0f times, want at most 1", n)
	}
	if n := testing.AllocsPerRun(1000, func() { ph.Set(h, o, nil, nil) }); n > 2 {
		t.Fatalf("Set without a Space allocates %.0f times, want at most 2", n)
	}
}

// Room in a Space is given out once: later responses written with the
// same Space must not rewrite the values earlier ones' headers still hold,
// and once the room runs out the values are allocated, still right.
func TestSpaceRoomIsNeverGivenTwice(t *testing.T) {
	rpm := ratelimit.PerMinute(600)
	ph := ratelimit.NewPolicyHeaders(&rpm, nil)
	out := func(rem int64) *ratelimit.Outcome {
		return &ratelimit.Outcome{Policy: rpm, Decision: ratelimit.Decision{Limit: 600, Remaining: rem, ResetAfter: time.Second}}
	}
	for name, set := range map[string]func(h http.Header, o *ratelimit.Outcome, sp *apierrors.Space){
		"PolicyHeaders.Set": func(h http.Header, o *ratelimit.Outcome, sp *apierrors.Space) { ph.Set(h, o, nil, sp) },
		"SetHeadersWith": func(h http.Header, o *ratelimit.Outcome, sp *apierrors.Space) {
			ratelimit.SetHeadersWith(h, o, nil, sp)
		},
	} {
		sp := new(apierrors.Space)
		hs := make([]http.Header, 6)
		for i := range hs {
			hs[i] = http.Header{}
			set(hs[i], out(int64(590+i)), sp)
		}
		for i, h := range hs {
			rem := strconv.Itoa(590 + i)
			if got := h.Get(ratelimit.HeaderRemainingRequests); got != rem {
				t.Errorf("%s: response %d's remaining = %q after later uses of its Space, want %s", name, i, got, rem)
			}
			if got, want := h.Get(ratelimit.HeaderRateLimit), `"requests";r=`+rem+`;t=1`; got != want {
				t.Errorf("%s: response %d's RateLimit = %q, want %q", name, i, got, want)
			}
			if got := h.Get(ratelimit.HeaderLimitRequests); got != "600" {
				t.Errorf("%s: response %d's limit = %q, want 600", name, i, got)
			}
		}
	}
}

func BenchmarkPolicyHeadersSet(b *testing.B) {
	p := ratelimit.PerMinute(600)
	ph := ratelimit.NewPolicyHeaders(&p, nil)
	h := http.Header{}
	o := &ratelimit.Outcome{Policy: p, Decision: ratelimit.Decision{Allowed: true, Limit: 600, Remaining: 321, ResetAfter: 27 * time.Second}}
	b.ReportAllocs()
	for b.Loop() {
		ph.Set(h, o, nil, new(apierrors.Space))
	}
}

// PolicyHeaders writes, for any counts and times, exactly what SetHeaders
// writes: it formats only the varying values and copies the rest.
func TestPolicyHeadersMatchSetHeadersOnRandomOutcomes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rpm, tpm := ratelimit.PerMinute(1_000_000_000), ratelimit.PerHour(90_000).WithBurst(12_345)
	out := func(p ratelimit.Policy) *ratelimit.Outcome {
		rem := rng.Int64N(p.Limit + 1)
		if rng.IntN(4) == 0 {
			rem = rng.Int64N(10)
		}
		reset := time.Duration(rng.Int64N(int64(3*time.Hour/time.Millisecond))) * time.Millisecond
		return &ratelimit.Outcome{Policy: p, Decision: ratelimit.Decision{Limit: p.Limit, Remaining: rem, ResetAfter: reset}}
	}
	for i := range 2000 {
		var req, tok *ratelimit.Outcome
		switch i % 3 {
		case 0:
			req = out(rpm)
		case 1:
			tok = out(tpm)
		default:
			req, tok = out(rpm), out(tpm)
		}
		want, got := http.Header{}, http.Header{}
		ratelimit.SetHeaders(want, req, tok)
		ratelimit.NewPolicyHeaders(&rpm, &tpm).Set(got, req, tok, new(apierrors.Space))
		if i%3 != 2 {
			got = http.Header{}
			var ph *ratelimit.PolicyHeaders
			if req != nil {
				ph = ratelimit.NewPolicyHeaders(&rpm, nil)
			} else {
				ph = ratelimit.NewPolicyHeaders(nil, &tpm)
			}
			ph.Set(got, req, tok, new(apierrors.Space))
		}
		if len(got) != len(want) {
			t.Fatalf("case %d: %v, want %v", i, got, want)
		}
		for k := range want {
			if got.Get(k) != want.Get(k) {
				t.Fatalf("case %d: %s = %q, want %q", i, k, got.Get(k), want.Get(k))
			}
		}
	}
}
