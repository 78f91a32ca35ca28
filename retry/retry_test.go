package retry_test

import (
	"context"
	stderrors "errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/retry"
)

// recorder is a Sleep that records waits instead of waiting.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recorder) Sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
	return ctx.Err()
}

// script serves the responses in order, then 200s, counting attempts and
// the idempotency keys it saw.
type script struct {
	attempts atomic.Int64
	mu       sync.Mutex
	keys     []string
	bodies   []string
	steps    []func(w http.ResponseWriter)
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(s.attempts.Add(1)) - 1
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	s.bodies = append(s.bodies, string(body))
	s.mu.Unlock()
	if n < len(s.steps) {
		s.steps[n](w)
		return
	}
	w.Write([]byte(`{"ok":true}`))
}

// gatekitError renders e as a gatekit server would.
func gatekitError(e *apierrors.Error) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		apierrors.Write(w, httptest.NewRequest("POST", "/v1/x", nil), apierrors.ShapeOpenAI, e, apierrors.Meta{RequestID: "req_test"})
	}
}

func raw(status int, headers ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "status %d", status)
	}
}

func newClient(rec *recorder, jitter float64) *http.Client {
	return retry.NewClient(&retry.Config{Sleep: rec.Sleep, Jitter: func() float64 { return jitter }})
}

