package idempotency

import (
	"encoding/binary"
	"net/http"
	"time"
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
	// header is every header name, then its values, each as a uvarint
	// length and its bytes; a name is followed by the uvarint number of
	// its values.
	header string
	body   []byte
}

// keep returns r as a Memory keeps it, sharing nothing with r.
func keep(r *Record) keptRecord {
	n := 0
	for name, values := range r.Header {
		n += 2*binary.MaxVarintLen64 + len(name)
		for _, v := range values {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	b := make([]byte, 0, n)
	for name, values := range r.Header {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	var body []byte
	if r.Body != nil {
		body = append(make([]byte, 0, len(r.Body)), r.Body...)
	}
	return keptRecord{fingerprint: r.Fingerprint, status: r.Status, stream: r.Stream, createdAt: r.CreatedAt, header: string(b), body: body}
}

// record returns the Record k keeps, a copy of its own but for the strings
// of its headers, which are immutable.
func (k *keptRecord) record() Record {
	r := Record{Fingerprint: k.fingerprint, Status: k.status, Stream: k.stream, CreatedAt: k.createdAt}
	if k.body != nil {
		r.Body = append(make([]byte, 0, len(k.body)), k.body...)
	}
	if k.header == "" {
		return r
	}
	// Two passes: count, then slice every value out of one backing array,
	// as http.Header.Clone does.
	s, names, total := k.header, 0, 0
	for len(s) > 0 {
		_, s = next(s)
		var nv uint64
		nv, s = uvarint(s)
		for range nv {
			_, s = next(s)
		}
		names++
		total += int(nv)
	}
	r.Header = make(http.Header, names)
	values := make([]string, total)
	s = k.header
	for len(s) > 0 {
		var name string
		name, s = next(s)
		var nv uint64
		nv, s = uvarint(s)
		vs := values[:nv:nv]
		values = values[nv:]
		for i := range vs {
			vs[i], s = next(s)
		}
		r.Header[name] = vs
	}
	return r
}

// uvarint reads a uvarint from the front of s, which keep wrote.
func uvarint(s string) (uint64, string) {
	var v uint64
	for shift := 0; ; shift += 7 {
		c := s[0]
		s = s[1:]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, s
		}
	}
}

// next reads a length-prefixed string from the front of s.
func next(s string) (string, string) {
	n, s := uvarint(s)
	return s[:n], s[n:]
}
