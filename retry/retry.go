// Package retry is the client side of gatekit's contract: an
// http.RoundTripper that retries exactly what the catalog says may be
// retried, waiting as long as the server asks, and never past the caller's
// deadline.
//
// A response is retried when the server says so with x-should-retry: true,
// and never when it says x-should-retry: false. Without the header,
// connection errors and the statuses 408, 429, 502, 503 and 504 are
// retried; other 4xx and 5xx are not. The wait is Retry-After-Ms, else
// Retry-After (seconds or an HTTP date), else exponential backoff with full
// jitter (about 1 s doubling to a cap of about 30 s). POST requests without
// an Idempotency-Key get one, the same on every attempt, so a gatekit
// server runs and charges a retried request once.
//
//	client := retry.NewClient(nil)
//	res, err := retry.Do(client, req) // err is an *apierrors.Error for a final 4xx/5xx
package retry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"time"

	apierrors "github.com/gatekit/gatekit/errors"
)

// Defaults of Config.
const (
	DefaultMaxRetries     = 4
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 30 * time.Second
)

// HeaderIdempotencyKey is the header that makes a POST safe to retry.
const HeaderIdempotencyKey = "Idempotency-Key"

// Config configures a Transport. The zero value (or nil) gives the
// defaults.
type Config struct {
	// Base sends each attempt. Default: http.DefaultTransport.
	Base http.RoundTripper
	// MaxRetries is the most retries after the first attempt. Default:
	// DefaultMaxRetries; a negative value means no retries.
	MaxRetries int
	// InitialBackoff is the cap of the first backoff, doubled on each
	// retry. Default: DefaultInitialBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps backoff, and the wait a server may ask for. Default:
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
	// NoIdempotencyKey leaves POST requests without an Idempotency-Key as
	// they are.
	NoIdempotencyKey bool
	// Sleep waits d or until ctx ends, returning ctx's error in that case.
	// Default: a timer. Tests replace it to run without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock deadlines are measured with. Default: time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1) that scales backoff. Default: a
	// random number.
	Jitter func() float64
}

// Transport is an http.RoundTripper that retries; see the package doc. It
// is safe for concurrent use.
type Transport struct {
	cfg Config
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport configured by cfg (nil: the defaults).
func New(cfg *Config) *Transport {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Base == nil {
		c.Base = http.DefaultTransport
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Jitter == nil {
		c.Jitter = mathrand.Float64
	}
	return &Transport{cfg: c}
}

// NewClient returns an http.Client whose transport is New(cfg).
func NewClient(cfg *Config) *http.Client {
	return &http.Client{Transport: New(cfg)}
}

// DeadlineError is returned when the next attempt could not start before
// the request's deadline: retrying stopped early rather than sleep past it.
type DeadlineError struct {
	// Attempts is how many attempts were made.
	Attempts int
	// Wait is the wait that would have passed the deadline.
	Wait time.Duration
	// Last is the last attempt's failure: an *apierrors.Error for a
	// response, or the transport error.
	Last error
}

// Error says that retrying stopped at the deadline.
func (e *DeadlineError) Error() string {
	return fmt.Sprintf("retry: stopped after %d attempts: waiting %v more would pass the request's deadline: %v", e.Attempts, e.Wait, e.Last)
}

// Unwrap returns the last failure and context.DeadlineExceeded, so
// errors.Is(err, context.DeadlineExceeded) holds and errors.As finds the
// last *apierrors.Error.
func (e *DeadlineError) Unwrap() []error { return []error{e.Last, context.DeadlineExceeded} }

// RoundTrip sends req, retrying as the package doc describes. It returns the
// last response when attempts run out (the caller decides what a 4xx or
// 5xx means; [Do] decodes it), or a *DeadlineError when waiting for the
// next attempt would pass req's deadline. A request whose body cannot be
// replayed (no GetBody) is sent once.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if req.Method == http.MethodPost && !t.cfg.NoIdempotencyKey && req.Header.Get(HeaderIdempotencyKey) == "" {
		req = req.Clone(ctx)
		req.Header.Set(HeaderIdempotencyKey, newKey())
	}
	for attempt := 0; ; attempt++ {
		try := req
		if attempt > 0 {
			try = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, fmt.Errorf("retry: replaying the request body: %w", err)
				}
				try.Body = body
			}
		}
		res, err := t.cfg.Base.RoundTrip(try)
		if ctx.Err() != nil {
			if res != nil {
				res.Body.Close()
			}
			if err == nil {
				err = ctx.Err()
			}
			return nil, err
		}
		retryable, wait := t.verdict(res, err, attempt)
		if !retryable || !replayable || attempt >= t.cfg.MaxRetries || t.cfg.MaxRetries < 0 {
			return res, err
		}
		if deadline, ok := ctx.Deadline(); ok && t.cfg.Now().Add(wait).After(deadline) {
			last := err
			if res != nil {
				last = apierrors.Decode(res)
			}
			return nil, &DeadlineError{Attempts: attempt + 1, Wait: wait, Last: last}
		}
		if res != nil {
			// Drain a little so the connection can be reused.
			_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
			res.Body.Close()
		}
		if err := t.cfg.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// verdict decides whether an attempt's outcome is retried, and after how
// long.
func (t *Transport) verdict(res *http.Response, err error, attempt int) (bool, time.Duration) {
	if err != nil {
		return true, t.backoff(attempt)
	}
	retry := false
	switch res.Header.Get("X-Should-Retry") {
	case "true":
		retry = true
	case "false":
		retry = false
	default:
		retry = apierrors.RetryableStatus(res.StatusCode)
	}
	if !retry {
		return false, 0
	}
	if d, ok := apierrors.RetryAfterHeader(res.Header, t.cfg.Now()); ok {
		if d > t.cfg.MaxBackoff {
			d = t.cfg.MaxBackoff
		}
		return true, d
	}
	return true, t.backoff(attempt)
}

// backoff is full jitter: a random wait between 0 and
// min(MaxBackoff, InitialBackoff x 2^attempt).
func (t *Transport) backoff(attempt int) time.Duration {
	ceiling := t.cfg.InitialBackoff
	for i := 0; i < attempt && ceiling < t.cfg.MaxBackoff; i++ {
		ceiling *= 2
	}
	if ceiling > t.cfg.MaxBackoff {
		ceiling = t.cfg.MaxBackoff
	}
	return time.Duration(t.cfg.Jitter() * float64(ceiling))
}

// Do sends req with client and returns the response when its status is
// below 400. A final 4xx or 5xx is returned as the decoded envelope, an
// *apierrors.Error with status, code, message and request id, and the body
// is closed.
func Do(client *http.Client, req *http.Request) (*http.Response, error) {
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if e := apierrors.Decode(res); e != nil {
		return nil, e
	}
	return res, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newKey returns a random idempotency key.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "gk_" + hex.EncodeToString(b[:])
}
