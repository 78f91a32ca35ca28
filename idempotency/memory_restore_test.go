package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/idempotencytest"
)

func TestMemoryOnCompleteReportsTheRecordAsKept(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	type told struct {
		key     string
		rec     idempotency.Record
		expires time.Time
	}
	var got []told
	m := newMemory(t, &idempotency.MemoryConfig{Now: clock.Now, OnComplete: func(key string, rec idempotency.Record, expires time.Time) {
		got = append(got, told{key, rec, expires})
	}})
	ctx := context.Background()
	b := mustBegin(t, m, "k", time.Minute, idempotency.Started)
	clock.Advance(1500 * time.Microsecond)
	rec := idempotency.Record{Status: 201, Header: http.Header{"X-A": {"1"}}, Body: []byte("body"), Fingerprint: "ignored"}
	if err := m.Complete(ctx, "k", b.Token, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	rec.Body[0] = 'B' // the caller's buffer is not the record told
	// Neither an abort nor a lost lease is told.
	b = mustBegin(t, m, "other", time.Minute, idempotency.Started)
	m.Abort(ctx, "other", b.Token)
	m.Complete(ctx, "other", b.Token, rec, time.Hour)

	if len(got) != 1 {
		t.Fatalf("OnComplete told %d times, want 1", len(got))
	}
	want := rec
	want.Body = []byte("body")
	want.Fingerprint = idempotencytest.Fingerprint("k")
	want.CreatedAt = clock.Now()
	if diff := idempotencytest.DiffRecords(&got[0].rec, &want); diff != "" || got[0].key != "k" {
		t.Fatalf("OnComplete told %q: %s", got[0].key, diff)
	}
	// Lifetimes count from the millisecond of the call.
	if wantExp := idempotencytest.Epoch().Add(time.Hour + time.Millisecond).Truncate(time.Millisecond); !got[0].expires.Equal(wantExp) {
		t.Fatalf("expires %v, want %v", got[0].expires, wantExp)
	}
}

func TestMemoryRestorePutsBackCompletedRecords(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	told := 0
	m := newMemory(t, &idempotency.MemoryConfig{Now: clock.Now, OnComplete: func(string, idempotency.Record, time.Time) { told++ }})
	now := clock.Now()
	rec := func(key string) idempotency.Record {
		return idempotency.Record{Fingerprint: idempotencytest.Fingerprint(key), Status: 200, Body: []byte(key), CreatedAt: now.Add(-time.Hour)}
	}
	if !m.Restore("a", rec("a"), now.Add(time.Minute)) {
		t.Fatal("Restore of a live record refused")
	}
	if m.Restore("old", rec("old"), now) {
		t.Fatal("Restore of a record expiring now accepted")
	}
	mustBegin(t, m, "busy", time.Minute, idempotency.Started)
	if m.Restore("busy", rec("busy"), now.Add(time.Minute)) || m.Restore("a", rec("x"), now.Add(time.Hour)) {
		t.Fatal("Restore replaced a live entry")
	}

	got := mustBegin(t, m, "a", time.Minute, idempotency.Completed)
	want := rec("a")
	if diff := idempotencytest.DiffRecords(got.Record, &want); diff != "" {
		t.Fatalf("replay of a restored record: %s", diff)
	}
	mustBegin(t, m, "old", time.Minute, idempotency.Started)
	mustBegin(t, m, "busy", time.Minute, idempotency.InProgress)
	clock.Advance(time.Minute)
	mustBegin(t, m, "a", time.Minute, idempotency.Started)
	if told != 0 {
		t.Fatalf("Restore told OnComplete %d times", told)
	}
}

func TestMemoryRestoreOutOfOrderKeepsExpiryOrder(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	m := newMemory(t, &idempotency.MemoryConfig{MaxEntries: oneShard, Now: clock.Now})
	now := clock.Now()
	// Records expiring in 1..oneShard minutes, restored in a scrambled
	// order: a full shard evicts the one expiring first.
	for i := range oneShard {
		n := (i*37)%oneShard + 1
		key := fmt.Sprint(n)
		if !m.Restore(key, idempotency.Record{Fingerprint: idempotencytest.Fingerprint(key), Status: 200}, now.Add(time.Duration(n)*time.Minute)) {
			t.Fatalf("Restore(%s) refused", key)
		}
	}
	mustBegin(t, m, "new", time.Minute, idempotency.Started)
	mustBegin(t, m, "1", time.Minute, idempotency.Started) // evicted
	for n := 3; n <= oneShard; n++ {
		mustBegin(t, m, fmt.Sprint(n), time.Minute, idempotency.Completed)
	}
	// Expired records are swept in order too.
	clock.Advance(10*time.Minute + time.Millisecond)
	for n := 11; n <= oneShard; n++ {
		mustBegin(t, m, fmt.Sprint(n), time.Minute, idempotency.Completed)
	}
	mustBegin(t, m, "10", time.Minute, idempotency.Started)
}
