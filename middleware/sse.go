package middleware

import (
	"bytes"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Stream writes a server-sent events response. Nothing is sent until the
// first event, so a handler that fails before it still answers with a
// plain JSON error; after it, an error the handler returns reaches the
// client as one last `data: {"error":{...}}` event written by the error
// handler, and the stream ends without [DONE].
//
//	s := middleware.NewStream(c)
//	for chunk := range chunks {
//		if err := s.Send(chunk); err != nil {
//			return err // client gone
//		}
//	}
//	return s.Done()
//
// Anthropic's streaming API names every event, and its SDKs skip events
// without a name: send each with [Stream.SendNamed] (message_start,
// content_block_start, content_block_delta, content_block_stop,
// message_delta, message_stop), and end with message_stop instead of
// Done. On a route in the anthropic shape an error after the first event
// becomes `event: error` with that shape's body.
//
//	s.SendNamed("message_start", map[string]any{"type": "message_start", "message": msg})
//	...
//	return s.SendNamed("message_stop", map[string]string{"type": "message_stop"})
//
// A Stream is used by one handler goroutine; it is not safe for concurrent
// use.
type Stream struct {
	c       echo.Context
	rc      *http.ResponseController
	buf     []byte
	started bool
}

// NewStream prepares c's response for events; it writes nothing yet.
func NewStream(c echo.Context) *Stream {
	return &Stream{c: c, rc: http.NewResponseController(c.Response())}
}

// Started reports whether the stream has sent its headers, after which
// errors can only be delivered as events.
func (s *Stream) Started() bool { return s.started }

// Send writes v, encoded as JSON, as one `data:` event and flushes it.
// Once the client has gone away it returns an error for which
// errors.Is(err, context.Canceled) holds (the request context's error,
// wrapping the failed write if there was one), so the handler can stop
// producing and return it.
func (s *Stream) Send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("stream: encoding event: %w", err)
	}
	return s.SendData(data)
}

// SendNamed writes v, encoded as JSON, as one event named event
// (`event: message_start`, then `data: {...}`) and flushes it, as
// Anthropic's streaming API sends events. It fails as [Stream.Send] does,
// and for a name holding a line break, writing nothing.
func (s *Stream) SendNamed(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("stream: encoding event %q: %w", event, err)
	}
	return s.SendEvent(event, data)
}

// SendData writes data, which must be a single line, as one `data:` event.
func (s *Stream) SendData(data []byte) error {
	return s.SendEvent("", data)
}

// SendEvent writes one event with the given name (omitted when empty) and
// single-line data, and flushes it. An event name or data holding a line
// break is refused with an error and nothing is written, since it would
// split the event.
func (s *Stream) SendEvent(event string, data []byte) error {
	ctx := s.c.Request().Context()
	if err := ctx.Err(); err != nil {
		return err
	}
	if strings.ContainsAny(event, "\r\n") || bytes.ContainsAny(data, "\r\n") {
		return stderrors.New("stream: event name or data holds a line break")
	}
	s.start()
	s.buf = s.buf[:0]
	if event != "" {
		s.buf = append(s.buf, "event: "...)
		s.buf = append(s.buf, event...)
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	_, err := s.c.Response().Write(s.buf)
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		// net/http cancels the request's context when a write to the
		// connection fails; report the client as gone, not as a fault.
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("stream: %w: %w", cerr, err)
		}
		return err
	}
	return nil
}

// Done ends a successful stream with `data: [DONE]`.
func (s *Stream) Done() error {
	return s.SendData([]byte("[DONE]"))
}

// start sends the status line and the event-stream headers once.
func (s *Stream) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	s.c.Response().WriteHeader(http.StatusOK)
}
