package wire

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
)

// TestHeaderReadsWhatAppendHeaderWroteAndRefusesEveryTruncation: a header
// comes back equal, the rest left unread, whatever follows it; every
// shorter prefix of its encoding is refused as corrupt, without a panic.
func TestHeaderReadsWhatAppendHeaderWroteAndRefusesEveryTruncation(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "X-Many": {"a", "", "ccc"}, "X-None": {}}
	enc := string(AppendHeader(nil, h))
	if len(enc) > HeaderSize(h) {
		t.Fatalf("encoding of %d bytes, HeaderSize said at most %d", len(enc), HeaderSize(h))
	}
	r := NewReader(enc + "the body")
	got := r.Header()
	if r.Err() != nil || r.Rest() != "the body" || !reflect.DeepEqual(got, h) {
		t.Fatalf("Header: %v, rest %q, %v; want %v", got, r.Rest(), r.Err(), h)
	}
	got["X-Many"] = append(got["X-Many"], "added")
	if len(got["X-None"]) != 0 {
		t.Fatal("appending to one value slice wrote into another")
	}
	for i := range len(enc) {
		r := NewReader(enc[:i])
		if r.Header(); !errors.Is(r.Err(), ErrCorrupt) {
			t.Fatalf("Header of the first %d of %d bytes: %v, want ErrCorrupt", i, len(enc), r.Err())
		}
	}
	if r := NewReader(string(AppendHeader(nil, nil))); r.Header() != nil || r.Err() != nil || r.Rest() != "" {
		t.Fatalf("an empty header: %v, rest %q", r.Err(), r.Rest())
	}
}
