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
	"github.com/gatekit/gatekit/internal/wire"
)

// A record is stored as one binary value:
//
//	version  byte, recordVersion
//	flags    byte, flagStream | flagCreatedAt
//	status   varint
//	created  varint Unix seconds, uvarint nanoseconds (if flagCreatedAt)
//	headers  as wire.AppendHeader encodes them
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
	b = wire.AppendHeader(b, r.Header)
	return append(b, r.Body...)
}

// Size returns an upper bound of the length of r's encoding.
func Size(r *idempotency.Record) int {
	return 2 + 3*binary.MaxVarintLen64 + wire.HeaderSize(r.Header) + len(r.Body)
}

// Decode decodes a record encoded by Append, giving it fingerprint. Its
// body is a copy; its header names and values are substrings of s.
func Decode(s, fingerprint string) (*idempotency.Record, error) {
	r := wire.NewReader(s)
	if r.Byte() != recordVersion {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	flags := r.Byte()
	rec := &idempotency.Record{Fingerprint: fingerprint, Stream: flags&flagStream != 0}
	rec.Status = int(r.Varint())
	if flags&flagCreatedAt != 0 {
		sec, nsec := r.Varint(), r.Uvarint()
		if nsec >= 1e9 {
			return nil, fmt.Errorf("%w: nanoseconds %d", errCorrupt, nsec)
		}
		rec.CreatedAt = time.Unix(sec, int64(nsec))
	}
	rec.Header = r.Header()
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if body := r.Rest(); body != "" {
		rec.Body = []byte(body)
	}
	return rec, nil
}
