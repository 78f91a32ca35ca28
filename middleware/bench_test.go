package middleware_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// discardWriter is an http.ResponseWriter that keeps headers and status
// and drops the body; reset makes it new again without allocating.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func newDiscardWriter() *discardWriter { return &discardWriter{h: make(http.Header)} }

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func (w *discardWriter) WriteHeader(code int) { w.status = code }

func (w *discardWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// replayBody is a request body that can be read again after Reset.
type replayBody struct{ bytes.Reader }

func (*replayBody) Close() error { return nil }

// benchRequest is one POST built once and replayed per iteration.
type benchRequest struct {
	req  *http.Request
	body *replayBody
	data []byte
}

func newBenchRequest(data string) *benchRequest {
	b := &benchRequest{body: &replayBody{}, data: []byte(data)}
	b.req = httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	b.req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	b.req.ContentLength = int64(len(data))
	return b
}

// next resets the body (middleware may have wrapped it) and returns the
// request.
func (b *benchRequest) next() *http.Request {
	b.body.Reset(b.data)
	b.req.Body = b.body
	return b.req
}

func runBench(b *testing.B, e *echo.Echo, data string, status int) {
	br := newBenchRequest(data)
	w := newDiscardWriter()
	e.ServeHTTP(w, br.next())
	if w.status != status && !(status == http.StatusOK && w.status == 0) {
		b.Fatalf("status %d, want %d", w.status, status)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.reset()
		e.ServeHTTP(w, br.next())
	}
}

func chatRoute(e *echo.Echo) {
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		var req ChatRequest
		if err := c.Bind(&req); err != nil {
			return err
		}
		return c.NoContent(http.StatusOK)
	})
}

const typeErrorChat = `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`

func bareEcho() *echo.Echo {
	e := echo.New()
	chatRoute(e)
	return e
}

func gatekitEcho(b *testing.B) *echo.Echo {
	e := echo.New()
	h, err := middleware.ErrorHandlerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.ToHandler()
	if err != nil {
		b.Fatal(err)
	}
	e.HTTPErrorHandler = h
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	e.Use(middleware.RequestID(), middleware.Recover(), middleware.BodyLimit(1<<20))
	chatRoute(e)
	return e
}

// BenchmarkErrorRender renders a shared 429 through the error handler.
func BenchmarkErrorRender(b *testing.B) {
	e := echo.New()
	h, err := middleware.ErrorHandlerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.ToHandler()
	if err != nil {
		b.Fatal(err)
	}
	limit := apierrors.RateLimitExceeded("Rate limit reached for requests.", 1500*time.Millisecond)
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	w := newDiscardWriter()
	c := e.NewContext(req, w)
	id := []string{"req_0123456789abcdef01234567"}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		w.h[middleware.HeaderRequestID] = id
		c.Reset(req, w)
		h(limit, c)
	}
	if w.status != http.StatusTooManyRequests || w.n == 0 {
		b.Fatalf("status %d, %d bytes", w.status, w.n)
	}
}

// BenchmarkBareEchoErrorRender is the baseline for BenchmarkErrorRender:
// Echo's own error handler rendering its 429.
func BenchmarkBareEchoErrorRender(b *testing.B) {
	e := echo.New()
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	w := newDiscardWriter()
	c := e.NewContext(req, w)
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		c.Reset(req, w)
		e.DefaultHTTPErrorHandler(echo.ErrTooManyRequests, c)
	}
	if w.status != http.StatusTooManyRequests || w.n == 0 {
		b.Fatalf("status %d, %d bytes", w.status, w.n)
	}
}

// BenchmarkBareEchoJSON is the baseline: echo.New(), DefaultBinder, a
// small JSON body, 200.
func BenchmarkBareEchoJSON(b *testing.B) { runBench(b, bareEcho(), validChat, http.StatusOK) }

// BenchmarkGatekitJSON is the same route behind request id, recovery, body
// limit, the strict binder, the validator and the error handler.
func BenchmarkGatekitJSON(b *testing.B) { runBench(b, gatekitEcho(b), validChat, http.StatusOK) }

// BenchmarkBareEchoInvalidBody is bare Echo answering a body with a value
// of the wrong type (its own 400).
func BenchmarkBareEchoInvalidBody(b *testing.B) {
	runBench(b, bareEcho(), typeErrorChat, http.StatusBadRequest)
}

// BenchmarkGatekitInvalidBody is gatekit answering the same body with a
// 400 invalid_argument envelope.
func BenchmarkGatekitInvalidBody(b *testing.B) {
	runBench(b, gatekitEcho(b), typeErrorChat, http.StatusBadRequest)
}

// BenchmarkGatekitValidationError is gatekit answering a well-formed body
// that breaks a validation rule (temperature 3).
func BenchmarkGatekitValidationError(b *testing.B) {
	runBench(b, gatekitEcho(b), `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"temperature":3}`, http.StatusBadRequest)
}
