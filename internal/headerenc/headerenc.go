// Package headerenc is the binary form of an http.Header inside gatekit's
// encoded idempotency records (internal/idemrecord, and idempotency.Memory's
// compact records): a uvarint count of names, then for each name its
// uvarint length and bytes, a uvarint count of values, and each value's
// uvarint length and bytes.
package headerenc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
)

// ErrCorrupt is wrapped by the errors of Decode.
var ErrCorrupt = errors.New("corrupt header encoding")

// Append appends the encoding of h to b.
func Append(b []byte, h http.Header) []byte {
	b = binary.AppendUvarint(b, uint64(len(h)))
	for name, values := range h {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = appendString(b, v)
		}
	}
	return b
}

// Size returns an upper bound of the length of h's encoding.
func Size(h http.Header) int {
	n := binary.MaxVarintLen64
	for name, values := range h {
		n += 2*binary.MaxVarintLen64 + len(name)
		for _, v := range values {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode reads the header encoded at the front of s and returns it and the
// length of its encoding; a nil header for one with no names. Its names
// and values are substrings of s (strings never change), and its value
// slices share one array, each slice clipped so that appending to one never
// writes into another.
func Decode(s string) (http.Header, int, error) {
	// First pass: check the encoding and count the values.
	d := decoder{s: s}
	names := d.count()
	values := 0
	for range names {
		d.skipString()
		n := d.count()
		values += n
		for range n {
			d.skipString()
		}
	}
	if d.err != nil {
		return nil, 0, d.err
	}
	end := d.off
	if names == 0 {
		return nil, end, nil
	}
	// Second pass: build the header.
	d = decoder{s: s[:end]}
	d.count()
	all := make([]string, values)
	h := make(http.Header, names)
	for range names {
		name := d.string()
		n := d.count()
		vs := all[:n:n]
		all = all[n:]
		for i := range vs {
			vs[i] = d.string()
		}
		h[name] = vs
	}
	return h, end, nil
}

// decoder reads an encoding, recording the first error and returning zero
// values after it.
type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s at byte %d", ErrCorrupt, what, d.off)
	}
	d.off = len(d.s)
}

func (d *decoder) uvarint() uint64 {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if d.off >= len(d.s) {
			break
		}
		c := d.s[d.off]
		d.off++
		if c < 0x80 {
			if shift == 63 && c > 1 {
				break
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
	}
	d.fail("varint")
	return 0
}

// count reads a count of items that each take at least a byte, so that it
// can never exceed what is left.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.off) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) skipString() { d.off += d.count() }

func (d *decoder) string() string {
	n := d.count()
	v := d.s[d.off : d.off+n]
	d.off += n
	return v
}
