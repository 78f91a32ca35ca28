package budget

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Micros is an amount of money in millionths of a US dollar: 1 USD is
// 1,000,000 Micros. Integer arithmetic keeps every sum exact; there is no
// floating point anywhere in the accounting.
type Micros int64

// Units of Micros, for writing amounts in code: 5*budget.Dollar,
// 25*budget.Cent.
const (
	Micro  Micros = 1
	Cent   Micros = 10_000
	Dollar Micros = 1_000_000
)

// MaxMicros is the largest Limit or amount a Ledger accepts: 2^50 Micros,
// about 1.1 billion USD. The bound keeps every sum a Ledger forms exact,
// including in Redis's Lua, whose numbers are float64.
const MaxMicros Micros = 1 << 50

// String formats m as US dollars: "5.00 USD", "0.25 USD", "-1.50 USD", with
// two decimals when m is a whole number of cents and as many as needed (up
// to six) otherwise: "0.0015 USD", "0.000001 USD".
func (m Micros) String() string {
	var buf [32]byte
	return string(m.appendText(buf[:0])) + " USD"
}

// appendText appends m as a decimal number of dollars, without the unit.
func (m Micros) appendText(b []byte) []byte {
	u := uint64(m)
	if m < 0 {
		b = append(b, '-')
		u = -u // two's complement: right for math.MinInt64 too
	}
	b = strconv.AppendUint(b, u/1_000_000, 10)
	frac := u % 1_000_000
	digits := 6
	if frac%10_000 == 0 {
		frac /= 10_000
		digits = 2
	} else {
		for frac%10 == 0 {
			frac /= 10
			digits--
		}
	}
	b = append(b, '.')
	var d [6]byte
	for i := digits - 1; i >= 0; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	return append(b, d[:digits]...)
}

// maxWholeDollars is the most whole dollars ParseMicros reads: any more
// would not fit in Micros once scaled.
const maxWholeDollars = (1 << 62) / 1_000_000

// ErrInvalidMicros is wrapped by ParseMicros's errors.
var ErrInvalidMicros = errors.New("budget: invalid amount of money")

// ParseMicros parses an amount of US dollars written in decimal, such as
// "5", "5.00", "$0.25", "-1.5" or "0.000001 USD" (String's output reads
// back), into Micros. It is meant for configuration files. More than six
// decimals, which Micros cannot represent, are an error rather than rounded.
func ParseMicros(s string) (Micros, error) {
	in := s
	fail := func(why string) (Micros, error) {
		return 0, fmt.Errorf("%w %q: %s", ErrInvalidMicros, in, why)
	}
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutSuffix(s, "USD"); ok {
		s = strings.TrimSpace(rest)
	}
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	s = strings.TrimPrefix(s, "$")
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return fail("no digits")
	}
	if dot && frac == "" {
		return fail("no digits after the decimal point")
	}
	if len(frac) > 6 {
		return fail("more than six decimals")
	}
	var u uint64
	for _, part := range [...]string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return fail("not a decimal number")
			}
		}
	}
	for i := 0; i < len(whole); i++ {
		u = u*10 + uint64(whole[i]-'0')
		if u > maxWholeDollars {
			return fail("too large")
		}
	}
	u *= 1_000_000
	scale := uint64(100_000)
	for i := 0; i < len(frac); i++ {
		u += uint64(frac[i]-'0') * scale
		scale /= 10
	}
	if neg {
		return -Micros(u), nil
	}
	return Micros(u), nil
}