func post(t *testing.T, client *http.Client, url string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"model":"m"}`))
	return retry.Do(client, req)
}

func TestRetriesFollowRetryAfterMsThenRetryAfterThenBackoff(t *testing.T) {
	s := &script{steps: []func(http.ResponseWriter){
		gatekitError(apierrors.RateLimitExceeded("", 1500*time.Millisecond)), // Retry-After-Ms: 1500
		raw(503, "Retry-After", "3"),                                         // seconds
		raw(503, "Retry-After", time.Now().Add(10*time.Second).UTC().Format(http.TimeFormat)),
		raw(502), // backoff: attempt 3 -> cap 8 s, jitter 0.5 -> 4 s
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	rec := &recorder{}
	res, err := post(t, newClient(rec, 0.5), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if s.attempts.Load() != 5 {
		t.Fatalf("%d attempts, want 5", s.attempts.Load())
	}
	if len(rec.waits) != 4 || rec.waits[0] != 1500*time.Millisecond || rec.waits[1] != 3*time.Second ||
		rec.waits[2] < 8*time.Second || rec.waits[2] > 10*time.Second || rec.waits[3] != 4*time.Second {
		t.Fatalf("waits %v", rec.waits)
	}
	for i, k := range s.keys {
		if k == "" || k != s.keys[0] {
			t.Fatalf("attempt %d carried idempotency key %q, first %q", i, k, s.keys[0])
		}
		if s.bodies[i] != `{"model":"m"}` {
			t.Fatalf("attempt %d body %q", i, s.bodies[i])
		}
	}
}

func TestBackoffIsCappedAndAttemptsBounded(t *testing.T) {
	steps := make([]func(http.ResponseWriter), 10)
	for i := range steps {
		steps[i] = raw(503)
	}
	s := &script{steps: steps}
	srv := httptest.NewServer(s)
	defer srv.Close()
	rec := &recorder{}
	client := retry.NewClient(&retry.Config{Sleep: rec.Sleep, Jitter: func() float64 { return 0.999999 }, MaxRetries: 7})
	_, err := post(t, client, srv.URL)
	var e *apierrors.Error
	if !stderrors.As(err, &e) || e.Status != 503 || e.Code != apierrors.CodeServiceUnavailable {
		t.Fatalf("err %v", err)
	}
	if s.attempts.Load() != 8 {
		t.Fatalf("%d attempts, want 8", s.attempts.Load())
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range rec.waits {
		if got := w.Round(time.Second); got != want[i]*time.Second {
			t.Fatalf("wait %d = %v, want about %ds (all %v)", i, w, want[i], rec.waits)
		}
	}
}

func TestNeverRetriesWhatTheCatalogCallsFinal(t *testing.T) {
	for _, e := range []*apierrors.Error{
		apierrors.InvalidArgument("temperature", "bad"),
		apierrors.BudgetExceeded("Budget exceeded for account acme: 5.00 USD per month."),
		apierrors.PayloadTooLarge(1 << 20),
		apierrors.InternalError(stderrors.New("boom")),
		apierrors.ModelUnavailable(""),
	} {
		t.Run(string(e.Code), func(t *testing.T) {
			s := &script{steps: []func(http.ResponseWriter){gatekitError(e)}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			rec := &recorder{}
			_, err := post(t, newClient(rec, 0), srv.URL)
			var got *apierrors.Error
			if !stderrors.As(err, &got) || got.Code != e.Code || got.Status != e.Status || got.RequestID != "req_test" || got.Message != e.Message {
				t.Fatalf("err %#v", err)
			}
			if s.attempts.Load() != 1 || len(rec.waits) != 0 {
				t.Fatalf("%d attempts", s.attempts.Load())
			}
		})
	}
}

func TestShouldRetryHeaderWinsOverStatus(t *testing.T) {
	s := &script{steps: []func(http.ResponseWriter){raw(500, "X-Should-Retry", "true"), raw(503, "X-Should-Retry", "false")}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, err := post(t, newClient(&recorder{}, 0), srv.URL)
	var e *apierrors.Error
	if !stderrors.As(err, &e) || e.Status != 503 || e.Retryable {
		t.Fatalf("err %v", err)
	}
	if s.attempts.Load() != 2 {
		t.Fatalf("%d attempts, want 2", s.attempts.Load())
	}
}

func TestConnectionErrorsAreRetried(t *testing.T) {
	s := &script{}
	srv := httptest.NewServer(s)
	var dropped atomic.Int64
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if dropped.Add(1) <= 2 {
			return nil, stderrors.New("connection reset by peer")
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	defer srv.Close()
	rec := &recorder{}
	client := retry.NewClient(&retry.Config{Base: base, Sleep: rec.Sleep, Jitter: func() float64 { return 0 }})
	res, err := post(t, client, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if dropped.Load() != 3 || s.attempts.Load() != 1 {
		t.Fatalf("tries %d, served %d", dropped.Load(), s.attempts.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDeadlineStopsRetryingEarlyAndSaysSo(t *testing.T) {
	s := &script{steps: []func(http.ResponseWriter){gatekitError(apierrors.ModelOverloaded(20 * time.Second))}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader("{}"))
	rec := &recorder{}
	start := time.Now()
	_, err := retry.Do(newClient(rec, 0), req)
	var de *retry.DeadlineError
	var e *apierrors.Error
	if !stderrors.As(err, &de) || !stderrors.Is(err, context.DeadlineExceeded) || !stderrors.As(err, &e) || e.Code != apierrors.CodeModelOverloaded {
		t.Fatalf("err %v", err)
	}
	if len(rec.waits) != 0 || s.attempts.Load() != 1 || time.Since(start) > 2*time.Second {
		t.Fatalf("slept %v over %d attempts", rec.waits, s.attempts.Load())
	}
	if !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("message %q", err)
	}
}

func TestRealSleepEndsWithTheContext(t *testing.T) {
	s := &script{steps: []func(http.ResponseWriter){raw(503, "Retry-After-Ms", "10000")}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	done := make(chan error, 1)
	go func() {
		_, err := retry.NewClient(nil).Do(req)
		done <- err
	}()
	for s.attempts.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !stderrors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling did not end the wait")
	}
}

func TestCallerIdempotencyKeyIsKeptAndGETsGetNone(t *testing.T) {
	s := &script{steps: []func(http.ResponseWriter){raw(503), raw(503)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", "mine-1")
	res, err := retry.Do(newClient(&recorder{}, 0), req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, k := range s.keys {
		if k != "mine-1" {
			t.Fatalf("keys %v", s.keys)
		}
	}
	s2 := &script{}
	srv2 := httptest.NewServer(s2)
	defer srv2.Close()
	res, err = retry.Do(newClient(&recorder{}, 0), httptest.NewRequest(http.MethodGet, srv2.URL, nil).WithContext(context.Background()))
	if err == nil {
		res.Body.Close()
	}
	if len(s2.keys) == 1 && s2.keys[0] != "" {
		t.Fatalf("GET got an idempotency key %q", s2.keys[0])
	}
}

// TestAgainstAGatekitServer: the transport retries a gatekit 503 and stops
// at a gatekit 400, decoding both from the real envelope.
func TestAgainstAGatekitServer(t *testing.T) {
	e := echo.New()
	if _, err := gatekit.Mount(e, gatekit.Config{}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	e.POST("/v1/work", func(c echo.Context) error {
		if calls.Add(1) == 1 {
			return apierrors.ModelOverloaded(5 * time.Millisecond)
		}
		var body struct {
			N int `json:"n" validate:"gte=1"`
		}
		if err := c.Bind(&body); err != nil {
			return err
		}
		return c.JSON(200, body)
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	client := retry.NewClient(nil) // real sleeps: 5 ms, from Retry-After-Ms
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/work", strings.NewReader(`{"n":1}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := retry.Do(client, req)
	if err != nil || calls.Load() != 2 {
		t.Fatalf("err %v after %d calls", err, calls.Load())
	}
	res.Body.Close()
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/v1/work", strings.NewReader(`{"n":0}`))
	req.Header.Set("Content-Type", "application/json")
	_, err = retry.Do(client, req)
	var ae *apierrors.Error
	if !stderrors.As(err, &ae) || ae.Code != apierrors.CodeInvalidArgument || ae.Param != "n" || ae.RequestID == "" || calls.Load() != 3 {
		t.Fatalf("err %#v after %d calls", err, calls.Load())
	}
}

func ExampleNewClient() {
	client := retry.NewClient(&retry.Config{MaxRetries: 2})
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/unreachable", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := retry.Do(client, req.WithContext(ctx))
	fmt.Println(err != nil)
	// Output: true
}
