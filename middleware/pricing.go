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
// that no request is free by rounding.
func (p Price) Cost(prompt, completion int64) budget.Micros {
	return perMillion(prompt, p.Input) + perMillion(completion, p.Output)
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

// ChatPricing prices OpenAI-style requests (chat completions, completions,
// embeddings) by model. Its Estimate and Cost fit [BudgetConfig].
type ChatPricing struct {
	// Models maps a model to its price.
	Models map[string]Price
	// Default prices models missing from Models; nil makes them free.
	Default *Price
	// MaxOutputTokens is the completion length assumed when a request sets
	// no max_tokens. Default: 4096.
	MaxOutputTokens int64
	// CountTokens counts a prompt's tokens for the estimate. It must not
	// count fewer than the model will. Default: one token per byte of the
	// request's JSON input, an upper bound for byte-level tokenizers.
	CountTokens func(input []byte) int64
}

// chatBody is the part of a request the estimate reads.
type chatBody struct {
	Model               string          `json:"model"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MaxOutputTokens     *int64          `json:"max_output_tokens"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
}

// Estimate is the most the request can cost: its prompt counted by
// CountTokens at the input price, plus its max_tokens (or MaxOutputTokens)
// at the output price. A body that does not parse is estimated as empty;
// the binder rejects it after.
func (cp *ChatPricing) Estimate(c echo.Context, _ *Principal) (budget.Micros, error) {
	raw, err := PeekBody(c)
	if err != nil {
		return 0, err
	}
	var body chatBody
	_ = json.Unmarshal(raw, &body)
	input := len(body.Messages) + len(body.Prompt) + len(body.Input)
	var prompt int64
	if cp.CountTokens != nil {
		joined := make([]byte, 0, input)
		joined = append(append(append(joined, body.Messages...), body.Prompt...), body.Input...)
		prompt = cp.CountTokens(joined)
	} else {
		prompt = int64(input)
	}
	out := cp.MaxOutputTokens
	if out <= 0 {
		out = 4096
	}
	for _, m := range []*int64{body.MaxTokens, body.MaxCompletionTokens, body.MaxOutputTokens} {
		if m != nil && *m > 0 {
			out = *m
			break
		}
	}
	return cp.price(body.Model).Cost(prompt, out), nil
}

// Cost prices the usage a handler reported, by its model.
func (cp *ChatPricing) Cost(_ echo.Context, u Usage) budget.Micros {
	return cp.price(u.Model).Cost(u.PromptTokens, u.CompletionTokens)
}

func (cp *ChatPricing) price(model string) Price {
	if p, ok := cp.Models[model]; ok {
		return p
	}
	if cp.Default != nil {
		return *cp.Default
	}
	return Price{}
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
