package app

import (
	"net/http"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// messagesRequest is the part of Anthropic's Messages API request the
// demo reads. Unknown fields are rejected by gatekit's binder.
type messagesRequest struct {
	Model         string            `json:"model" validate:"required"`
	MaxTokens     int               `json:"max_tokens" validate:"required,gte=1"`
	Messages      []anthropicMsg    `json:"messages" validate:"required,min=1,dive"`
	System        content           `json:"system" validate:"dive"`
	Temperature   *float64          `json:"temperature" validate:"omitempty,gte=0,lte=1"`
	TopP          *float64          `json:"top_p" validate:"omitempty,gte=0,lte=1"`
	TopK          *int              `json:"top_k" validate:"omitempty,gte=0"`
	StopSequences []string          `json:"stop_sequences"`
	Stream        bool              `json:"stream"`
	Metadata      map[string]string `json:"metadata"`
}

// anthropicMsg is one turn of a conversation.
type anthropicMsg struct {
	Role    string  `json:"role" validate:"required,oneof=user assistant"`
	Content content `json:"content" validate:"required,min=1,dive"`
}

// content is a message's content: a string, or a list of content blocks,
// as Anthropic's API takes either. A string is one text block.
type content []contentBlock

// contentBlock is a text block, the one kind the demo reads.
type contentBlock struct {
	Type string `json:"type" validate:"required,oneof=text"`
	Text string `json:"text"`
}

// UnmarshalJSONFrom reads a string or an array of content blocks; an
// error keeps its place in the body, so the binder names the field.
func (c *content) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*c = content{{Type: "text", Text: tok.String()}}
		return nil
	}
	var blocks []contentBlock
	if err := json.UnmarshalDecode(dec, &blocks); err != nil {
		return err
	}
	*c = blocks
	return nil
}

// text joins the text of c's blocks.
func (c content) text() string {
	parts := make([]string, len(c))
	for i, b := range c {
		parts[i] = b.Text
	}
	return strings.Join(parts, " ")
}

// textBlock is a content block of a response.
type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// messageUsage is a message's usage as Anthropic reports it.
type messageUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// message is a Messages API response, or the message of message_start.
type message struct {
	ID           string       `json:"id"`
	Type         string       `json:"type"`
	Role         string       `json:"role"`
	Model        string       `json:"model"`
	Content      []textBlock  `json:"content"`
	StopReason   *string      `json:"stop_reason"`
	StopSequence *string      `json:"stop_sequence"`
	Usage        messageUsage `json:"usage"`
}

// messages answers POST /v1/messages in Anthropic's format, on the same
// models, keys, limits and budgets as chat completions: gk-echo repeats
// the last user turn, gk-flaky fails (mid-stream after two words), gk-slow
// takes slowWord a word. The answer stops at max_tokens and at the
// allowance gatekit reserved, with stop_reason "max_tokens" when cut.
func messages(c echo.Context) error {
	var req messagesRequest
	if err := c.Bind(&req); err != nil {
		return err
	}
	m, err := lookupModel(req.Model)
	if err != nil {
		return err
	}
	if err := middleware.RequireModel(c, m.ID); err != nil {
		return err
	}
	allowance, limited := middleware.Allowance(c)
	words, stop := messageAnswer(req, allowance, limited)
	u := messageUsage{InputTokens: messageTokens(req), OutputTokens: len(words)}
	id := "msg_" + strings.TrimPrefix(middleware.GetRequestID(c), "req_")
	if req.Stream {
		return streamMessage(c, m, words, stop, u, id)
	}
	if m.behaviour == flaky {
		return apierrors.ModelTimeout("The model gk-flaky did not respond in time.")
	}
	if m.behaviour == slow {
		if err := wait(c, time.Duration(len(words))*slowWord); err != nil {
			return err
		}
	}
	if err := middleware.ReportUsage(c, u.report(m.ID)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, message{
		ID: id, Type: "message", Role: "assistant", Model: m.ID,
		Content:    []textBlock{{Type: "text", Text: strings.Join(words, " ")}},
		StopReason: &stop, Usage: u,
	})
}

// report is u as gatekit's token limits and budgets read it.
func (u messageUsage) report(model string) middleware.Usage {
	return middleware.Usage{Model: model, PromptTokens: int64(u.InputTokens), CompletionTokens: int64(u.OutputTokens)}
}

// streamMessage sends the answer as Anthropic's named events:
// message_start, content_block_start, a content_block_delta per word,
// content_block_stop, message_delta (stop_reason and usage) and
// message_stop. gk-flaky fails after two words, which the error handler
// sends as `event: error`.
func streamMessage(c echo.Context, m model, words []string, stop string, u messageUsage, id string) error {
	s := middleware.NewStream(c)
	start := message{ID: id, Type: "message", Role: "assistant", Model: m.ID, Content: []textBlock{},
		Usage: messageUsage{InputTokens: u.InputTokens}}
	if err := s.SendNamed("message_start", map[string]any{"type": "message_start", "message": start}); err != nil {
		return err
	}
	if err := s.SendNamed("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
		"content_block": textBlock{Type: "text", Text: ""}}); err != nil {
		return err
	}
	for i, w := range words {
		if m.behaviour == flaky && i == 2 {
			_ = middleware.ReportUsage(c, messageUsage{InputTokens: u.InputTokens, OutputTokens: 2}.report(m.ID))
			return apierrors.ModelTimeout("The model gk-flaky stopped responding mid-stream.")
		}
		if i > 0 {
			w = " " + w
		}
		if m.behaviour == slow {
			if err := wait(c, slowWord); err != nil {
				return err
			}
		}
		if err := middleware.ReportProgress(c, messageUsage{InputTokens: u.InputTokens, OutputTokens: i + 1}.report(m.ID)); err != nil {
			return err
		}
		if err := s.SendNamed("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]string{"type": "text_delta", "text": w}}); err != nil {
			return err
		}
	}
	if m.behaviour == flaky {
		_ = middleware.ReportUsage(c, u.report(m.ID))
		return apierrors.ModelTimeout("The model gk-flaky stopped responding mid-stream.")
	}
	if err := middleware.ReportUsage(c, u.report(m.ID)); err != nil {
		return err
	}
	if err := s.SendNamed("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}); err != nil {
		return err
	}
	if err := s.SendNamed("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": map[string]int{"output_tokens": u.OutputTokens}}); err != nil {
		return err
	}
	return s.SendNamed("message_stop", map[string]string{"type": "message_stop"})
}

// messageAnswer is the demo's reply: the last user turn, cut to
// max_tokens and to the allowance, with stop_reason "max_tokens" when cut
// and "end_turn" otherwise.
func messageAnswer(req messagesRequest, allowance int64, limited bool) (words []string, stop string) {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			words = strings.Fields(req.Messages[i].Content.text())
			break
		}
	}
	if len(words) == 0 {
		words = []string{"(nothing", "to", "echo)"}
	}
	stop = "end_turn"
	if len(words) > req.MaxTokens {
		words, stop = words[:req.MaxTokens], "max_tokens"
	}
	if limited && int64(len(words)) > allowance {
		words, stop = words[:allowance], "max_tokens"
	}
	return words, stop
}

// messageTokens counts the demo's input tokens: the words of the system
// prompt and of every turn.
func messageTokens(req messagesRequest) int {
	n := len(strings.Fields(req.System.text()))
	for _, m := range req.Messages {
		n += len(strings.Fields(m.Content.text()))
	}
	return n
}
