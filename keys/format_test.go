package keys

import (
	"hash/crc32"
	"strings"
	"testing"
)

func TestGeneratedKeysAreWellFormedAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := Generate("acme", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "sk-acme-") || len(k) != len("sk-acme-")+secretChars+checksumChars {
			t.Fatalf("key %q: wrong shape", k)
		}
		if !WellFormed("acme", k) {
			t.Fatalf("key %q: not well formed", k)
		}
		if seen[k] {
			t.Fatalf("key %q generated twice", k)
		}
		seen[k] = true
	}
}

func TestAChangedCharacterFailsTheChecksum(t *testing.T) {
	k, err := Generate(DefaultPrefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := len("sk-gk-"); i < len(k); i++ {
		b := []byte(k)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		if WellFormed(DefaultPrefix, string(b)) {
			t.Fatalf("changing character %d of %q still passes", i, k)
		}
	}
	for _, bad := range []string{"", "sk-", "sk-gk-", "sk-other-" + k[6:], k + "x", k[:len(k)-1], "Bearer " + k} {
		if WellFormed(DefaultPrefix, bad) {
			t.Errorf("%q passes", bad)
		}
	}
	if _, err := Generate("Bad Prefix", nil); err == nil {
		t.Error("a prefix with a space and capitals was accepted")
	}
}

func TestHintShowsPrefixAndLastFour(t *testing.T) {
	k, _ := Generate(DefaultPrefix, nil)
	if h := Hint(k); h != "sk-gk-..."+k[len(k)-4:] {
		t.Fatalf("hint %q", h)
	}
}

func TestCRCMatchesTheLibrary(t *testing.T) {
	for _, s := range []string{"", "a", "sk-gk-0123456789", strings.Repeat("xyz", 40)} {
		if got, want := crcIEEE(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("%q: %x, want %x", s, got, want)
		}
	}
}
