package app

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
)

// chatRequest is the part of OpenAI's chat completion request the demo
// reads. Unknown fields are rejected by gatekit's binder.
type chatRequest struct {
	Model         string         `json:"model" validate:"required"`
	Messages      []chatMessage  `json:"messages" validate:"required,min=1,dive"`
	Temperature   *float64       `json:"temperature" validate:"omitempty,gte=0,lte=2"`
	TopP          *float64       `json:"top_p" validate:"omitempty,gte=0,lte=1"`
	MaxTokens     *int           `json:"max_tokens" validate:"omitempty,gte=1"`
	MaxCompletion *int           `json:"max_completion_tokens" validate:"omitempty,gte=1"`
	N             *int           `json:"n" validate:"omitempty,eq=1"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	User          string         `json:"user"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role    string `json:"role" validate:"required,oneof=system user assistant"`
	Content string `json:"content"`
	Name    string `json:"name,omitempty"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// report is u as gatekit's token limits and budgets read it.
func (u usage) report(model string) middleware.Usage {
	return middleware.Usage{Model: model, PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens)}
}

type choice struct {
	Index        int          `json:"index"`
	Message      *chatMessage `json:"message,omitempty"`
	Delta        *delta       `json:"delta,omitempty"`
	FinishReason *string      `json:"finish_reason"`
}

type delta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

func chatCompletions(c echo.Context) error {
	var req chatRequest
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
	words, finish := answer(req, allowance, limited)
	u := usage{PromptTokens: promptTokens(req.Messages), CompletionTokens: len(words)}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	id := "chatcmpl-" + strings.TrimPrefix(middleware.GetRequestID(c), "req_")
	created := time.Now().Unix()

	if req.Stream {
		return stream(c, req, m, words, finish, u, id, created)
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
	return c.JSON(http.StatusOK, completion{
		ID: id, Object: "chat.completion", Created: created, Model: m.ID,
		Choices: []choice{{
			Message:      &chatMessage{Role: "assistant", Content: strings.Join(words, " ")},
			FinishReason: &finish,
		}},
		Usage: &u,
	})
}

// stream sends the answer word by word as chat.completion.chunk events,
// reporting its progress as it goes so that a request cut short (the
// server stopping) is settled for what it sent. A flaky model fails after
// two words; the error handler turns the returned error into the stream's
// last event. A slow one sends a word every slowWord.
func stream(c echo.Context, req chatRequest, m model, words []string, finish string, u usage, id string, created int64) error {
	s := middleware.NewStream(c)
	chunk := func(d delta, fin *string) completion {
		return completion{ID: id, Object: "chat.completion.chunk", Created: created, Model: m.ID,
			Choices: []choice{{Delta: &d, FinishReason: fin}}}
	}
	if err := s.Send(chunk(delta{Role: "assistant"}, nil)); err != nil {
		return err
	}
	for i, w := range words {
		if m.behaviour == flaky && i == 2 {
			// What was streamed was spent: the prompt and two words.
			_ = middleware.ReportUsage(c, usage{PromptTokens: u.PromptTokens, CompletionTokens: 2}.report(m.ID))
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
		if err := middleware.ReportProgress(c, usage{PromptTokens: u.PromptTokens, CompletionTokens: i + 1}.report(m.ID)); err != nil {
			return err
		}
		if err := s.Send(chunk(delta{Content: w}, nil)); err != nil {
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
	if err := s.Send(chunk(delta{}, &finish)); err != nil {
		return err
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		final := completion{ID: id, Object: "chat.completion.chunk", Created: created, Model: m.ID, Choices: []choice{}, Usage: &u}
		if err := s.Send(final); err != nil {
			return err
		}
	}
	return s.Done()
}

// slowWord is how long gk-slow takes per word.
const slowWord = 200 * time.Millisecond

// wait waits d, or until the client has gone.
func wait(c echo.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.Request().Context().Done():
		return c.Request().Context().Err()
	}
}

// answer is the demo's reply: the last user message, cut to the request's
// max_tokens and to its allowance (the tokens gatekit reserved for its
// output, when limited), with finish_reason "length" when cut. A flaky
// model always has something to stream.
func answer(req chatRequest, allowance int64, limited bool) (words []string, finish string) {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			words = strings.Fields(req.Messages[i].Content)
			break
		}
	}
	if len(words) == 0 {
		words = []string{"(nothing", "to", "echo)"}
	}
	limit := req.MaxTokens
	if req.MaxCompletion != nil {
		limit = req.MaxCompletion
	}
	finish = "stop"
	if limit != nil && len(words) > *limit {
		words, finish = words[:*limit], "length"
	}
	if limited && int64(len(words)) > allowance {
		words, finish = words[:allowance], "length"
	}
	return words, finish
}

// promptTokens counts the demo's tokens: words.
func promptTokens(msgs []chatMessage) int {
	n := 0
	for _, m := range msgs {
		n += len(strings.Fields(m.Content))
	}
	return n
}
