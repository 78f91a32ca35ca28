package errors

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
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

func TestPlainWord(t *testing.T) {
	if !plainWord("abcdefgh") || !plainWord(" ~!#$%&'") || !plainWord("\x7f1234567") {
		t.Fatal("plain ASCII reported as needing care")
	}
	for c := 0; c < 256; c++ {
		plain := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
		for pos := 0; pos < 8; pos++ {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			if got := plainWord(string(w)); got != plain {
				t.Fatalf("plainWord with byte %#x at %d = %v, want %v", c, pos, got, plain)
			}
		}
	}
}

// A template writes the same bytes as rendering the error, for every shape
// it accepts, whatever the request id.
func TestBodyTemplateRendersAsTheShape(t *testing.T) {
	errs := []*Error{
		RateLimitExceeded("Rate limit reached for key_1 on requests: limit 1 per minute. Please try again in 37s.", 36512*time.Millisecond),
		InvalidArgument("messages[0].role", "quote \" backslash \\ newline \n and \u2028"),
		New(CodeModelOverloaded, ""),
		RateLimitExceeded(templateHole, time.Second),
		RateLimitExceeded(`"`+templateHole+`"`, time.Second),
	}
	ids := []string{"req_0123456789abcdef01234567", "", `needs "escaping"`, templateHole}
	for _, s := range Shapes() {
		for i, e := range errs {
			tmpl, ok := s.Template(e)
			if !ok {
				if s != ShapeGateway && i < 3 {
					t.Errorf("%s: no template for error %d", s, i)
				}
				continue
			}
			if s == ShapeGateway {
				t.Fatalf("gateway shape (path and time per response) gave a template")
			}
			for _, id := range ids {
				m := Meta{RequestID: id, Path: "/v1/models"}
				want := s.AppendBody(nil, e, m)
				if got := tmpl.AppendBody(nil, m); !bytes.Equal(got, want) {
					t.Errorf("%s, error %d, id %q:\n got %s\nwant %s", s, i, id, got, want)
				}
				// Written whole, as a response, in parts or not.
				rec := httptest.NewRecorder()
				tmpl.Write(rec, httptest.NewRequest(http.MethodGet, "/v1/models", nil), e, m, nil)
				if got := rec.Body.Bytes(); !bytes.Equal(got, want) {
					t.Errorf("%s, error %d, id %q, written:\n got %s\nwant %s", s, i, id, got, want)
				}
			}
		}
	}
}

func BenchmarkBodyTemplate(b *testing.B) {
	e := RateLimitExceeded("Rate limit reached for key_1 on requests: limit 1 per minute. Please try again in 37s.", 36512*time.Millisecond)
	tmpl, _ := ShapeOpenAI.Template(e)
	m := Meta{RequestID: "req_0123456789abcdef01234567"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = tmpl.AppendBody(buf[:0], m)
	}
}

// A Space gives each value slice and byte of text once: responses written
// with one Space keep their values after later ones, and once its room is
// used up, writing still works, with the memory allocated.
func TestSpaceGivesItsRoomOnce(t *testing.T) {
	var sp Space
	hs := make([]http.Header, 5)
	for i := range hs {
		hs[i] = http.Header{}
		e := RateLimitExceeded("slow down", time.Duration(i+1)*1500*time.Millisecond)
		putHeaders(hs[i], e, "application/json", "req_"+strconv.Itoa(i), &sp)
	}
	for i, h := range hs {
		d := time.Duration(i+1) * 1500 * time.Millisecond
		want := map[string]string{
			"Retry-After":    strconv.FormatInt(Seconds(d), 10),
			"Retry-After-Ms": strconv.FormatInt(Milliseconds(d), 10),
			"X-Should-Retry": "true",
			"Content-Type":   "application/json",
			"X-Request-Id":   "req_" + strconv.Itoa(i),
		}
		for k, v := range want {
			if got := h[k]; len(got) != 1 || got[0] != v {
				t.Errorf("response %d: %s = %q, want [%s]", i, k, got, v)
			}
		}
	}
	if int(sp.nv) > len(sp.vals) || int(sp.nt) > len(sp.text) {
		t.Fatalf("the Space gave out %d values and %d bytes of %d and %d", sp.nv, sp.nt, len(sp.vals), len(sp.text))
	}
	if got := sp.String([]byte("more than the room left, however much that is, with words to spare...............................")); got[:9] != "more than" {
		t.Fatalf("String past the room: %q", got)
	}
	if v := sp.Values(len(sp.vals) + 1); len(v) != len(sp.vals)+1 {
		t.Fatalf("Values past the room: %d slices", len(v))
	}
}

// Writing an error response allocates nothing for its headers with a
// Space that has room, and once, for just what they need, without one.
func TestWriteAllocatesOnceWithoutRoom(t *testing.T) {
	e := RateLimitExceeded("slow down", 1500*time.Millisecond)
	h := http.Header{}
	spaces := make([]Space, 101)
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		clear(h)
		putHeaders(h, e, "application/json", "req_1", &spaces[i])
		i++
	}); n != 0 {
		t.Errorf("with a Space: %.0f allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		clear(h)
		putHeaders(h, e, "application/json", "req_1", nil)
	}); n != 1 {
		t.Errorf("without a Space: %.0f allocations, want 1", n)
	}
	full := new(Space)
	full.Values(len(full.vals))
	if n := testing.AllocsPerRun(100, func() {
		clear(h)
		putHeaders(h, e, "application/json", "req_1", full)
	}); n != 1 {
		t.Errorf("with a full Space: %.0f allocations, want 1", n)
	}
	if got := h["Retry-After-Ms"]; len(got) != 1 || got[0] != "1500" {
		t.Errorf("Retry-After-Ms = %q", got)
	}
}

// FuzzSpace runs a Space through any sequence of takes: no value slice or
// text it gave out is ever given again, so every earlier value keeps what
// was written to it, in the room or past it.
func FuzzSpace(f *testing.F) {
	f.Add([]byte{1, 5, 2, 30, 3, 9, 1, 4, 2, 90})
	f.Add([]byte{2, 86, 2, 1, 1, 9, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var sp Space
		type given struct {
			s    string
			want string
		}
		var texts []given
		var vals [][]string
		var wantVals [][]string
		for i := 0; i+1 < len(ops); i += 2 {
			n := int(ops[i+1])
			switch ops[i] % 3 {
			case 0: // Values
				v := sp.Values(n % 12)
				w := make([]string, len(v))
				for j := range v {
					v[j] = strconv.Itoa(i*100 + j)
					w[j] = v[j]
				}
				vals, wantVals = append(vals, v), append(wantVals, w)
			case 1: // String from a copy
				b := []byte(strings.Repeat(string(rune('a'+i%26)), n%100))
				texts = append(texts, given{sp.String(b), string(b)})
			default: // String built in place
				b := sp.Text()
				for j := 0; j < n%100; j++ {
					b = append(b, byte('A'+(i+j)%26))
				}
				want := string(b)
				texts = append(texts, given{sp.String(b), want})
			}
			for k, g := range texts {
				if g.s != g.want {
					t.Fatalf("op %d: text %d reads %q, was %q", i, k, g.s, g.want)
				}
			}
			for k := range vals {
				for j := range vals[k] {
					if vals[k][j] != wantVals[k][j] {
						t.Fatalf("op %d: value %d/%d reads %q, was %q", i, k, j, vals[k][j], wantVals[k][j])
					}
				}
			}
		}
	})
}
