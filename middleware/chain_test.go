package middleware_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

func TestChainRunsStepsInOrderAndShortCircuits(t *testing.T) {
	var trace []string
	step := func(name string, stop bool) middleware.Step {
		return func(c echo.Context, next echo.HandlerFunc) error {
			trace = append(trace, name)
			if stop {
				return c.String(http.StatusTeapot, name)
			}
			err := next(c)
			trace = append(trace, "/"+name)
			return err
		}
	}
	for _, tc := range []struct {
		steps []middleware.Step
		want  string
		code  int
	}{
		{[]middleware.Step{step("a", false), step("b", false), step("c", false)}, "a b c handler /c /b /a", 200},
		{[]middleware.Step{step("a", false), step("b", true), step("c", false)}, "a b /a", http.StatusTeapot},
		{[]middleware.Step{step("a", false)}, "a handler /a", 200},
		{nil, "handler", 200},
	} {
		trace = nil
		mw, err := middleware.Chain(tc.steps...)
		if err != nil {
			t.Fatal(err)
		}
		e := echo.New()
		e.Use(mw)
		e.GET("/", func(c echo.Context) error {
			trace = append(trace, "handler")
			return c.String(200, "ok")
		})
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if got := strings.Join(trace, " "); got != tc.want || rec.Code != tc.code {
			t.Errorf("trace %q (%d), want %q (%d)", got, rec.Code, tc.want, tc.code)
		}
	}
	if _, err := middleware.Chain(nil); err == nil {
		t.Error("a nil step was accepted")
	}
}

func TestChainSharesTheRequestRecordWithHandlers(t *testing.T) {
	keys := middleware.NewStaticKeys()
	if err := keys.Add("sk-1", &middleware.Principal{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	auth, err := middleware.AuthConfig{Keys: keys}.ToStep()
	if err != nil {
		t.Fatal(err)
	}
	rid, _ := middleware.DefaultRequestIDConfig.ToStep()
	mw, err := middleware.Chain(rid, auth)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(mw)
	e.GET("/", func(c echo.Context) error {
		if err := middleware.ReportUsage(c, middleware.Usage{PromptTokens: 1}); err != nil {
			return err
		}
		u, _ := middleware.GetUsage(c)
		return c.String(200, middleware.GetPrincipal(c).ID+" "+middleware.GetRequestID(c)[:4]+" "+string(rune('0'+u.PromptTokens)))
	})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer sk-1")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Body.String() != "p1 req_ 1" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
}

func TestChainAllocatesOncePerRequest(t *testing.T) {
	noop := func(c echo.Context, next echo.HandlerFunc) error { return next(c) }
	one, _ := middleware.Chain(noop)
	five, _ := middleware.Chain(noop, noop, noop, noop, noop)
	// The fewest allocations over a few rounds: the runtime sometimes
	// allocates on its own (a sync.Pool emptied by a GC), never less.
	allocs := func(mw echo.MiddlewareFunc) float64 {
		e := echo.New()
		e.Use(mw)
		e.GET("/", func(c echo.Context) error { return c.NoContent(204) })
		req := httptest.NewRequest("GET", "/", nil)
		w := httptest.NewRecorder()
		least := -1.0
		for range 5 {
			if a := testing.AllocsPerRun(500, func() { e.ServeHTTP(w, req) }); least < 0 || a < least {
				least = a
			}
		}
		return least
	}
	if a1, a5 := allocs(one), allocs(five); a5 > a1 {
		t.Fatalf("five steps allocate %.0f per request, one step %.0f: steps must not allocate", a5, a1)
	}
}

func TestStoreFailuresAreLoggedAtMostOnceASecond(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	keys := middleware.NewStaticKeys()
	_ = keys.Add("sk-a", &middleware.Principal{ID: "a"})
	policy := ratelimit.PerMinute(100)
	auth, _ := middleware.AuthConfig{Keys: keys}.ToStep()
	limit, _ := middleware.AdmissionConfig{Store: failingStore{}, Fail: middleware.FailOpen, Logger: logger,
		LimitsFor: func(echo.Context, *middleware.Principal) middleware.Limits {
			return middleware.Limits{Requests: &policy}
		}}.ToStep()
	chain, _ := middleware.Chain(auth, limit)
	e := echo.New()
	e.Use(chain)
	e.GET("/", func(c echo.Context) error { return c.NoContent(204) })
	for range 50 {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer sk-a")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != 204 {
			t.Fatalf("fail open: %d", rec.Code)
		}
	}
	if n := strings.Count(logs.String(), "admission: store failed"); n != 1 {
		t.Fatalf("%d log lines for 50 failures in well under a second:\n%s", n, logs.String())
	}
}

// failingStore is an admission.Store whose backend is always down.
type failingStore struct{}

func (failingStore) Reserve(context.Context, *admission.Request) (admission.Result, error) {
	return admission.Result{}, errors.New("connection refused")
}

func (failingStore) Settle(context.Context, *admission.Request, admission.ID, admission.Usage) (admission.SettleResult, error) {
	return admission.SettleResult{}, errors.New("connection refused")
}

func (failingStore) Balance(context.Context, budget.Scope) (budget.Balance, error) {
	return budget.Balance{}, errors.New("connection refused")
}
