// Package idemrecord is the binary form in which the Redis stores keep an
// idempotency.Record: the idempotency store, and the admission store when
// it begins and completes idempotent requests with their reservations.
package idemrecord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/internal/headerenc"
)

// A record is stored as one binary value:
//
//	version  byte, recordVersion
//	flags    byte, flagStream | flagCreatedAt
//	status   varint
//	created  varint Unix seconds, uvarint nanoseconds (if flagCreatedAt)
//	headers  as internal/headerenc encodes them
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
	b = headerenc.Append(b, r.Header)
	return append(b, r.Body...)
}

// Size returns an upper bound of the length of r's encoding.
func Size(r *idempotency.Record) int {
	return 2 + 3*binary.MaxVarintLen64 + headerenc.Size(r.Header) + len(r.Body)
}

// Decode decodes a record encoded by Append, giving it fingerprint. Its
// body is a copy; its header names and values are substrings of s.
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
	if d.err != nil {
		return nil, d.err
	}
	h, n, err := headerenc.Decode(s[d.off:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	rec.Header = h
	d.off += n
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
