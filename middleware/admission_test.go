package middleware_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// SettleAll, run while handlers are still reporting progress, settles
// every open reservation exactly once: the handlers' own settlements
// afterwards do nothing, and every slot is free at the end.
func TestSettleAllSettlesEachReservationOnceWhileHandlersRun(t *testing.T) {
	store, _ := admission.NewMemory(nil)
	keys := middleware.NewStaticKeys()
	tpm := ratelimit.PerMinute(1 << 30)
	_ = keys.Add("sk-a", &middleware.Principal{ID: "a", Limits: middleware.Limits{Tokens: &tpm, MaxParallel: 100}})
	inFlight := middleware.NewInFlight()
	var settled atomic.Int64
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	auth, _ := middleware.AuthConfig{Keys: keys}.ToStep()
	admit, err := middleware.AdmissionConfig{Store: store, InFlight: inFlight, Logger: logger,
		OnSettle: func(context.Context, middleware.Settlement) { settled.Add(1) }}.ToStep()
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := middleware.Chain(auth, admit)
	e := echo.New()
	e.Use(chain)
	const n = 50
	started := make(chan struct{}, n)
	release := make(chan struct{})
	e.POST("/", func(c echo.Context) error {
		started <- struct{}{}
		for i := int64(1); ; i++ {
			_ = middleware.ReportProgress(c, middleware.Usage{PromptTokens: 1, CompletionTokens: i})
			select {
			case <-release:
				_ = middleware.ReportUsage(c, middleware.Usage{PromptTokens: 1, CompletionTokens: i})
				return c.NoContent(http.StatusNoContent)
			default:
			}
		}
	})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"max_tokens":10}`))
			req.Header.Set("Authorization", "Bearer sk-a")
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
		})
	}
	for range n {
		<-started
	}
	if got := inFlight.Len(); got != n {
		t.Fatalf("%d open, want %d", got, n)
	}
	if got := inFlight.SettleAll(); got != n {
		t.Fatalf("SettleAll settled %d, want %d", got, n)
	}
	close(release)
	wg.Wait()
	if settled.Load() != n || inFlight.Len() != 0 {
		t.Fatalf("%d settlements, %d open; want %d and 0", settled.Load(), inFlight.Len(), n)
	}
	if strings.Contains(logs.String(), "settle failed") {
		t.Fatalf("a reservation was settled twice:\n%s", logs.String())
	}
	if got := store.InUse("a", "a", "POST /\x00c"); got != 0 {
		t.Fatalf("%d slots still held", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
