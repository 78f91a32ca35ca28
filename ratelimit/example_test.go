package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gatekit/gatekit/ratelimit"
)

func ExampleNewMemory() {
	// A fixed clock, so that the output does not depend on timing.
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	limiter, err := ratelimit.NewMemory(&ratelimit.MemoryConfig{
		Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	rpm := ratelimit.PerMinute(60).WithBurst(2) // one a second, two at once

	for range 3 {
		d, err := limiter.Allow(ctx, "principal-42:/v1/chat", rpm, 1)
		if err != nil {
			panic(err) // a store failure; Memory never fails
		}
		fmt.Printf("allowed=%v remaining=%d reset=%v retry=%v\n", d.Allowed, d.Remaining, d.ResetAfter, d.RetryAfter)
	}
	// Output:
	// allowed=true remaining=1 reset=1s retry=0s
	// allowed=true remaining=0 reset=2s retry=0s
	// allowed=false remaining=0 reset=2s retry=1s
}

func ExampleSetHeaders() {
	rpm := ratelimit.PerMinute(60)
	h := http.Header{}
	o := ratelimit.Outcome{Policy: rpm, Decision: ratelimit.Decision{Allowed: true, Limit: 60, Remaining: 59, ResetAfter: time.Second}}
	ratelimit.SetHeaders(h, &o, nil)
	for _, k := range []string{ratelimit.HeaderLimitRequests, ratelimit.HeaderRemainingRequests, ratelimit.HeaderResetRequests, ratelimit.HeaderPolicy, ratelimit.HeaderRateLimit} {
		fmt.Printf("%s: %s\n", k, h.Get(k))
	}
	// Output:
	// X-Ratelimit-Limit-Requests: 60
	// X-Ratelimit-Remaining-Requests: 59
	// X-Ratelimit-Reset-Requests: 1s
	// Ratelimit-Policy: "requests";q=60;w=60
	// Ratelimit: "requests";r=59;t=1
}
