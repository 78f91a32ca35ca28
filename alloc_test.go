package gatekit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// allocChat is the body of every request in the allocation test.
const allocChat = `{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hello there"}]}`

type allocRequest struct {
	Model     string `json:"model"`
	MaxTokens int64  `json:"max_tokens"`
	Messages  []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// discardWriter is a ResponseWriter that keeps the status and drops the
// body, as a server's does once it is sent: an httptest.ResponseRecorder
// would copy the headers, a cost of the recorder that grows with their
// number.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// allocsPerRequest serves allocChat through e, which binds it and answers
// JSON, and counts the allocations of one request.
func allocsPerRequest(t *testing.T, e *echo.Echo) float64 {
	t.Helper()
	serve := func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat", strings.NewReader(allocChat))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-alloc")
		w := &discardWriter{h: http.Header{}}
		e.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			t.Fatalf("status %d", w.code)
		}
	}
	for range 100 {
		serve()
	}
	return testing.AllocsPerRun(2000, serve)
}

// allocHandler binds allocChat and answers JSON, reporting usage when
// report is set.
func allocHandler(report bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req allocRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		if report {
			if err := middleware.ReportUsage(c, middleware.Usage{Model: req.Model, PromptTokens: 3, CompletionTokens: 16}); err != nil {
				return err
			}
		}
		return c.JSON(http.StatusOK, map[string]int{"ok": 1})
	}
}

// allocConfig limits POST /v1/chat with route, and bills it to two
// budgets.
func allocConfig(route gatekit.RouteConfig) gatekit.Config {
	return gatekit.Config{
		Logger: discardLogger(),
		Keys: []gatekit.KeyConfig{{ID: "k", Key: "sk-alloc", Account: "acme",
			Budget: &gatekit.BudgetConfig{Limit: mustMoney("1000000.00")}}},
		Routes: map[string]gatekit.RouteConfig{"POST /v1/chat": route},
		Budgets: gatekit.BudgetsConfig{Routes: []string{"POST /v1/chat"},
			Accounts: map[string]gatekit.BudgetConfig{"acme": {Limit: mustMoney("1000000.00")}}},
		Prices: gatekit.PricesConfig{Default: &gatekit.PriceConfig{Input: mustMoney("1.00"), Output: mustMoney("2.00")}},
	}
}

// allocsOverBare is how many allocations a request through gatekit
// mounted with cfg makes beyond the same handler on bare Echo with the
// same binder.
func allocsOverBare(t *testing.T, cfg gatekit.Config) float64 {
	t.Helper()
	bare := echo.New()
	bare.Binder, bare.Validator = middleware.NewBinder(), middleware.NewValidator()
	bare.POST("/v1/chat", allocHandler(false))
	full := echo.New()
	if _, err := gatekit.Mount(full, cfg); err != nil {
		t.Fatal(err)
	}
	full.POST("/v1/chat", allocHandler(true))
	b, f := allocsPerRequest(t, bare), allocsPerRequest(t, full)
	t.Logf("bare Echo %.0f allocations, full stack %.0f (+%.0f)", b, f, f-b)
	return f - b
}

// The full stack (request id, recovery, body limit, auth, one reservation
// of requests, tokens, a slot and two budgets, settlement, headers) costs
// at most eight allocations more than the same handler on bare Echo with
// the same binder: the binder's strictness is the handler's choice, and
// its cost is measured on its own (middleware's binder benchmarks).
func TestFullStackAllocatesAtMostEightMoreThanBareEcho(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts through the binder's pool mean nothing under the race detector; scripts/test runs this test without it")
	}
	extra := allocsOverBare(t, allocConfig(gatekit.RouteConfig{LimitConfig: gatekit.LimitConfig{
		RPM: 1 << 40, TPM: 1 << 40, MaxParallel: 1 << 20}}))
	if extra > 8 {
		t.Fatalf("the full stack allocates %.0f more than bare Echo, want at most 8", extra)
	}
}

// An Anthropic route costs no more: request-id shares X-Request-Id's
// slice, and the anthropic-ratelimit-* headers of three limits (requests,
// input and output tokens) are two allocations, as x-ratelimit-* are.
func TestAnthropicRouteWithSplitTokenLimitsAllocatesAtMostEightMoreThanBareEcho(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts through the binder's pool mean nothing under the race detector; scripts/test runs this test without it")
	}
	extra := allocsOverBare(t, allocConfig(gatekit.RouteConfig{Shape: apierrors.ShapeAnthropic, LimitConfig: gatekit.LimitConfig{
		RPM: 1 << 40, ITPM: 1 << 40, OTPM: 1 << 40, MaxParallel: 1 << 20}}))
	if extra > 8 {
		t.Fatalf("an Anthropic route allocates %.0f more than bare Echo, want at most 8", extra)
	}
}
