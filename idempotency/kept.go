package idempotency

import (
	"time"

	"github.com/gatekit/gatekit/internal/wire"
)

// keptRecord is a Record as a Memory keeps it: its headers encoded in one
// string, so that a Memory holding many records holds few objects for the
// garbage collector to trace (a header map is a dozen of them), which
// keeps its collections short. Nothing in it is modified once made.
type keptRecord struct {
	fingerprint string
	status      int
	stream      bool
	createdAt   time.Time
	// header is the headers as wire.AppendHeader encodes them.
	header string
	body   []byte
}

// keep returns r as a Memory keeps it, sharing nothing with r.
func keep(r *Record) keptRecord {
	var body []byte
	if r.Body != nil {
		body = append(make([]byte, 0, len(r.Body)), r.Body...)
	}
	return keptRecord{fingerprint: r.Fingerprint, status: r.Status, stream: r.Stream, createdAt: r.CreatedAt,
		header: string(wire.AppendHeader(make([]byte, 0, wire.HeaderSize(r.Header)), r.Header)), body: body}
}

// record returns the Record k keeps, sharing no memory with k.
func (k *keptRecord) record() Record {
	r := Record{Fingerprint: k.fingerprint, Status: k.status, Stream: k.stream, CreatedAt: k.createdAt}
	if k.body != nil {
		r.Body = append(make([]byte, 0, len(k.body)), k.body...)
	}
	// keep wrote the encoding: it cannot fail.
	r.Header = wire.NewReader(k.header).Header()
	return r
}
