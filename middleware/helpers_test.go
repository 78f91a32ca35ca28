package middleware_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// ChatRequest is a chat completion request as an OpenAI-style API takes it.
type ChatRequest struct {
	Model       string        `json:"model" validate:"required"`
	Messages    []ChatMessage `json:"messages" validate:"required,min=1,dive"`
	Temperature *float64      `json:"temperature,omitempty" validate:"omitempty,gte=0,lte=2"`
	MaxTokens   *int          `json:"max_tokens,omitempty" validate:"omitempty,gte=1"`
	Stream      bool          `json:"stream,omitempty"`
}

// ChatMessage is one message of a ChatRequest.
type ChatMessage struct {
	Role    string `json:"role" validate:"required,oneof=system user assistant"`
	Content string `json:"content"`
}

const validChat = `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`

// envelope is the OpenAI-shaped error body, decoded strictly.
type envelope struct {
	Error struct {
		Message    string  `json:"message"`
		Type       string  `json:"type"`
		Code       string  `json:"code"`
		Param      *string `json:"param"`
		RequestID  string  `json:"request_id"`
		RetryAfter *int64  `json:"retry_after"`
	} `json:"error"`
}

// decodeEnvelope decodes an OpenAI-shaped error body, failing the test for
// anything else: unknown members, trailing data, a missing param member.
func decodeEnvelope(t testing.TB, body []byte) envelope {
	t.Helper()
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("body is not an OpenAI error envelope: %v\n%s", err, body)
	}
	if dec.More() {
		t.Fatalf("trailing data after the envelope: %s", body)
	}
	if !bytes.Contains(body, []byte(`"param":`)) {
		t.Fatalf("envelope has no param member (want null or a string): %s", body)
	}
	return env
}

// logBuffer is a bytes.Buffer safe for a logger shared by concurrent
// requests.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLogger returns a JSON logger at debug level writing to a buffer.
func newLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// newEcho returns an Echo with gatekit's error handler (OpenAI shape,
// logging to the returned buffer), binder and validator, and the request id
// and recovery middleware.
func newEcho(t testing.TB) (*echo.Echo, *logBuffer) {
	t.Helper()
	logger, logs := newLogger()
	return newEchoShape(t, apierrors.ShapeOpenAI, logger), logs
}

func newEchoShape(t testing.TB, shape apierrors.Shape, logger *slog.Logger) *echo.Echo {
	t.Helper()
	e := echo.New()
	h, err := middleware.ErrorHandlerConfig{Shape: shape, Logger: logger}.ToHandler()
	if err != nil {
		t.Fatal(err)
	}
	e.HTTPErrorHandler = h
	e.Binder = middleware.NewBinder()
	e.Validator = middleware.NewValidator()
	e.Use(middleware.RequestID(), middleware.Recover())
	return e
}

// serve runs one request through e and returns the recorded response.
func serve(e *echo.Echo, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// postJSON builds a POST with a JSON body.
func postJSON(target, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	return req
}

var generatedID = regexp.MustCompile(`^req_[0-9a-f]{24}$`)

// countingReader counts the bytes its Read hands out.
type countingReader struct {
	r    io.Reader
	mu   sync.Mutex
	n    int64
	read bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += int64(n)
	c.read = true
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) Close() error { return nil }

func (c *countingReader) count() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.read
}
