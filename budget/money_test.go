package budget_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gatekit/gatekit/budget"
)

func TestMicrosString(t *testing.T) {
	for _, c := range []struct {
		m    budget.Micros
		want string
	}{
		{0, "0.00 USD"},
		{5 * budget.Dollar, "5.00 USD"},
		{25 * budget.Cent, "0.25 USD"},
		{1_234_560_000, "1234.56 USD"},
		{1, "0.000001 USD"},
		{1500, "0.0015 USD"},
		{1_000_100, "1.0001 USD"},
		{123_456, "0.123456 USD"},
		{-150 * budget.Cent, "-1.50 USD"},
		{-1, "-0.000001 USD"},
		{math.MaxInt64, "9223372036854.775807 USD"},
		{math.MinInt64, "-9223372036854.775808 USD"},
	} {
		if got := c.m.String(); got != c.want {
			t.Errorf("Micros(%d).String() = %q, want %q", int64(c.m), got, c.want)
		}
	}
}

func TestParseMicros(t *testing.T) {
	for _, c := range []struct {
		in   string
		want budget.Micros
	}{
		{"5", 5 * budget.Dollar},
		{"5.00", 5 * budget.Dollar},
		{"$5.5", 550 * budget.Cent},
		{" 0.25 USD ", 25 * budget.Cent},
		{".5", 50 * budget.Cent},
		{"0.000001", 1},
		{"-1.50", -150 * budget.Cent},
		{"+2", 2 * budget.Dollar},
		{"1125899906.842624", budget.MaxMicros},
	} {
		if got, err := budget.ParseMicros(c.in); err != nil || got != c.want {
			t.Errorf("ParseMicros(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "USD", "$", "-", "1.", "1.0000001", "1,5", "1e3", "0x10", "--1", "1.2.3", "99999999999999", "NaN", "½"} {
		if got, err := budget.ParseMicros(in); !errors.Is(err, budget.ErrInvalidMicros) {
			t.Errorf("ParseMicros(%q) = %d, %v; want ErrInvalidMicros", in, got, err)
		}
	}
}

func TestMicrosStringParsesBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 10_000 {
		m := budget.Micros(rng.Int64N(int64(budget.MaxMicros)*2) - int64(budget.MaxMicros))
		if rng.IntN(2) == 0 {
			m = m / budget.Cent * budget.Cent
		}
		got, err := budget.ParseMicros(m.String())
		if err != nil || got != m {
			t.Fatalf("ParseMicros(%q) = %d, %v; want %d", m.String(), got, err, m)
		}
	}
}
