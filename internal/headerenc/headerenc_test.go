package headerenc

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
)

// TestDecodeReadsWhatAppendWroteAndRefusesEveryTruncation: a header comes
// back equal, with the length of its encoding, whatever follows it; every
// shorter prefix of its encoding is refused as corrupt, without a panic.
func TestDecodeReadsWhatAppendWroteAndRefusesEveryTruncation(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "X-Many": {"a", "", "ccc"}, "X-None": {}}
	enc := string(Append(nil, h))
	if len(enc) > Size(h) {
		t.Fatalf("encoding of %d bytes, Size said at most %d", len(enc), Size(h))
	}
	got, n, err := Decode(enc + "the body")
	if err != nil || n != len(enc) || !reflect.DeepEqual(got, h) {
		t.Fatalf("Decode: %v, %d, %v; want %v, %d", got, n, err, h, len(enc))
	}
	got["X-Many"] = append(got["X-Many"], "added")
	if len(got["X-None"]) != 0 {
		t.Fatal("appending to one value slice wrote into another")
	}
	for i := range len(enc) {
		if _, _, err := Decode(enc[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Decode of the first %d of %d bytes: %v, want ErrCorrupt", i, len(enc), err)
		}
	}
	if got, n, err := Decode(string(Append(nil, nil))); got != nil || n != 1 || err != nil {
		t.Fatalf("an empty header: %v, %d, %v", got, n, err)
	}
}
