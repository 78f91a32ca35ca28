package idemrecord

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/idempotencytest"
)

func TestRecordEncodingRoundTrips(t *testing.T) {
	for name, rec := range map[string]idempotency.Record{
		"zero":     {},
		"negative": {Status: -1, CreatedAt: time.Unix(-62135596800, 0)},
		"full": {Status: 299, Stream: true, Body: []byte("data: x\n\n\x00\xff"),
			Header:    http.Header{"A": {"1", "", "3"}, "Empty": {}, "Nil": nil, "": {"no name"}},
			CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)},
	} {
		blob := Append(nil, &rec)
		if n := Size(&rec); len(blob) > n {
			t.Errorf("%s: encoding is %d bytes, more than Size %d", name, len(blob), n)
		}
		got, err := Decode(string(blob), "fp")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rec.Fingerprint = "fp"
		if diff := idempotencytest.DiffRecords(got, &rec); diff != "" {
			t.Errorf("%s: %s", name, diff)
		}
	}
}

func TestDecodeRejectsTruncatedRecords(t *testing.T) {
	rec := idempotency.Record{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, CreatedAt: time.Unix(1, 2)}
	blob := Append(nil, &rec)
	// Every cut before the body is an error, never a panic or a record.
	for n := range len(blob) {
		if got, err := Decode(string(blob[:n]), "fp"); err == nil {
			t.Fatalf("%d of %d bytes decoded as %+v", n, len(blob), got)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(string(Append(nil, &idempotency.Record{Status: 200, Body: []byte("x"),
		Header: http.Header{"A": {"b"}}, CreatedAt: time.Unix(5, 6)})))
	f.Add("\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := Decode(s, "fp")
		if err != nil {
			return
		}
		// What decodes re-encodes to a record that decodes the same.
		again, err := Decode(string(Append(nil, rec)), "fp")
		if err != nil {
			t.Fatalf("re-encoding of %+v does not decode: %v", rec, err)
		}
		if diff := idempotencytest.DiffRecords(again, rec); diff != "" {
			t.Fatalf("re-encoding changed the record: %s", diff)
		}
	})
}
