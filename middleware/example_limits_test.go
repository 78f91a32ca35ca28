package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// orDash shows an empty header as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// exampleServe answers one GET / made with key.
func exampleServe(e *echo.Echo, key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// Auth and Admission as steps of one Chain: two requests a minute per key.
func ExampleChain() {
	two := ratelimit.PerMinute(2)
	keys := middleware.NewStaticKeys()
	_ = keys.Add("sk-example", &middleware.Principal{ID: "example", Limits: middleware.Limits{Requests: &two}})
	store, _ := admission.NewMemory(nil)

	auth, _ := middleware.AuthConfig{Keys: keys}.ToStep()
	limit, _ := middleware.AdmissionConfig{Store: store}.ToStep()
	chain, _ := middleware.Chain(auth, limit)

	e := echo.New()
	e.HTTPErrorHandler = middleware.ErrorHandler()
	e.Use(chain)
	e.GET("/", func(c echo.Context) error {
		return c.String(http.StatusOK, "hello "+middleware.GetPrincipal(c).ID)
	})
	for range 3 {
		rec := exampleServe(e, "sk-example")
		fmt.Println(rec.Code, rec.Header().Get("X-Ratelimit-Remaining-Requests"), orDash(rec.Header().Get("Retry-After")))
	}
	fmt.Println(exampleServe(e, "sk-wrong").Code)
	// Output:
	// 200 1 -
	// 200 0 -
	// 429 0 30
	// 401
}

// A budget of 100 micro-USD at 1 USD per million tokens either way: the
// first request reserves its prompt and its 60-token allowance, and is
// settled to the 50 tokens it used; the second asks for 60 more tokens
// with only 50 micros left, and is refused.
func ExampleAdmissionWithConfig() {
	keys := middleware.NewStaticKeys()
	_ = keys.Add("sk-example", &middleware.Principal{ID: "example", Account: "acme",
		Budgets: []budget.Scope{{Tag: "acme", Kind: "key", ID: "example", Limit: 100, Period: budget.None}}})
	store, _ := admission.NewMemory(nil)
	auth, _ := middleware.AuthConfig{Keys: keys}.ToStep()
	usd := middleware.Price{Input: 1_000_000, Output: 1_000_000}
	admit, _ := middleware.AdmissionConfig{
		Store:      store,
		BudgetsFor: func(_ echo.Context, p *middleware.Principal) []budget.Scope { return p.Budgets },
		Estimate: func(echo.Context) (middleware.Estimate, error) {
			return middleware.Estimate{Model: "m", MaxOutputTokens: 60}, nil
		},
		Prices: &middleware.Prices{Default: &usd},
	}.ToStep()
	chain, _ := middleware.Chain(auth, admit)

	e := echo.New()
	e.HTTPErrorHandler = middleware.ErrorHandler()
	e.Use(chain)
	e.GET("/", func(c echo.Context) error {
		allowance, _ := middleware.Allowance(c)
		if err := middleware.ReportUsage(c, middleware.Usage{Model: "m", CompletionTokens: min(50, allowance)}); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	fmt.Println(exampleServe(e, "sk-example").Code) // reserves 60, settles 50
	rec := exampleServe(e, "sk-example")            // 50 left: 60 does not fit
	fmt.Println(rec.Code, apierrors.Decode(rec.Result()).Code)
	// Output:
	// 204
	// 402 budget_exceeded
}

// The first request with an Idempotency-Key runs; the second is replayed.
func ExampleIdempotencyWithConfig() {
	store, _ := idempotency.NewMemory(nil)
	idem, _ := middleware.IdempotencyConfig{Store: store, TTL: time.Hour}.ToStep()
	chain, _ := middleware.Chain(idem)
	runs := 0
	e := echo.New()
	e.Use(chain)
	e.GET("/", func(c echo.Context) error {
		runs++
		return c.String(http.StatusOK, fmt.Sprintf("run %d", runs))
	})
	for range 2 {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Idempotency-Key", "order-42")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		fmt.Println(rec.Body.String(), orDash(rec.Header().Get("Idempotent-Replayed")))
	}
	// Output:
	// run 1 -
	// run 1 true
}
