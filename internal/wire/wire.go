// Package wire is the varint-framed binary form shared by gatekit's encoded
// idempotency records (internal/idemrecord, and idempotency.Memory's compact
// records): a Reader for their fields, and the encoding of an http.Header:
// a uvarint count of names, then for each name its uvarint length and
// bytes, a uvarint count of values, and each value's uvarint length and
// bytes.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
)

// ErrCorrupt is wrapped by every error of a Reader.
var ErrCorrupt = errors.New("corrupt encoding")

// AppendHeader appends the encoding of h to b.
func AppendHeader(b []byte, h http.Header) []byte {
	b = binary.AppendUvarint(b, uint64(len(h)))
	for name, values := range h {
		b = AppendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = AppendString(b, v)
		}
	}
	return b
}

// HeaderSize returns an upper bound of the length of h's encoding.
func HeaderSize(h http.Header) int {
	n := binary.MaxVarintLen64
	for name, values := range h {
		n += 2*binary.MaxVarintLen64 + len(name)
		for _, v := range values {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	return n
}

// AppendString appends s to b, its uvarint length first.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Reader reads an encoding from a string, keeping the first error and
// returning zero values after it. Its zero value is not usable: use
// NewReader.
type Reader struct {
	s   string
	off int
	err error
}

// NewReader returns a Reader of s.
func NewReader(s string) *Reader { return &Reader{s: s} }

// Err returns the first error met, wrapping ErrCorrupt, or nil.
func (r *Reader) Err() error { return r.err }

// Rest returns what is left unread.
func (r *Reader) Rest() string { return r.s[r.off:] }

func (r *Reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated %s at byte %d", ErrCorrupt, what, r.off)
	}
	r.off = len(r.s)
}

// Byte reads a byte.
func (r *Reader) Byte() byte {
	if r.off >= len(r.s) {
		r.fail("byte")
		return 0
	}
	r.off++
	return r.s[r.off-1]
}

// Uvarint reads a uvarint.
func (r *Reader) Uvarint() uint64 {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.off >= len(r.s) {
			break
		}
		c := r.s[r.off]
		r.off++
		if c < 0x80 {
			if shift == 63 && c > 1 {
				break
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
	}
	r.fail("varint")
	return 0
}

// Varint reads a varint.
func (r *Reader) Varint() int64 {
	u := r.Uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a count of items that each take at least a byte, so that it
// can never exceed what is left.
func (r *Reader) count() int {
	n := r.Uvarint()
	if n > uint64(len(r.s)-r.off) {
		r.fail("count")
		return 0
	}
	return int(n)
}

// String reads a string written by AppendString: a substring of the
// Reader's (strings never change).
func (r *Reader) String() string {
	n := r.count()
	v := r.s[r.off : r.off+n]
	r.off += n
	return v
}

func (r *Reader) skipString() { r.off += r.count() }

// Header reads a header written by AppendHeader; nil for one with no
// names. Its names and values are substrings of the Reader's string, and
// its value slices share one array, each slice clipped so that appending
// to one never writes into another.
func (r *Reader) Header() http.Header {
	// First pass: check the encoding and count the values.
	start := r.off
	names := r.count()
	values := 0
	for range names {
		r.skipString()
		n := r.count()
		values += n
		for range n {
			r.skipString()
		}
	}
	if r.err != nil || names == 0 {
		return nil
	}
	end := r.off
	// Second pass: build the header.
	r.off = start
	r.count()
	all := make([]string, values)
	h := make(http.Header, names)
	for range names {
		name := r.String()
		n := r.count()
		vs := all[:n:n]
		all = all[n:]
		for i := range vs {
			vs[i] = r.String()
		}
		h[name] = vs
	}
	r.off = end
	return h
}
