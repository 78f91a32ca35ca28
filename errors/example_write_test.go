package errors_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
)

func ExampleWrite() {
	e := apierrors.RateLimitExceeded("Rate limit reached for key_1 on requests: limit 60 per minute. Please try again in 2s.", 1500*time.Millisecond)
	rec := httptest.NewRecorder()
	apierrors.Write(rec, httptest.NewRequest(http.MethodGet, "/v1/models", nil), apierrors.ShapeOpenAI, e,
		apierrors.Meta{RequestID: "req_1"})
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Retry-After-Ms"), rec.Header().Get("X-Should-Retry"))
	fmt.Println(rec.Body.String())
	// Output:
	// 429 2 1500 true
	// {"error":{"message":"Rate limit reached for key_1 on requests: limit 60 per minute. Please try again in 2s.","type":"rate_limit_error","code":"rate_limit_exceeded","param":null,"request_id":"req_1","retry_after":2}}
}
