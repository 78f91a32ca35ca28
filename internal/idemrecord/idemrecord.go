// Package idemrecord is the binary form in which the Redis stores keep an
// idempotency.Record: the idempotency store, and the admission store when
// it begins and completes idempotent requests with their reservations.
package idemrecord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatekit/gatekit/idempotency"
)

// A record is stored as one binary value:
//
//	version  byte, recordVersion
//	flags    byte, flagStream | flagCreatedAt
//	status   varint
//	created  varint Unix seconds, uvarint nanoseconds (if flagCreatedAt)
//	headers  uvarint count, then for each name: uvarint length, bytes,
//	         uvarint value count, then for each value: uvarint length, bytes
//	body     the remaining bytes
//
// The fingerprint is stored beside it, in the entry's own field.
const recordVersion = 1

const (
	flagStream = 1 << iota
	flagCreatedAt
)

var errCorrupt = errors.New("corrupt record")

// Append appends the encoding of r to b.
func Append(b []byte, r *idempotency.Record) []byte {
	var flags byte
	if r.Stream {
		flags |= flagStream
	}
	if !r.CreatedAt.IsZero() {
		flags |= flagCreatedAt
	}
	b = append(b, recordVersion, flags)
	b = binary.AppendVarint(b, int64(r.Status))
	if flags&flagCreatedAt != 0 {
		b = binary.AppendVarint(b, r.CreatedAt.Unix())
		b = binary.AppendUvarint(b, uint64(r.CreatedAt.Nanosecond()))
	}
	b = binary.AppendUvarint(b, uint64(len(r.Header)))
	for name, values := range r.Header {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = appendString(b, v)
		}
	}
	return append(b, r.Body...)
}

// Size returns an upper bound of the length of r's encoding.
func Size(r *idempotency.Record) int {
	n := 2 + 3*binary.MaxVarintLen64 + len(r.Body)
	for name, values := range r.Header {
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

// Decode decodes a record encoded by Append, giving it
// fingerprint. The record shares no memory with s; all its header names and
// values share one allocation.
func Decode(s, fingerprint string) (*idempotency.Record, error) {
	d := decoder{s: s}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	flags := d.byte()
	rec := &idempotency.Record{Fingerprint: fingerprint, Stream: flags&flagStream != 0}
	rec.Status = int(d.varint())
	if flags&flagCreatedAt != 0 {
		sec, nsec := d.varint(), d.uvarint()
		if nsec >= 1e9 {
			return nil, fmt.Errorf("%w: nanoseconds %d", errCorrupt, nsec)
		}
		rec.CreatedAt = time.Unix(sec, int64(nsec))
	}

	// First pass: check the headers and count their values.
	names := d.count()
	start := d.off
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
		return nil, d.err
	}
	// Second pass, over one copy of the header bytes: build the header.
	if names > 0 {
		hd := decoder{s: strings.Clone(s[start:d.off])}
		all := make([]string, values)
		rec.Header = make(http.Header, names)
		for range names {
			name := hd.string()
			n := hd.count()
			var vs []string
			if n > 0 {
				vs = all[:n:n]
				all = all[n:]
				for i := range vs {
					vs[i] = hd.string()
				}
			}
			rec.Header[name] = vs
		}
	}
	if d.off < len(s) {
		rec.Body = []byte(s[d.off:])
	}
	return rec, nil
}

// decoder reads an encoded record, recording the first error and returning
// zero values after it.
type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s at byte %d", errCorrupt, what, d.off)
	}
	d.off = len(d.s)
}

func (d *decoder) byte() byte {
	if d.off >= len(d.s) {
		d.fail("header")
		return 0
	}
	d.off++
	return d.s[d.off-1]
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

func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
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

func (d *decoder) skipString() {
	n := d.count()
	d.off += n
}

func (d *decoder) string() string {
	n := d.count()
	v := d.s[d.off : d.off+n]
	d.off += n
	return v
}
