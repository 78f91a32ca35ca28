package middleware

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/gatekit/gatekit/admission"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/idempotency"
)

// The headers of idempotent requests.
const (
	// HeaderIdempotencyKey is where a client names a request it may retry.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplayed marks a response replayed from the store.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	// MaxIdempotencyKeyLength is the longest Idempotency-Key accepted.
	MaxIdempotencyKeyLength = 255
)

// IdempotencyConfig configures [IdempotencyWithConfig].
type IdempotencyConfig struct {
	// Skipper skips the middleware for a request when it returns true.
	// Default: never skip.
	Skipper middleware.Skipper
	// Store keeps in-progress markers and responses. Required unless
	// Joined.
	Store idempotency.Store
	// Joined hands the request's key to the admission step that follows
	// this one directly (AdmissionConfig, on an admission.OnceStore such
	// as the Redis store): the key is claimed by the request's reservation
	// and ended by its settlement, in the same store calls, so an
	// idempotent request costs no store round trip of its own. Store is
	// then not used; the entries live in the admission store, under the
	// request's Tag. A request that no admission step takes runs without
	// idempotency, and is logged.
	Joined bool
	// TTL is how long a response is kept for replay. Default: 24 hours.
	TTL time.Duration
	// Lease is how long a running request holds its key before another
	// request with the key may run (a crashed instance frees its keys after
	// it). It must exceed the slowest handler. Default: 10 minutes.
	Lease time.Duration
	// MaxBodyBytes is the largest response body kept; a larger response is
	// sent but not kept, so a retry runs again. Default: 1 MiB.
	MaxBodyBytes int
	// Fail is what happens when the store fails. Default: FailClosed (503);
	// FailOpen runs the request without idempotency.
	Fail FailMode
	// Logger receives store failures. Default: slog.Default().
	Logger *slog.Logger
}

// IdempotencyWithConfig makes requests that carry an Idempotency-Key run
// once. The first request with a key runs; its response (status, headers
// that matter, body, an event stream byte for byte) is kept for TTL and
// replayed, marked Idempotent-Replayed: true, to later requests with the
// same key from the same principal, without running the handler or the
// middleware after this one: a replay consumes no rate limit and no budget.
//
// The same key with another payload (method, path and body) is 422
// idempotency_mismatch; a duplicate while the first runs is 409
// idempotency_conflict (retryable); a key over 255 characters is 400
// invalid_argument. Keys are scoped by principal, so one client never sees
// another's response. Only responses a handler completed without error and
// with a status below 500 are kept: a request rejected by later middleware
// (400, 401, 402, 429) or failing with a 5xx frees its key, so the client
// can fix or retry it with the same key.
func IdempotencyWithConfig(cfg IdempotencyConfig) (echo.MiddlewareFunc, error) {
	return cfg.ToMiddleware()
}

// ToMiddleware builds the middleware described by cfg; it fails without a
// Store.
func (cfg IdempotencyConfig) ToMiddleware() (echo.MiddlewareFunc, error) {
	s, err := cfg.ToStep()
	if err != nil {
		return nil, err
	}
	return stepMiddleware(s), nil
}

