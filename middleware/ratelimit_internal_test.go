package middleware

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/ratelimit"
)

// realTimeMemory is a memory store on a test clock that claims real time,
// counting the decisions it is asked for.
type realTimeMemory struct {
	*ratelimit.Memory
	allows atomic.Int64
}

func (m *realTimeMemory) Allow(ctx context.Context, key string, p ratelimit.Policy, n int64) (ratelimit.Decision, error) {
	m.allows.Add(1)
	return m.Memory.Allow(ctx, key, p, n)
}

func (m *realTimeMemory) RealTime() bool { return true }

// A remembered denial answers exactly as the store would, for exactly as
// long as the store would deny, and without asking it.
func TestRememberedDenialsAnswerAsTheStoreWould(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var offset atomic.Int64 // the test clock: nanoseconds after start
	mem, err := ratelimit.NewMemory(&ratelimit.MemoryConfig{Now: func() time.Time { return start.Add(time.Duration(offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	lim := &realTimeMemory{Memory: mem}
	policy := ratelimit.PerMinute(1)
	p := &Principal{ID: "key_flood", Limits: Limits{Requests: &policy}}
	keys := NewStaticKeys()
	if err := keys.Add("sk-flood-0123456789", p); err != nil {
		t.Fatal(err)
	}
	auth, err := AuthConfig{Keys: keys}.ToStep()
	if err != nil {
		t.Fatal(err)
	}
	rl, err := RateLimitConfig{Limiter: lim, StaticLimits: true}.build()
	if err != nil {
		t.Fatal(err)
	}
	if !rl.rememberDenials {
		t.Fatal("a RealTimeLimiter's denials are not remembered")
	}
	rl.clock = offset.Load
	chain, err := Chain(auth, rl.step)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = ErrorHandler()
	e.Use(chain)
	e.GET("/v1/models", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })

	get := func(at time.Duration) *httptest.ResponseRecorder {
		offset.Store(int64(at))
		req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		req.Header.Set("Authorization", "Bearer sk-flood-0123456789")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	ms := time.Millisecond
	for i, step := range []struct {
		at     time.Duration
		status int
		asks   int64 // store decisions so far
	}{
		{0, 204, 1},
		{0, 429, 2},                // first denial: marks the entry
		{ms, 429, 3},               // second: timed, remembered until 59999 ms
		{10 * time.Second, 429, 3}, // answered from memory
		{59998 * ms, 429, 3},
		{59999 * ms, 429, 4}, // the remembered denial is over; the store still denies for 1 ms
		{60 * time.Second, 204, 5},
		{60 * time.Second, 429, 6},
	} {
		rec := get(step.at)
		if rec.Code != step.status || lim.allows.Load() != step.asks {
			t.Fatalf("step %d at %v: status %d, %d store decisions; want %d, %d", i, step.at, rec.Code, lim.allows.Load(), step.status, step.asks)
		}
		if rec.Code != 429 {
			continue
		}
		// The hints are the store's own at that instant (a peek takes nothing).
		want, err := mem.Allow(context.Background(), LimitKey(p.ID, http.MethodGet, "/v1/models", false), policy, 0)
		if err != nil {
			t.Fatal(err)
		}
		h := rec.Header()
		if got := h.Get("Retry-After-Ms"); got != strconv.FormatInt(want.RetryAfter.Milliseconds(), 10) {
			t.Fatalf("step %d at %v: Retry-After-Ms %s, the store says %v", i, step.at, got, want.RetryAfter)
		}
		if got := h.Get(ratelimit.HeaderResetRequests); got != want.ResetAfter.String() {
			t.Fatalf("step %d at %v: reset %s, the store says %v", i, step.at, got, want.ResetAfter)
		}
		if h.Get(ratelimit.HeaderRemainingRequests) != "0" {
			t.Fatalf("step %d: remaining %s", i, h.Get(ratelimit.HeaderRemainingRequests))
		}
	}
}

// Entries made concurrently for one principal end up one per route, each
// found again by every later request.
func TestRouteEntriesArePublishedOncePerRoute(t *testing.T) {
	rl := newStaticRateLimiter(t)
	policy := ratelimit.PerMinute(60)
	p := &Principal{ID: "key_many", Limits: Limits{Requests: &policy}}
	routes := []string{"/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"}
	var wg sync.WaitGroup
	got := make([][]*routeEntry, 16)
	for g := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range routes {
				got[g] = append(got[g], rl.entryFor(nil, p, http.MethodGet, r))
			}
		}()
	}
	wg.Wait()
	head := ownRoutes(p, p.routes)
	if head == nil || head.depth != len(routes) {
		t.Fatalf("entries kept for %d routes: %+v", len(routes), head)
	}
	n := 0
	for e := head; e != nil; e = e.next {
		n++
	}
	if n != len(routes) {
		t.Fatalf("%d entries in the list for %d routes", n, len(routes))
	}
	for i, r := range routes {
		kept := head.find(rl, http.MethodGet, r)
		for g := range got {
			if got[g][i] != kept {
				t.Fatalf("route %s: goroutine %d was handed an entry that was not kept", r, g)
			}
		}
		if kept == nil || kept.route != r || kept.static == nil || kept.static.limits.Requests == nil || *kept.static.limits.Requests != policy {
			t.Fatalf("route %s: kept %+v", r, kept)
		}
		if again := rl.entryFor(nil, p, http.MethodGet, r); again != kept {
			t.Fatalf("route %s: a later request gets another entry", r)
		}
	}
}

// TestRouteEntriesShareTheirLimits: with StaticLimits, entries with the same
// policies share one staticLimits, formatted once; other policies get
// their own; past maxSharedLimits, new limits are not kept. An entry has
// bucket keys only for the limits it has.
func TestRouteEntriesShareTheirLimits(t *testing.T) {
	rl := newStaticRateLimiter(t)
	rpm, tpm := ratelimit.PerMinute(60), ratelimit.PerMinute(10_000)
	a := rl.entryFor(nil, &Principal{ID: "a", Limits: Limits{Requests: &rpm}}, http.MethodGet, "/x")
	b := rl.entryFor(nil, &Principal{ID: "b", Limits: Limits{Requests: &rpm}}, http.MethodGet, "/x")
	c := rl.entryFor(nil, &Principal{ID: "c", Limits: Limits{Requests: &rpm, Tokens: &tpm}}, http.MethodGet, "/x")
	if a.static == nil || a.static != b.static {
		t.Fatalf("entries with the same limits do not share them: %p, %p", a.static, b.static)
	}
	if c.static == a.static || *c.static.limits.Tokens != tpm || *c.static.limits.Requests != rpm {
		t.Fatalf("other limits: %+v", c.static)
	}
	if a.keys[limitRequests] != LimitKey("a", http.MethodGet, "/x", false) || a.keys[limitTokens] != "" {
		t.Errorf("keys of an entry with a request limit only: %q", a.keys)
	}
	if c.keys[limitTokens] != LimitKey("c", http.MethodGet, "/x", true) {
		t.Errorf("keys of an entry with both limits: %q", c.keys)
	}

	for i := range maxSharedLimits {
		p := ratelimit.PerMinute(int64(1000 + i))
		rl.entryFor(nil, &Principal{ID: fmt.Sprint("p", i), Limits: Limits{Requests: &p}}, http.MethodGet, "/x")
	}
	if n := rl.staticCount.Load(); n != maxSharedLimits {
		t.Fatalf("%d limits shared, want the cap, %d", n, maxSharedLimits)
	}
	odd := ratelimit.PerMinute(7)
	x := rl.entryFor(nil, &Principal{ID: "x", Limits: Limits{Requests: &odd}}, http.MethodGet, "/x")
	y := rl.entryFor(nil, &Principal{ID: "y", Limits: Limits{Requests: &odd}}, http.MethodGet, "/x")
	if x.static == y.static || *x.static.limits.Requests != odd || *y.static.limits.Requests != odd {
		t.Fatalf("past the cap: %+v, %+v", x.static, y.static)
	}
	if n := rl.staticCount.Load(); n != maxSharedLimits {
		t.Fatalf("%d limits shared past the cap", n)
	}
	if again := rl.entryFor(nil, &Principal{ID: "z", Limits: Limits{Requests: &rpm}}, http.MethodGet, "/x"); again.static != a.static {
		t.Error("limits shared before the cap are no longer shared")
	}
}

// newStaticRateLimiter is a rate limiter with StaticLimits on a Memory.
func newStaticRateLimiter(t *testing.T) *rateLimiter {
	t.Helper()
	lim, err := ratelimit.NewMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := RateLimitConfig{Limiter: lim, StaticLimits: true}.build()
	if err != nil {
		t.Fatal(err)
	}
	return rl
}
