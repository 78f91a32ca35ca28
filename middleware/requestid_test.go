package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/middleware"
)

// requestIDOf runs one request with the given X-Request-Id values through
// mw and returns the id the handler saw and the one the response carries.
func requestIDOf(t *testing.T, mw echo.MiddlewareFunc, inbound ...string) (seen, sent string) {
	t.Helper()
	e := echo.New()
	e.Use(mw)
	e.GET("/", func(c echo.Context) error {
		seen = middleware.GetRequestID(c)
		return c.NoContent(http.StatusNoContent)
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, v := range inbound {
		req.Header.Add(middleware.HeaderRequestID, v)
	}
	rec := serve(e, req)
	if vs := rec.Header().Values(middleware.HeaderRequestID); len(vs) != 1 {
		t.Fatalf("response carries %d X-Request-Id values %q, want 1", len(vs), vs)
	}
	return seen, rec.Header().Get(middleware.HeaderRequestID)
}

func TestRequestIDAcceptsAWellFormedInboundID(t *testing.T) {
	for _, id := range []string{
		"abc",
		"req_0123456789abcdef01234567",
		"0f8fad5b-d9cb-469f-a165-70867728950e",
		"Trace.ID:42_x-y",
		strings.Repeat("a", middleware.MaxRequestIDLength),
	} {
		seen, sent := requestIDOf(t, middleware.RequestID(), id)
		if seen != id || sent != id {
			t.Errorf("inbound %q: handler saw %q, response sent %q", id, seen, sent)
		}
	}
}

func TestRequestIDReplacesAnInboundIDThatIsMalformedOrDuplicated(t *testing.T) {
	tests := map[string][]string{
		"too long":       {strings.Repeat("a", middleware.MaxRequestIDLength+1)},
		"space":          {"abc def"},
		"quote":          {`abc"def`},
		"newline":        {"abc\ndef"},
		"carriage":       {"abc\r\nX-Evil: 1"},
		"unicode":        {"réq-1"},
		"slash":          {"../../etc"},
		"empty":          {""},
		"duplicated":     {"req-a", "req-b"},
		"duplicate same": {"req-a", "req-a"},
	}
	for name, inbound := range tests {
		t.Run(name, func(t *testing.T) {
			seen, sent := requestIDOf(t, middleware.RequestID(), inbound...)
			if !generatedID.MatchString(sent) || seen != sent {
				t.Errorf("inbound %q: handler saw %q, response sent %q; want one generated id", inbound, seen, sent)
			}
		})
	}
}

func TestRequestIDGeneratesAnIDWhenNoneIsSent(t *testing.T) {
	seen, sent := requestIDOf(t, middleware.RequestID())
	if !generatedID.MatchString(sent) || seen != sent {
		t.Errorf("handler saw %q, response sent %q; want one id of the form req_ + 24 hex digits", seen, sent)
	}
}

func TestRequestIDIgnoresInboundIDsUnlessTrusted(t *testing.T) {
	mw, err := middleware.RequestIDWithConfig(middleware.RequestIDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, sent := requestIDOf(t, mw, "req-from-client"); !generatedID.MatchString(sent) {
		t.Errorf("untrusted inbound id kept: %q", sent)
	}
}

func TestRequestIDUsesTheConfiguredGeneratorAndSkipper(t *testing.T) {
	mw, err := middleware.RequestIDConfig{
		Generator: func() string { return "fixed-id" },
		Skipper:   func(c echo.Context) bool { return c.Request().URL.Path == "/health" },
	}.ToMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	if _, sent := requestIDOf(t, mw); sent != "fixed-id" {
		t.Errorf("id = %q, want the generator's", sent)
	}

	e := echo.New()
	e.Use(mw)
	e.GET("/health", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	rec := serve(e, httptest.NewRequest(http.MethodGet, "/health", nil))
	if got := rec.Header().Get(middleware.HeaderRequestID); got != "" {
		t.Errorf("skipped request got id %q", got)
	}
}

// generate runs n requests through mw on one reused context and returns
// the ids they were given.
func generate(mw echo.MiddlewareFunc, n int) []string {
	e := echo.New()
	ids := make([]string, 0, n)
	h := mw(func(c echo.Context) error {
		ids = append(ids, middleware.GetRequestID(c))
		return nil
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	c := e.NewContext(req, w)
	for range n {
		c.Reset(req, w)
		_ = h(c)
	}
	return ids
}

func TestRequestIDGeneratesUniqueIDsAcross100kCalls(t *testing.T) {
	ids := generate(middleware.RequestID(), 100_000)
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if !generatedID.MatchString(id) {
			t.Fatalf("generated id %q is not req_ + 24 lowercase hex digits", id)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = struct{}{}
	}
}

func TestRequestIDGeneratesUniqueIDsAcrossConcurrentGoroutines(t *testing.T) {
	mw := middleware.RequestID()
	const workers, each = 8, 5_000
	results := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { results[w] = generate(mw, each) })
	}
	wg.Wait()
	// A second middleware has its own random prefix: its ids collide with
	// none of the first's.
	results = append(results, generate(middleware.RequestID(), each))

	seen := make(map[string]struct{}, (workers+1)*each)
	for _, ids := range results {
		for _, id := range ids {
			if !generatedID.MatchString(id) {
				t.Fatalf("generated id %q is not req_ + 24 lowercase hex digits", id)
			}
			if _, dup := seen[id]; dup {
				t.Fatalf("id %q generated twice", id)
			}
			seen[id] = struct{}{}
		}
	}
}

func TestValidRequestIDAcceptsOnlyShortSafeASCII(t *testing.T) {
	for id, want := range map[string]bool{
		"a":                      true,
		"A-z_0.9:x":              true,
		strings.Repeat("x", 128): true,
		strings.Repeat("x", 129): false,
		"":                       false,
		"a b":                    false,
		"a\tb":                   false,
		"a\x00b":                 false,
		"a\x7fb":                 false,
		"ü":                      false,
		"a,b":                    false,
		"<script>":               false,
	} {
		if got := middleware.ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}

// A generated id's text lives in the request's record; a second RequestID
// in the same chain must not rewrite the id the first one handed out.
func TestRequestIDTwiceInAChainLeavesTheFirstIDAlone(t *testing.T) {
	first, err := middleware.RequestIDConfig{}.ToStep()
	if err != nil {
		t.Fatal(err)
	}
	second, err := middleware.RequestIDConfig{}.ToStep()
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	keep := func(c echo.Context, next echo.HandlerFunc) error {
		seen = middleware.GetRequestID(c)
		return next(c)
	}
	chain, err := middleware.Chain(first, keep, second)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(chain)
	var last string
	e.GET("/", func(c echo.Context) error {
		last = middleware.GetRequestID(c)
		return c.NoContent(http.StatusNoContent)
	})
	saved := ""
	for range 3 {
		serve(e, httptest.NewRequest(http.MethodGet, "/", nil))
		if saved != "" && saved == seen {
			t.Fatal("two requests got the same id")
		}
		// Rewritten text would make the first id read as the second.
		if last == "" || seen == "" || last == seen {
			t.Fatalf("ids: first %q, second %q", seen, last)
		}
		saved = seen
	}
}
