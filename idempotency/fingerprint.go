package idempotency

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// Fingerprint returns the hex SHA-256 of a request's method, path and body:
// what Begin compares to tell a retry of a request from a different request
// reusing its key. path is whatever identifies the target for the caller,
// such as the URL's path, or its path and query. Each part is
// length-prefixed, so no two different requests share a fingerprint by
// splitting the same bytes differently.
func Fingerprint(method, path string, body []byte) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(method)))
	h.Write(n[:])
	h.Write([]byte(method))
	binary.BigEndian.PutUint64(n[:], uint64(len(path)))
	h.Write(n[:])
	h.Write([]byte(path))
	h.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}
