package middleware

import (
	"bytes"
	"encoding/json"
	stderrors "errors"
	"io"
	"math/bits"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
)

// Price is what a model costs, per million tokens of each kind.
type Price struct {
	// Input is the price of one million prompt tokens.
	Input budget.Micros
	// Output is the price of one million completion tokens.
	Output budget.Micros
}

// Cost prices prompt and completion tokens, rounding up to a whole micro so
// that no request is free by rounding, and saturating at budget.MaxMicros.
func (p Price) Cost(prompt, completion int64) budget.Micros {
	return min(perMillion(prompt, p.Input)+perMillion(completion, p.Output), budget.MaxMicros)
}

// OutputFor returns the most completion tokens that, with prompt tokens,
// cost no more than limit: 0 when the prompt alone costs more, and
// maxOutputTokens when output is free.
func (p Price) OutputFor(limit budget.Micros, prompt int64) int64 {
	left := limit - perMillion(prompt, p.Input)
	switch {
	case left < 0:
		return 0
	case p.Output <= 0:
		return maxOutputTokens
	}
	// ceil(n x Output / 1e6) <= left  <=>  n <= floor(left x 1e6 / Output).
	hi, lo := bits.Mul64(uint64(left), 1_000_000)
	if hi >= uint64(p.Output) {
		return maxOutputTokens
	}
	q, _ := bits.Div64(hi, lo, uint64(p.Output))
	return int64(min(q, maxOutputTokens))
}

// perMillion is ceil(tokens x price / 1e6), saturating instead of
// overflowing.
func perMillion(tokens int64, price budget.Micros) budget.Micros {
	if tokens <= 0 || price <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(tokens), uint64(price))
	if hi >= 1_000_000 {
		return budget.MaxMicros
	}
	q, r := bits.Div64(hi, lo, 1_000_000)
	if r != 0 {
		q++
	}
	if q > uint64(budget.MaxMicros) {
		return budget.MaxMicros
	}
	return budget.Micros(q)
}

// Prices is a price list by model, for budgets.
type Prices struct {
	// Models maps a model to its price.
	Models map[string]Price
	// Default prices models missing from Models; nil makes them free.
	Default *Price
}

// Price returns model's price: its entry, else Default, else free.
func (ps *Prices) Price(model string) Price {
	if p, ok := ps.Models[model]; ok {
		return p
	}
	if ps.Default != nil {
		return *ps.Default
	}
	return Price{}
}

// Estimate is what a request asks for, read before its handler runs.
type Estimate struct {
	// Model is the model asked for.
	Model string
	// PromptTokens is the most tokens its input can count as.
	PromptTokens int64
	// MaxOutputTokens is the completion length it asked for at most
	// (max_tokens); 0 when it set none.
	MaxOutputTokens int64
}

// ChatEstimator reads OpenAI- and Anthropic-style request bodies (chat
// completions, completions, responses, embeddings, messages): the model,
// the input's tokens and max_tokens, max_completion_tokens or
// max_output_tokens. Its Estimate fits [AdmissionConfig].
type ChatEstimator struct {
	// CountTokens counts a prompt's tokens. It must not count fewer than
	// the model will. Default: one token per byte of the request's JSON
	// input, an upper bound for byte-level tokenizers.
	CountTokens func(input []byte) int64
}

// chatBody is the part of a request the estimate reads.
type chatBody struct {
	Model               string          `json:"model"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MaxOutputTokens     *int64          `json:"max_output_tokens"`
	Messages            json.RawMessage `json:"messages"`
	System              json.RawMessage `json:"system"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
}

// Estimate reads c's body. A body that does not parse is estimated as
// empty; the binder rejects it after.
func (ce *ChatEstimator) Estimate(c echo.Context) (Estimate, error) {
	raw, err := PeekBody(c)
	if err != nil {
		return Estimate{}, err
	}
	var body chatBody
	_ = json.Unmarshal(raw, &body)
	input := len(body.Messages) + len(body.System) + len(body.Prompt) + len(body.Input)
	est := Estimate{Model: body.Model, PromptTokens: int64(input)}
	if ce.CountTokens != nil {
		joined := make([]byte, 0, input)
		joined = append(append(append(append(joined, body.Messages...), body.System...), body.Prompt...), body.Input...)
		est.PromptTokens = ce.CountTokens(joined)
	}
	for _, m := range []*int64{body.MaxTokens, body.MaxCompletionTokens, body.MaxOutputTokens} {
		if m != nil && *m > 0 {
			est.MaxOutputTokens = *m
			break
		}
	}
	return est, nil
}

// PeekBody reads the whole request body (within the route's body limit)
// and puts it back, so that middleware can look at a body the handler will
// bind again. A body over the limit is 413 payload_too_large.
func PeekBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	raw, err := io.ReadAll(req.Body)
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(raw))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if stderrors.As(err, &tooLarge) {
			return nil, apierrors.PayloadTooLarge(tooLarge.Limit)
		}
		return nil, apierrors.InvalidRequest("The request body could not be read.").WithCause(err)
	}
	return raw, nil
}
