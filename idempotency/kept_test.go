package idempotency

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

// TestAKeptRecordComesBackWholeAndApart: a record kept by a Memory comes
// back equal, headers with many values, none, and an empty body included,
// and shares nothing a caller could change with what the Memory keeps.
func TestAKeptRecordComesBackWholeAndApart(t *testing.T) {
	for _, rec := range []Record{
		{},
		{Fingerprint: "f", Status: 201, Body: []byte{}, CreatedAt: time.Unix(1, 2).UTC()},
		{Status: 200, Stream: true, Body: []byte("data: 1\n\n"), Header: http.Header{
			"Content-Type": {"text/event-stream"},
			"X-Many":       {"a", "", "ccc"},
			"X-None":       {},
			"X-Long":       {string(make([]byte, 300))},
		}},
	} {
		k := keep(&rec)
		got := k.record()
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("kept %+v, got back %+v", rec, got)
		}
		if len(got.Body) > 0 {
			got.Body[0] = 'X'
		}
		for name := range got.Header {
			got.Header[name] = append(got.Header[name], "added")
		}
		if got.Header != nil {
			got.Header.Set("X-New", "1")
		}
		if again := k.record(); !reflect.DeepEqual(again, rec) {
			t.Fatalf("changing a record given out changed the kept one: %+v, want %+v", again, rec)
		}
	}
}
