package errors

import "unicode/utf8"

// MaxQuote is the most bytes of client input that a message or param
// quotes; [Clip] cuts anything longer.
const MaxQuote = 256

// CutMark ends a quote of client input that [Clip] cut.
const CutMark = "…(cut)"

// Clip returns s, or its first [MaxQuote] bytes (not splitting a UTF-8
// sequence) followed by [CutMark] when s is longer. Every piece of client
// input quoted in an error goes through it, so that no request can make
// its own error response large.
func Clip(s string) string {
	if len(s) <= MaxQuote {
		return s
	}
	n := MaxQuote
	for n > MaxQuote-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + CutMark
}
