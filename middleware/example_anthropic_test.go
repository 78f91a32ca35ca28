package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// An Anthropic-style stream: every event named, as Anthropic's SDKs need,
// ending with message_stop rather than [DONE]. On a route in the
// anthropic shape an error after the first event would arrive as
// `event: error` with Anthropic's body, and every response carries
// request-id beside X-Request-Id.
func ExampleStream_SendNamed() {
	anthropicRoutes := func(echo.Context) apierrors.Shape { return apierrors.ShapeAnthropic }
	e := echo.New()
	e.HTTPErrorHandler, _ = middleware.ErrorHandlerConfig{ShapeFor: anthropicRoutes}.ToHandler()
	requestID, _ := middleware.RequestIDConfig{TrustInbound: true, ShapeFor: anthropicRoutes}.ToMiddleware()
	e.Use(requestID)
	e.POST("/v1/messages", func(c echo.Context) error {
		s := middleware.NewStream(c)
		events := []struct {
			name string
			data any
		}{
			{"message_start", map[string]any{"type": "message_start", "message": map[string]any{
				"id": "msg_1", "type": "message", "role": "assistant", "model": "my-model", "content": []any{},
				"stop_reason": nil, "stop_sequence": nil, "usage": map[string]int{"input_tokens": 3, "output_tokens": 0}}}},
			{"content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]string{"type": "text", "text": ""}}},
			{"content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]string{"type": "text_delta", "text": "Hello"}}},
			{"content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}},
			{"message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}, "usage": map[string]int{"output_tokens": 1}}},
			{"message_stop", map[string]string{"type": "message_stop"}},
		}
		for _, ev := range events {
			if err := s.SendNamed(ev.name, ev.data); err != nil {
				return err // the client went away
			}
		}
		return nil
	})

	req := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
	req.Header.Set("X-Request-Id", "req_example")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	fmt.Println("request-id:", rec.Header().Get("request-id"))
	fmt.Print(rec.Body)
	// Output:
	// request-id: req_example
	// event: message_start
	// data: {"message":{"content":[],"id":"msg_1","model":"my-model","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"input_tokens":3,"output_tokens":0}},"type":"message_start"}
	//
	// event: content_block_start
	// data: {"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}
	//
	// event: content_block_delta
	// data: {"delta":{"text":"Hello","type":"text_delta"},"index":0,"type":"content_block_delta"}
	//
	// event: content_block_stop
	// data: {"index":0,"type":"content_block_stop"}
	//
	// event: message_delta
	// data: {"delta":{"stop_reason":"end_turn","stop_sequence":null},"type":"message_delta","usage":{"output_tokens":1}}
	//
	// event: message_stop
	// data: {"type":"message_stop"}
}
