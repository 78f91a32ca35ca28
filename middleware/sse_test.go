package middleware_test

import (
	"bufio"
	"context"
	stderrors "errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// bounded is how long a test waits for something that should happen at
// once; reaching it is a failure, never a way to pass.
const bounded = 10 * time.Second

// readEvent reads one server-sent event (its lines up to the blank line).
func readEvent(r *bufio.Reader) (string, error) {
	var ev strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ev.String() + line, err
		}
		if line == "\n" {
			return ev.String(), nil
		}
		ev.WriteString(line)
	}
}

// openStream GETs path from srv and returns the response; cancel ends the
// request.
func openStream(t *testing.T, srv *httptest.Server, path string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return res, cancel
}

func TestStreamFlushesEachEventAsItIsSentAndEndsWithDone(t *testing.T) {
	e, _ := newEcho(t)
	next := make(chan struct{})
	e.GET("/stream", func(c echo.Context) error {
		s := middleware.NewStream(c)
		if s.Started() {
			t.Error("stream started before its first event")
		}
		for i := range 3 {
			if err := s.Send(map[string]any{"index": i, "delta": "tok"}); err != nil {
				return err
			}
			// The next event waits for the client to have read this one,
			// so the client can only see it if it was flushed.
			select {
			case <-next:
			case <-c.Request().Context().Done():
				return c.Request().Context().Err()
			}
		}
		return s.Done()
	})
	srv := httptest.NewServer(e)
	defer srv.Close()

	res, cancel := openStream(t, srv, "/stream")
	defer cancel()
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	for name, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !generatedID.MatchString(res.Header.Get(middleware.HeaderRequestID)) {
		t.Errorf("stream has no request id: %q", res.Header.Get(middleware.HeaderRequestID))
	}

	r := bufio.NewReader(res.Body)
	for i, want := range []string{`{"delta":"tok","index":0}`, `{"delta":"tok","index":1}`, `{"delta":"tok","index":2}`} {
		ev, err := readEvent(r)
		if err != nil {
			t.Fatalf("event %d: %v (read %q)", i, err, ev)
		}
		if ev != "data: "+want+"\n" {
			t.Errorf("event %d = %q, want data: %s", i, ev, want)
		}
		next <- struct{}{}
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "data: [DONE]\n\n" {
		t.Errorf("after the events: %q, want the [DONE] event and the end", rest)
	}
}

func TestStreamErrorBeforeTheFirstEventIsAPlainJSONResponse(t *testing.T) {
	e, _ := newEcho(t)
	e.POST("/v1/chat/completions", func(c echo.Context) error {
		_ = middleware.NewStream(c)
		return apierrors.UnknownModel("gpt-9")
	})
	e.POST("/v1/bad-event", func(c echo.Context) error {
		s := middleware.NewStream(c)
		return s.Send(func() {}) // cannot be encoded
	})
	rec := serve(e, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
	env := checkEnvelope(t, rec, http.StatusNotFound, apierrors.CodeUnknownModel)
	if *env.Error.Param != "model" {
		t.Errorf("param = %q", *env.Error.Param)
	}
	checkEnvelope(t, serve(e, httptest.NewRequest(http.MethodPost, "/v1/bad-event", nil)), http.StatusInternalServerError, apierrors.CodeInternalError)
}

func TestStreamErrorAfterTheFirstEventEndsTheStreamWithOneErrorEvent(t *testing.T) {
	e, logs := newEcho(t)
	e.GET("/stream", func(c echo.Context) error {
		s := middleware.NewStream(c)
		if err := s.Send(map[string]string{"delta": "Hel"}); err != nil {
			return err
		}
		return apierrors.StreamTerminated("").WithCause(stderrors.New(secret))
	})
	srv := httptest.NewServer(e)
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/stream", nil)
	req.Header.Set(middleware.HeaderRequestID, "req-midstream")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body) // returns only once the stream closed
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Errorf("status %d, want the stream's 200", res.StatusCode)
	}
	want := "data: {\"delta\":\"Hel\"}\n\n" +
		`data: {"error":{"message":"The stream was terminated before it completed.","type":"engine_error","code":"stream_terminated","param":null,"request_id":"req-midstream","retry_after":1}}` + "\n\n"
	if string(body) != want {
		t.Errorf("stream =\n%q\nwant\n%q", body, want)
	}
	if !strings.Contains(logs.String(), "hunter2") {
		t.Errorf("the mid-stream failure's cause was not logged: %s", logs)
	}
}

func TestStreamSendFailsOnceTheClientDisconnects(t *testing.T) {
	e, logs := newEcho(t)
	stopped := make(chan error, 1)
	e.GET("/stream", func(c echo.Context) error {
		s := middleware.NewStream(c)
		for {
			if err := s.Send(map[string]string{"delta": strings.Repeat("x", 512)}); err != nil {
				stopped <- err
				return err
			}
		}
	})
	srv := httptest.NewServer(e)

	res, cancel := openStream(t, srv, "/stream")
	if _, err := readEvent(bufio.NewReader(res.Body)); err != nil {
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()

	select {
	case err := <-stopped:
		if !stderrors.Is(err, context.Canceled) {
			t.Errorf("Send failed with %v, want an error that is context.Canceled", err)
		}
	case <-time.After(bounded):
		t.Fatal("the handler kept sending after the client went away")
	}
	srv.Close() // waits for the handler and the error handler to finish
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client going away was logged as a failure: %s", logs)
	}
}

func TestStreamSendReturnsTheContextErrorOnceTheRequestIsDone(t *testing.T) {
	e := echo.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx), rec)
	s := middleware.NewStream(c)
	if err := s.Send("x"); !stderrors.Is(err, context.Canceled) {
		t.Errorf("Send = %v, want context.Canceled", err)
	}
	if s.Started() || c.Response().Committed || rec.Body.Len() != 0 {
		t.Error("a send to a finished request wrote something")
	}
}

func TestStreamSendEventNamesEventsAndRefusesLineBreaks(t *testing.T) {
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), rec)
	s := middleware.NewStream(c)
	for _, bad := range []struct {
		event string
		data  string
	}{
		{"delta\ndata: injected", `{}`},
		{"", "{}\n\ndata: [DONE]"},
		{"x", "a\rb"},
	} {
		if err := s.SendEvent(bad.event, []byte(bad.data)); err == nil {
			t.Errorf("SendEvent(%q, %q) accepted a line break", bad.event, bad.data)
		}
	}
	if s.Started() || rec.Body.Len() != 0 {
		t.Fatalf("a refused event wrote %q", rec.Body)
	}
	if err := s.SendEvent("content_block_delta", []byte(`{"text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SendData([]byte(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	if want := "event: content_block_delta\ndata: {\"text\":\"hi\"}\n\ndata: {\"n\":2}\n\n"; rec.Body.String() != want {
		t.Errorf("stream = %q, want %q", rec.Body, want)
	}
	if !rec.Flushed || !s.Started() {
		t.Error("events were not flushed")
	}
}