// ToStep builds the middleware described by cfg as a Step for [Chain].
func (cfg IdempotencyConfig) ToStep() (Step, error) {
	if cfg.Store == nil && !cfg.Joined {
		return nil, fmt.Errorf("idempotency: a Store is required")
	}
	if cfg.Skipper == nil {
		cfg.Skipper = middleware.DefaultSkipper
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Minute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	failures := new(storeFailureLog)
	return func(c echo.Context, next echo.HandlerFunc) error {
		key := c.Request().Header.Get(HeaderIdempotencyKey)
		if key == "" || cfg.Skipper(c) {
			return next(c)
		}
		return cfg.serve(c, next, key, failures)
	}, nil
}

func (cfg IdempotencyConfig) serve(c echo.Context, next echo.HandlerFunc, key string, failures *storeFailureLog) error {
	if len(key) > MaxIdempotencyKeyLength {
		return apierrors.InvalidArgument(HeaderIdempotencyKey, fmt.Sprintf("Invalid 'Idempotency-Key': at most %d characters, got %d.", MaxIdempotencyKeyLength, len(key)))
	}
	body, err := PeekBody(c)
	if err != nil {
		return err
	}
	req := c.Request()
	fp := idempotency.Fingerprint(req.Method, req.URL.Path, body)
	owner := "\x00anonymous"
	if p := GetPrincipal(c); p != nil {
		owner = p.ID
	}
	scoped := owner + "\x00" + key
	if cfg.Joined {
		return cfg.serveJoined(c, next, admission.Once{Key: scoped, Fingerprint: fp, Lease: cfg.Lease})
	}

	ctx := req.Context()
	begin, err := cfg.Store.Begin(ctx, scoped, fp, cfg.Lease)
	if err != nil {
		failures.warn(ctx, cfg.Logger, "idempotency: store failed", slog.String("request_id", GetRequestID(c)), slog.String("error", err.Error()))
		if cfg.Fail == FailOpen {
			return next(c)
		}
		return apierrors.ServiceUnavailable(time.Second).WithCause(fmt.Errorf("idempotency store: %w", err))
	}
	switch begin.State {
	case idempotency.Completed:
		return replay(c, begin.Record)
	case idempotency.InProgress:
		return apierrors.IdempotencyConflict(time.Second)
	case idempotency.Mismatch:
		return apierrors.IdempotencyMismatch()
	}

	rec := &recorder{ResponseWriter: c.Response().Writer, max: cfg.MaxBodyBytes}
	c.Response().Writer = rec
	store := contextWithoutCancel(c)
	returned := false
	defer func() {
		if !returned {
			// The handler panicked: free the key on the way to Recover,
			// so that a retry runs again instead of meeting a 409 until
			// the lease ends.
			c.Response().Writer = rec.ResponseWriter
			if aerr := cfg.Store.Abort(store, scoped, begin.Token); aerr != nil {
				cfg.Logger.LogAttrs(store, slog.LevelWarn, "idempotency: abort failed", slog.String("request_id", GetRequestID(c)), slog.String("error", aerr.Error()))
			}
		}
	}()
	err = next(c)
	returned = true
	c.Response().Writer = rec.ResponseWriter

	// The store's answer does not change the client's; it only decides
	// whether a retry replays or runs again.
	record := kept(c, rec, err)
	if record == nil {
		if aerr := cfg.Store.Abort(store, scoped, begin.Token); aerr != nil {
			cfg.Logger.LogAttrs(store, slog.LevelWarn, "idempotency: abort failed", slog.String("request_id", GetRequestID(c)), slog.String("error", aerr.Error()))
		}
		return err
	}
	if cerr := cfg.Store.Complete(store, scoped, begin.Token, *record, cfg.TTL); cerr != nil {
		cfg.Logger.LogAttrs(store, slog.LevelWarn, "idempotency: keeping the response failed", slog.String("request_id", GetRequestID(c)), slog.String("error", cerr.Error()))
	}
	return nil
}

// onceState is an idempotent request handed to the admission step
// (IdempotencyConfig.Joined), in the request's record.
type onceState struct {
	// pending is set while the request waits for the admission step;
	// taken, once that step has made its store call.
	pending, taken bool
	claim          admission.Once
	ttl            time.Duration
	failOpen       bool
	rec            *recorder
	// begin is what the store found under the key; failed, that the
	// store failed and the request runs without idempotency.
	begin  idempotency.Begin
	failed bool
	// outcome is the response to keep, or nil to free the key, set under
	// the record's lock once the handler returned.
	outcome *idempotency.Record
}

// joined reports that the request's key waits for the admission step.
func (o *onceState) joined() bool { return o.pending && !o.taken }

// begun reports that the request holds its key.
func (o *onceState) begun() bool { return o.taken && o.begin.State == idempotency.Started }

// decided reports that the key was held or done: the request is not run.
func (o *onceState) decided() bool {
	return o.taken && o.begin.State != 0 && o.begin.State != idempotency.Started
}

// keep returns the response to keep for a request whose handler returned
// err (returned is false when it panicked), or nil to free the key.
func (o *onceState) keep(c echo.Context, err error, returned bool) *idempotency.Record {
	if !returned {
		return nil
	}
	return kept(c, o.rec, err)
}

// kept returns the response recorded by rec to keep for a request whose
// handler returned err, or nil when it is not kept: an error, a 5xx, no
// response at all, or a body over the limit.
func kept(c echo.Context, rec *recorder, err error) *idempotency.Record {
	res := c.Response()
	if err != nil || res.Status >= 500 || !res.Committed || rec.overflow {
		return nil
	}
	return &idempotency.Record{
		Status: res.Status,
		Header: keptHeaders(res.Header()),
		Body:   rec.body.Bytes(),
		Stream: isEventStream(res.Header().Get(echo.HeaderContentType)),
	}
}

// errOnceDecided is what the admission step returns for a request whose
// key was held or done; the idempotency step answers it.
var errOnceDecided = errors.New("idempotency: decided by the admission store")

// serveJoined is serve with the key's store calls left to the admission
// step.
func (cfg IdempotencyConfig) serveJoined(c echo.Context, next echo.HandlerFunc, claim admission.Once) error {
	o := &state(c).once
	rec := &recorder{ResponseWriter: c.Response().Writer, max: cfg.MaxBodyBytes}
	*o = onceState{pending: true, claim: claim, ttl: cfg.TTL, failOpen: cfg.Fail == FailOpen, rec: rec}
	c.Response().Writer = rec
	err := next(c)
	c.Response().Writer = rec.ResponseWriter
	o.pending = false
	switch {
	case !o.taken:
		if err == nil {
			cfg.Logger.LogAttrs(c.Request().Context(), slog.LevelError, "idempotency: joined, but no admission step took the request; it ran without idempotency",
				slog.String("request_id", GetRequestID(c)), slog.String("route", c.Path()))
		}
		return err
	case o.begin.State == idempotency.Completed:
		return replay(c, o.begin.Record)
	case o.begin.State == idempotency.InProgress:
		return apierrors.IdempotencyConflict(time.Second)
	case o.begin.State == idempotency.Mismatch:
		return apierrors.IdempotencyMismatch()
	}
	return err
}

// replay writes a kept response.
func replay(c echo.Context, r *idempotency.Record) error {
	h := c.Response().Header()
	for k, v := range r.Header {
		h[k] = v
	}
	h.Set(HeaderIdempotentReplayed, "true")
	c.Response().WriteHeader(r.Status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err := c.Response().Write(r.Body)
	return err
}

// dropHeader reports whether a header is left out of a kept response: it
// describes the connection, this response's own request (X-Request-Id and
// Anthropic's request-id), or rate-limit state, in either dialect, that a
// replay does not touch.
func dropHeader(k string) bool {
	switch k {
	case "Connection", "Content-Length", "Date", "Keep-Alive", "Transfer-Encoding", "Set-Cookie",
		HeaderRequestID, apierrors.HeaderAnthropicRequestID, "Ratelimit", "Ratelimit-Policy":
		return true
	}
	return strings.HasPrefix(k, "X-Ratelimit-") || strings.HasPrefix(k, "Anthropic-Ratelimit-")
}

// keptHeaders copies the headers a replay repeats.
func keptHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if dropHeader(k) {
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

// recorder passes a response through while keeping a copy of its body, up
// to max bytes.
type recorder struct {
	http.ResponseWriter
	body     bytes.Buffer
	max      int
	overflow bool
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.overflow {
		if r.body.Len()+len(p) > r.max {
			r.overflow = true
			r.body = bytes.Buffer{}
		} else {
			r.body.Write(p)
		}
	}
	return r.ResponseWriter.Write(p)
}

// Flush passes flushes through, for event streams.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
