package middleware

import (
	"math/bits"

	"github.com/gatekit/gatekit/budget"
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
