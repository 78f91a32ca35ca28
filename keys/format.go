package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"strings"
)

// The shape of a key gatekit generates: "sk-", the provider's prefix, "-",
// then secretChars base62 characters holding 32 random bytes and
// checksumChars holding the CRC-32 of everything before them.
//
//	sk-gk-3Vx9...Q1c0AbCd
//
// A secret scanner recognises a key by its prefix and can check its
// checksum offline; gatekit checks it before any lookup, so that a
// mistyped or made-up key costs no store call.
const (
	secretBytes   = 32
	secretChars   = 43 // ceil(256 / log2(62))
	checksumChars = 6  // ceil(32 / log2(62))
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// DefaultPrefix names the provider in generated keys when Config.Prefix
// is empty: keys read "sk-gk-...".
const DefaultPrefix = "gk"

// Digest is the SHA-256 digest of a key: all a store keeps of it.
type Digest [sha256.Size]byte

// DigestOf returns the digest of key.
func DigestOf(key string) Digest { return sha256.Sum256([]byte(key)) }

// String writes d in hex, as `sha256sum` prints it.
func (d Digest) String() string { return fmt.Sprintf("%x", d[:]) }

// CheckPrefix returns an error unless p may name a provider in keys: 1 to
// 16 lowercase letters or digits.
func CheckPrefix(p string) error {
	if !validPrefix(p) {
		return fmt.Errorf("keys: prefix %q: want 1 to 16 lowercase letters or digits", p)
	}
	return nil
}

// validPrefix reports whether p may name a provider in keys.
func validPrefix(p string) bool {
	if p == "" || len(p) > 16 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Generate returns a new key with the given provider prefix, reading its
// 32 random bytes from random (crypto/rand when nil).
func Generate(prefix string, random io.Reader) (string, error) {
	if !validPrefix(prefix) {
		return "", fmt.Errorf("keys: prefix %q: want 1 to 16 lowercase letters or digits", prefix)
	}
	if random == nil {
		random = rand.Reader
	}
	var b [secretBytes]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("keys: reading random bytes: %w", err)
	}
	head := "sk-" + prefix + "-" + encode62(new(big.Int).SetBytes(b[:]), secretChars)
	return head + checksum(head), nil
}

// WellFormed reports whether key has the shape of a key generated with
// prefix, checksum included. It reads key only; it never allocates.
func WellFormed(prefix, key string) bool {
	rest, ok := strings.CutPrefix(key, "sk-")
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, prefix)
	if !ok || len(rest) != 1+secretChars+checksumChars || rest[0] != '-' {
		return false
	}
	for i := 1; i < len(rest); i++ {
		if c := rest[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	n := len(key) - checksumChars
	sum := crcIEEE(key[:n])
	for i := len(key) - 1; i >= n; i-- {
		if key[i] != base62[sum%62] {
			return false
		}
		sum /= 62
	}
	return true
}

// Hint is what a listing shows of a key: its prefix and last four
// characters, "sk-gk-...AbCd", enough for its holder to recognise it.
func Hint(key string) string {
	if len(key) < 12 {
		return "..."
	}
	i := strings.LastIndexByte(key[:len(key)-4], '-')
	if i < 0 || i > 16 {
		return "..." + key[len(key)-4:]
	}
	return key[:i+1] + "..." + key[len(key)-4:]
}

// crcIEEE is crc32.ChecksumIEEE of s, reading the string in place (the
// library's function takes a []byte, which would put the key on the heap).
func crcIEEE(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

// checksum is the CRC-32 of head in checksumChars base62 characters.
func checksum(head string) string {
	return encode62(big.NewInt(int64(crc32.ChecksumIEEE([]byte(head)))), checksumChars)
}

// encode62 writes n in base62, most significant first, padded with zeros
// to width characters.
func encode62(n *big.Int, width int) string {
	out := make([]byte, width)
	d, m := new(big.Int), new(big.Int)
	base := big.NewInt(62)
	d.Set(n)
	for i := width - 1; i >= 0; i-- {
		d.DivMod(d, base, m)
		out[i] = base62[m.Int64()]
	}
	return string(out)
}
