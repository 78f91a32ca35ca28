package errors

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// appendString reads eight plain bytes at a time; every byte that needs
// care must still be caught wherever it falls in a word, including the
// last, partial one.
func TestAppendStringAtEveryPosition(t *testing.T) {
	specials := []string{"\x00", "\x1f", "\n", `"`, `\`, "\x7f", "\x80", "\xff", "é", "\u2028", "\u2029", "😀", "\xe2\x80"}
	for n := 0; n <= 24; n++ {
		for p := 0; p <= n; p++ {
			for _, sp := range specials {
				s := strings.Repeat("a", p) + sp + strings.Repeat("b", n-p)
				out := appendString(nil, s)
				var got string
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("appendString(%q) = %s: not a JSON string: %v", s, out, err)
				}
				if want := string([]rune(s)); got != want { // each invalid byte becomes U+FFFD
					t.Fatalf("appendString(%q) decodes to %q, want %q", s, got, want)
				}
				if !utf8.Valid(out) || strings.ContainsRune(string(out), '\u2028') || strings.ContainsRune(string(out), '\u2029') {
					t.Fatalf("appendString(%q) = %q: raw U+2028/U+2029 or invalid UTF-8", s, out)
				}
			}
		}
	}
}
