package errors_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/ratelimit"
)

func ExampleWriteWith() {
	e := apierrors.RateLimitExceeded("Rate limit reached for key_1 on requests: limit 60 per minute. Please try again in 2s.", 1500*time.Millisecond)
	// A Space kept with the request (here on the stack of one response)
	// holds the header values, so writing allocates nothing for them.
	var sp apierrors.Space
	rec := httptest.NewRecorder()
	apierrors.WriteWith(rec, httptest.NewRequest(http.MethodGet, "/v1/models", nil), apierrors.ShapeOpenAI, e,
		apierrors.Meta{RequestID: "req_1"}, &sp)
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Retry-After-Ms"), rec.Header().Get("X-Should-Retry"))
	fmt.Println(rec.Body.String())
	// Output:
	// 429 2 1500 true
	// {"error":{"message":"Rate limit reached for key_1 on requests: limit 60 per minute. Please try again in 2s.","type":"rate_limit_error","code":"rate_limit_exceeded","param":null,"request_id":"req_1","retry_after":2}}
}

func ExampleShape_Template() {
	e := apierrors.RateLimitExceeded("Rate limit reached. Please try again in 2s.", 2*time.Second)
	// Rendered once; every response copies it with its own request id.
	t, ok := apierrors.ShapeOpenAI.Template(e)
	if !ok {
		panic("the OpenAI shape has templates")
	}
	for _, id := range []string{"req_1", "req_2"} {
		fmt.Println(string(t.AppendBody(nil, apierrors.Meta{RequestID: id})))
	}
	_, ok = apierrors.ShapeGateway.Template(e)
	fmt.Println("gateway:", ok) // its body has the path and the time
	// Output:
	// {"error":{"message":"Rate limit reached. Please try again in 2s.","type":"rate_limit_error","code":"rate_limit_exceeded","param":null,"request_id":"req_1","retry_after":2}}
	// {"error":{"message":"Rate limit reached. Please try again in 2s.","type":"rate_limit_error","code":"rate_limit_exceeded","param":null,"request_id":"req_2","retry_after":2}}
	// gateway: false
}

func ExampleSpace() {
	// One Space per response, shared by everything that writes its
	// headers: here the rate limiter's and a 429's.
	var sp apierrors.Space
	rec := httptest.NewRecorder()
	rpm := ratelimit.PerMinute(60)
	out := ratelimit.Outcome{Policy: rpm, Decision: ratelimit.Decision{Limit: 60, Remaining: 0, ResetAfter: 1500 * time.Millisecond, RetryAfter: 1500 * time.Millisecond}}
	ratelimit.SetHeadersWith(rec.Header(), &out, nil, &sp)
	apierrors.WriteWith(rec, httptest.NewRequest(http.MethodGet, "/v1/models", nil), apierrors.ShapeOpenAI,
		apierrors.RateLimitExceeded("Rate limit reached.", out.Decision.RetryAfter), apierrors.Meta{RequestID: "req_1"}, &sp)
	for _, k := range []string{"X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests", "Ratelimit", "Retry-After", "Retry-After-Ms"} {
		fmt.Printf("%s: %s\n", k, rec.Header().Get(k))
	}
	// Output:
	// X-Ratelimit-Remaining-Requests: 0
	// X-Ratelimit-Reset-Requests: 1.5s
	// Ratelimit: "requests";r=0;t=2
	// Retry-After: 2
	// Retry-After-Ms: 1500
}
