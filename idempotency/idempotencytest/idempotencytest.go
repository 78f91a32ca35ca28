// Package idempotencytest is the conformance suite every idempotency.Store
// in gatekit passes, and the fake clock it drives them with.
//
// A store's test calls Run with a constructor; Run then replays sequences of
// Begin, Complete and Abort at fixed instants and checks every answer
// exactly: states, errors, and replayed records byte for byte. Lifetimes
// follow the millisecond rule documented on idempotency.Store.
package idempotencytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/internal/testclock"
)

// Clock is a fake clock, safe for concurrent use, that moves only when told:
// c.Now reads it (pass c.Now where a clock is expected), c.Set(t) moves it to
// t and c.Advance(d) moves it forward by d.
type Clock = testclock.Clock

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// Epoch returns the instant at which Run starts each clock. It is a quarter
// of a millisecond past a whole second, so that a store rounding the time up
// rather than down expires entries a millisecond early, which Run notices.
func Epoch() time.Time { return time.Date(2030, time.January, 1, 0, 0, 0, 250_000, time.UTC) }

// NewStore makes the Store under test. now is the clock it must use; each
// call must return a Store that shares no entries with those returned before
// (for a shared backend, use a fresh key prefix).
type NewStore func(t *testing.T, now func() time.Time) idempotency.Store

type op uint8

const (
	begin op = iota
	complete
	abort
)

func (o op) String() string {
	return [...]string{"Begin", "Complete", "Abort"}[o]
}

// Tokens presented in steps: the token of an earlier Begin step is
// referenced by that step's index; these stand for tokens no Begin gave.
const (
	madeUp  = -1 // a token never issued
	garbled = -2 // the token of the key's latest Started Begin, changed
	empty   = -3 // ""
)

// step is one call at an instant (measured from Epoch()) and what it must
// answer.
type step struct {
	at  time.Duration
	op  op
	key string
	fp  string        // Begin
	d   time.Duration // Begin's lease, Complete's ttl
	tok int           // Complete, Abort: the index of the Begin step whose token to present
	rec *idempotency.Record
	// Begin: the state; for Completed, wantRec is the record.
	want    idempotency.State
	wantRec *idempotency.Record
	// Complete, Abort: nil or the error wanted (compared with errors.Is).
	wantErr error
}

const (
	ms = time.Millisecond
	s  = time.Second
	h  = time.Hour
)

func b(at time.Duration, key, fp string, lease time.Duration, want idempotency.State) step {
	return step{at: at, op: begin, key: key, fp: fp, d: lease, want: want}
}

func replay(at time.Duration, key, fp string, want *idempotency.Record) step {
	return step{at: at, op: begin, key: key, fp: fp, d: time.Minute, want: idempotency.Completed, wantRec: want}
}

func c(at time.Duration, key string, tok int, rec *idempotency.Record, ttl time.Duration, wantErr error) step {
	return step{at: at, op: complete, key: key, tok: tok, rec: rec, d: ttl, wantErr: wantErr}
}

func a(at time.Duration, key string, tok int, wantErr error) step {
	return step{at: at, op: abort, key: key, tok: tok, wantErr: wantErr}
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("Sequences", func(t *testing.T) { runSequences(t, newStore) })
	t.Run("RecordsRoundTripExactly", func(t *testing.T) { runRoundTrip(t, newStore) })
	t.Run("RecordsAreCopies", func(t *testing.T) { runCopies(t, newStore) })
	t.Run("ConcurrentBeginsStartExactlyOne", func(t *testing.T) { runConcurrentBegin(t, newStore) })
	t.Run("ConcurrentKeysAreIndependent", func(t *testing.T) { runConcurrentKeys(t, newStore) })
	t.Run("InvalidDurationsAreErrors", func(t *testing.T) { runInvalid(t, newStore) })
}

func runSequences(t *testing.T, newStore NewStore) {
	const (
		Started    = idempotency.Started
		InProgress = idempotency.InProgress
		Completed  = idempotency.Completed
		Mismatch   = idempotency.Mismatch
	)
	lost := idempotency.ErrLeaseLost
	ok := error(nil)
	fp1, fp2 := Fingerprint("1"), Fingerprint("2")
	r1 := &idempotency.Record{
		Status: 200,
		Header: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_1"}},
		Body:   []byte(`{"id":"chatcmpl-1"}`),
	}
	r2 := &idempotency.Record{Status: 201, Header: http.Header{"Location": {"/v1/files/2"}}, Body: []byte("second")}
	with := func(r *idempotency.Record, fp string, at time.Duration) *idempotency.Record {
		c := *r
		c.Fingerprint = fp
		c.CreatedAt = Epoch().Add(at)
		return &c
	}
	stamped := func(r *idempotency.Record, at time.Duration) *idempotency.Record {
		c := *r
		c.CreatedAt = Epoch().Add(at)
		return &c
	}

	cases := []struct {
		name  string
		steps []step
	}{
		{"FirstBeginStarts", []step{
			b(0, "k", fp1, time.Minute, Started),
		}},
		{"DuplicateWhileRunningIsInProgress", []step{
			b(0, "k", fp1, time.Minute, Started),
			b(0, "k", fp1, time.Minute, InProgress),
			b(59*s, "k", fp1, time.Hour, InProgress),
		}},
		{"DifferentFingerprintWhileRunningIsMismatch", []step{
			b(0, "k", fp1, time.Minute, Started),
			b(1*s, "k", fp2, time.Minute, Mismatch),
			b(2*s, "k", fp1, time.Minute, InProgress),
		}},
		{"CompleteThenReplay", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(5*s, "k", 0, stamped(r1, 5*s), 24*h, ok),
			replay(6*s, "k", fp1, with(r1, fp1, 5*s)),
			replay(7*s, "k", fp1, with(r1, fp1, 5*s)),
		}},
		{"DifferentFingerprintAfterCompletionIsMismatch", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(0, "k", 0, stamped(r1, 0), 24*h, ok),
			b(1*s, "k", fp2, time.Minute, Mismatch),
			replay(2*s, "k", fp1, with(r1, fp1, 0)),
		}},
		{"CompleteKeepsBeginsFingerprint", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(0, "k", 0, with(r1, fp2, 0), 24*h, ok),
			replay(1*s, "k", fp1, with(r1, fp1, 0)),
			b(1*s, "k", fp2, time.Minute, Mismatch),
		}},
		{"CompleteSetsAZeroCreatedAt", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(1500*ms, "k", 0, r1, 24*h, ok),
			replay(2*s, "k", fp1, with(r1, fp1, 1500*ms)),
		}},
		{"RecordExpiresAfterItsTTL", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(10*s, "k", 0, stamped(r1, 10*s), 24*h, ok),
			replay(10*s+24*h-ms, "k", fp1, with(r1, fp1, 10*s)),
			b(10*s+24*h, "k", fp2, time.Minute, Started),
			b(10*s+24*h, "k", fp2, time.Minute, InProgress),
		}},
		{"ReplaysDoNotExtendARecord", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(0, "k", 0, stamped(r1, 0), time.Hour, ok),
			replay(30*time.Minute, "k", fp1, with(r1, fp1, 0)),
			replay(time.Hour-ms, "k", fp1, with(r1, fp1, 0)),
			b(time.Hour, "k", fp1, time.Minute, Started),
		}},
		{"TTLRoundsUpToTheMillisecond", []step{
			b(0, "k", fp1, 1500*time.Microsecond, Started),
			b(1*ms, "k", fp1, time.Minute, InProgress),
			b(2*ms, "k", fp1, time.Minute, Started),
			c(2*ms, "k", 2, stamped(r1, 0), time.Nanosecond, ok),
			replay(2*ms, "k", fp1, with(r1, fp1, 0)),
			b(3*ms, "k", fp1, time.Minute, Started),
		}},
		{"LeaseExpiryFreesTheKey", []step{
			b(0, "k", fp1, 30*s, Started),
			b(30*s-ms, "k", fp1, 30*s, InProgress),
			b(30*s-ms, "k", fp2, 30*s, Mismatch),
			b(30*s, "k", fp2, 30*s, Started),
			b(30*s, "k", fp2, 30*s, InProgress),
			b(30*s, "k", fp1, 30*s, Mismatch),
		}},
		{"CompleteAfterLeaseExpiryIsLeaseLost", []step{
			b(0, "k", fp1, 10*s, Started),
			c(10*s, "k", 0, r1, 24*h, lost),
			b(10*s, "k", fp1, 10*s, Started),
		}},
		{"StaleCompleteLeavesTheNewOwnerAlone", []step{
			b(0, "k", fp1, 10*s, Started),
			b(10*s, "k", fp1, 10*s, Started),
			c(11*s, "k", 0, stamped(r1, 11*s), 24*h, lost),
			b(11*s, "k", fp1, 10*s, InProgress),
			c(12*s, "k", 1, stamped(r2, 12*s), 24*h, ok),
			replay(13*s, "k", fp1, with(r2, fp1, 12*s)),
			c(13*s, "k", 0, stamped(r1, 13*s), 24*h, lost),
			replay(14*s, "k", fp1, with(r2, fp1, 12*s)),
		}},
		{"StaleAbortLeavesTheNewOwnerAlone", []step{
			b(0, "k", fp1, 10*s, Started),
			b(10*s, "k", fp2, 10*s, Started),
			a(11*s, "k", 0, lost),
			b(11*s, "k", fp2, 10*s, InProgress),
			b(11*s, "k", fp1, 10*s, Mismatch),
			c(12*s, "k", 1, stamped(r2, 12*s), 24*h, ok),
			a(13*s, "k", 0, lost),
			replay(13*s, "k", fp2, with(r2, fp2, 12*s)),
		}},
		{"AbortFreesTheKey", []step{
			b(0, "k", fp1, time.Minute, Started),
			a(1*s, "k", 0, ok),
			b(1*s, "k", fp2, time.Minute, Started),
			a(2*s, "k", 2, ok),
			b(2*s, "k", fp1, time.Minute, Started),
		}},
		{"AbortOrCompleteAfterAbortIsLeaseLost", []step{
			b(0, "k", fp1, time.Minute, Started),
			a(0, "k", 0, ok),
			a(0, "k", 0, lost),
			c(0, "k", 0, r1, 24*h, lost),
			b(0, "k", fp1, time.Minute, Started),
		}},
		{"CompletedKeysCannotBeCompletedOrAbortedAgain", []step{
			b(0, "k", fp1, time.Minute, Started),
			c(0, "k", 0, stamped(r1, 0), 24*h, ok),
			c(1*s, "k", 0, stamped(r2, 1*s), 24*h, lost),
			a(1*s, "k", 0, lost),
			replay(2*s, "k", fp1, with(r1, fp1, 0)),
		}},
		{"ForeignTokensAreLeaseLost", []step{
			c(0, "absent", madeUp, r1, 24*h, lost),
			a(0, "absent", madeUp, lost),
			c(0, "absent", empty, r1, 24*h, lost),
			a(0, "absent", empty, lost),
			b(0, "absent", fp1, time.Minute, Started),
			c(0, "absent", madeUp, r1, 24*h, lost),
			a(0, "absent", madeUp, lost),
			c(0, "absent", garbled, r1, 24*h, lost),
			a(0, "absent", garbled, lost),
			c(0, "absent", empty, r1, 24*h, lost),
			a(0, "absent", empty, lost),
			b(0, "absent", fp1, time.Minute, InProgress),
			// A token is bound to its key.
			b(0, "other", fp1, time.Minute, Started),
			c(0, "other", 4, r1, 24*h, lost),
			a(0, "other", 4, lost),
			b(0, "other", fp1, time.Minute, InProgress),
		}},
		{"KeysAreIndependent", []step{
			b(0, "alice\x00k", fp1, time.Minute, Started),
			b(0, "bob\x00k", fp1, time.Minute, Started),
			b(0, "alice\x00k\x00", fp1, time.Minute, Started),
			b(0, "alice\x00", fp1, time.Minute, Started),
			b(0, "", fp1, time.Minute, Started),
			b(0, "{alice}", fp1, time.Minute, Started),
			b(0, "alice", fp1, time.Minute, Started),
			c(1*s, "bob\x00k", 1, stamped(r2, 1*s), 24*h, ok),
			b(1*s, "alice\x00k", fp1, time.Minute, InProgress),
			replay(1*s, "bob\x00k", fp1, with(r2, fp1, 1*s)),
			a(2*s, "", 4, ok),
			b(2*s, "", fp2, time.Minute, Started),
			b(2*s, "{alice}", fp2, time.Minute, Mismatch),
			b(2*s, strings.Repeat("k", 4096), fp1, time.Minute, Started),
			b(2*s, strings.Repeat("k", 4096), fp1, time.Minute, InProgress),
			b(2*s, strings.Repeat("k", 4095), fp1, time.Minute, Started),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := NewClock(Epoch())
			st := newStore(t, clock.Now)
			tokens := make([]string, len(tc.steps))
			latest := map[string]string{} // key -> token of its latest Started
			for i, sp := range tc.steps {
				clock.Set(Epoch().Add(sp.at))
				where := fmt.Sprintf("step %d: %v(%q) at +%v", i, sp.op, shorten(sp.key), sp.at)
				switch sp.op {
				case begin:
					got, err := st.Begin(context.Background(), sp.key, sp.fp, sp.d)
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					checkBegin(t, where, got, sp.want, sp.wantRec)
					tokens[i] = got.Token
					if got.State == idempotency.Started {
						latest[sp.key] = got.Token
					}
				case complete, abort:
					var tok string
					switch sp.tok {
					case madeUp:
						tok = "not-a-token-0123456789"
					case garbled:
						tok = latest[sp.key] + "0"
					case empty:
					default:
						tok = tokens[sp.tok]
					}
					var err error
					if sp.op == complete {
						err = st.Complete(context.Background(), sp.key, tok, *sp.rec, sp.d)
					} else {
						err = st.Abort(context.Background(), sp.key, tok)
					}
					if !errors.Is(err, sp.wantErr) || (err != nil && sp.wantErr == nil) {
						t.Fatalf("%s: err = %v, want %v", where, err, sp.wantErr)
					}
				}
			}
		})
	}
}

func checkBegin(t *testing.T, where string, got idempotency.Begin, want idempotency.State, wantRec *idempotency.Record) {
	t.Helper()
	if got.State != want {
		t.Fatalf("%s: %v, want %v", where, got.State, want)
	}
	switch {
	case want == idempotency.Started && got.Token == "":
		t.Fatalf("%s: Started with an empty Token", where)
	case want != idempotency.Started && got.Token != "":
		t.Fatalf("%s: %v with Token %q", where, got.State, got.Token)
	case want == idempotency.Completed && got.Record == nil:
		t.Fatalf("%s: Completed with no Record", where)
	case want != idempotency.Completed && got.Record != nil:
		t.Fatalf("%s: %v with a Record", where, got.State)
	}
	if wantRec != nil {
		if diff := DiffRecords(got.Record, wantRec); diff != "" {
			t.Fatalf("%s: replayed record differs: %s", where, diff)
		}
	}
}

// Fingerprint returns a fingerprint for test payload name, of the shape the
// middleware computes (hex SHA-256).
func Fingerprint(name string) string {
	return idempotency.Fingerprint("POST", "/v1/test", []byte(name))
}

// DiffRecords returns "" if got and want are the same record by the rule
// documented on idempotency.Record (nil and empty Header or Body are equal;
// CreatedAt is compared as an instant), and a description of the first
// difference otherwise.
func DiffRecords(got, want *idempotency.Record) string {
	switch {
	case got == nil || want == nil:
		if got != want {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
	case got.Fingerprint != want.Fingerprint:
		return fmt.Sprintf("Fingerprint %q, want %q", got.Fingerprint, want.Fingerprint)
	case got.Status != want.Status:
		return fmt.Sprintf("Status %d, want %d", got.Status, want.Status)
	case len(got.Header) != len(want.Header) || !maps.EqualFunc(got.Header, want.Header, slices.Equal):
		return fmt.Sprintf("Header %q, want %q", got.Header, want.Header)
	case !bytes.Equal(got.Body, want.Body):
		return fmt.Sprintf("Body (%d bytes) %q, want (%d bytes) %q", len(got.Body), shorten(string(got.Body)), len(want.Body), shorten(string(want.Body)))
	case got.Stream != want.Stream:
		return fmt.Sprintf("Stream %v, want %v", got.Stream, want.Stream)
	case !got.CreatedAt.Equal(want.CreatedAt):
		return fmt.Sprintf("CreatedAt %v, want %v", got.CreatedAt, want.CreatedAt)
	}
	return ""
}

func shorten(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%s...(%d bytes)", s[:64], len(s))
	}
	return s
}

// allBytes returns the 256 byte values, twice, in two orders.
func allBytes() []byte {
	b := make([]byte, 512)
	for i := range 256 {
		b[i] = byte(i)
		b[511-i] = byte(i)
	}
	return b
}

func runRoundTrip(t *testing.T, newStore NewStore) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	sse := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"\\u0000\"}}]}\r\n\r\n" +
		"data: [DONE]\n\n")
	records := []struct {
		name string
		rec  idempotency.Record
	}{
		{"AllByteValues", idempotency.Record{Status: 200, Body: allBytes(),
			Header: http.Header{"Content-Type": {"application/octet-stream"}}}},
		{"EmptyBody", idempotency.Record{Status: 204, Body: []byte{}}},
		{"NilBodyAndHeader", idempotency.Record{Status: 202}},
		{"Stream", idempotency.Record{Status: 200, Stream: true, Body: sse,
			Header: http.Header{"Content-Type": {"text/event-stream"}, "X-Request-Id": {"req_abc"}}}},
		{"EmptyStream", idempotency.Record{Status: 200, Stream: true,
			Header: http.Header{"Content-Type": {"text/event-stream"}}}},
		{"SeveralHeaderValues", idempotency.Record{Status: 201, Body: []byte("{}"),
			Header: http.Header{
				"Set-Cookie":    {"a=1", "b=2", ""},
				"X-Empty":       {""},
				"X-Binary":      {"\x00\xff{}\r"},
				"Content-Type":  {"application/json; charset=utf-8"},
				"lowercase-key": {"kept as given"},
			}}},
		{"ErrorStatus", idempotency.Record{Status: 500, Body: []byte(`{"error":{}}`)}},
		{"OneMebibyte", idempotency.Record{Status: 200, Body: big}},
		{"OldCreatedAt", idempotency.Record{Status: 200, Body: []byte("x"),
			CreatedAt: time.Date(1600, 2, 29, 23, 59, 59, 999_999_999, time.UTC)}},
		{"FarCreatedAt", idempotency.Record{Status: 200,
			CreatedAt: time.Date(2500, 1, 1, 0, 0, 0, 1, time.FixedZone("X", 3600))}},
		{"NanosecondCreatedAt", idempotency.Record{Status: 200,
			CreatedAt: Epoch().Add(123_456_789)}},
	}
	clock := NewClock(Epoch())
	st := newStore(t, clock.Now)
	ctx := context.Background()
	for _, r := range records {
		t.Run(r.name, func(t *testing.T) {
			fp := Fingerprint(r.name)
			got, err := st.Begin(ctx, r.name, fp, time.Minute)
			if err != nil || got.State != idempotency.Started {
				t.Fatalf("Begin: %v, %v", got.State, err)
			}
			if err := st.Complete(ctx, r.name, got.Token, r.rec, 24*h); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			want := r.rec
			want.Fingerprint = fp
			if want.CreatedAt.IsZero() {
				want.CreatedAt = clock.Now()
			}
			for range 2 {
				got, err = st.Begin(ctx, r.name, fp, time.Minute)
				if err != nil {
					t.Fatalf("replay: %v", err)
				}
				checkBegin(t, "replay", got, idempotency.Completed, &want)
			}
		})
	}
}

func runCopies(t *testing.T, newStore NewStore) {
	clock := NewClock(Epoch())
	st := newStore(t, clock.Now)
	ctx := context.Background()
	fp := Fingerprint("copies")
	got, err := st.Begin(ctx, "k", fp, time.Minute)
	if err != nil || got.State != idempotency.Started {
		t.Fatalf("Begin: %v, %v", got.State, err)
	}
	rec := idempotency.Record{
		Status:    200,
		Header:    http.Header{"Content-Type": {"application/json"}, "X-Multi": {"a", "b"}},
		Body:      []byte(`{"ok":true}`),
		CreatedAt: Epoch(),
	}
	want := rec
	want.Fingerprint = fp
	want.Header = rec.Header.Clone()
	want.Body = slices.Clone(rec.Body)
	if err := st.Complete(ctx, "k", got.Token, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The caller reuses its buffers after Complete...
	copy(rec.Body, "XXXXXXXXXXX")
	rec.Header["Content-Type"][0] = "text/plain"
	rec.Header.Set("X-Added", "1")

	// ...and modifies the record a replay gave it.
	first, err := st.Begin(ctx, "k", fp, time.Minute)
	if err != nil || first.Record == nil {
		t.Fatalf("replay: %+v, %v", first, err)
	}
	if diff := DiffRecords(first.Record, &want); diff != "" {
		t.Fatalf("the caller's changes after Complete reached the store: %s", diff)
	}
	first.Record.Body[0] = 'X'
	first.Record.Header["X-Multi"][1] = "changed"
	first.Record.Header["X-Multi"] = append(first.Record.Header["X-Multi"][:1], "appended")
	first.Record.Header.Add("Content-Type", "appended")
	first.Record.Header.Set("X-Added", "1")

	second, err := st.Begin(ctx, "k", fp, time.Minute)
	if err != nil || second.Record == nil {
		t.Fatalf("second replay: %+v, %v", second, err)
	}
	if diff := DiffRecords(second.Record, &want); diff != "" {
		t.Fatalf("changes to a replayed record reached the store: %s", diff)
	}
}

// runConcurrentBegin has 50 goroutines Begin one key at once, over several
// rounds: exactly one must start each time, and after its Complete, every
// later Begin replays.
func runConcurrentBegin(t *testing.T, newStore NewStore) {
	const goroutines, rounds = 50, 5
	clock := NewClock(Epoch())
	st := newStore(t, clock.Now)
	ctx := context.Background()
	fp := Fingerprint("concurrent")
	for round := range rounds {
		key := fmt.Sprintf("hot-%d", round)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			counts  [idempotency.Mismatch + 1]atomic.Int64
			errs    = make(chan error, goroutines)
			winners = make(chan string, goroutines)
		)
		for range goroutines {
			wg.Go(func() {
				<-start
				got, err := st.Begin(ctx, key, fp, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if got.State > idempotency.Mismatch {
					errs <- fmt.Errorf("state %v", got.State)
					return
				}
				counts[got.State].Add(1)
				if got.State == idempotency.Started {
					winners <- got.Token
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		if n, m := counts[idempotency.Started].Load(), counts[idempotency.InProgress].Load(); n != 1 || m != goroutines-1 {
			t.Fatalf("round %d: %d concurrent Begins on a free key: %d Started, %d InProgress; want 1 and %d",
				round, goroutines, n, m, goroutines-1)
		}
		token := <-winners
		// Completes and replays race too: every replay sees the record
		// whole, never a part of it.
		rec := idempotency.Record{Status: 200, Body: allBytes(), Header: http.Header{"X-Round": {key}}, CreatedAt: Epoch()}
		want := rec
		want.Fingerprint = fp
		var done atomic.Bool
		errs = make(chan error, goroutines)
		for range goroutines {
			wg.Go(func() {
				for {
					finished := done.Load()
					got, err := st.Begin(ctx, key, fp, time.Minute)
					if err != nil {
						errs <- err
						return
					}
					switch got.State {
					case idempotency.InProgress:
						if finished {
							errs <- errors.New("InProgress after Complete returned")
							return
						}
						continue
					case idempotency.Completed:
						if diff := DiffRecords(got.Record, &want); diff != "" {
							errs <- errors.New(diff)
						}
					default:
						errs <- fmt.Errorf("a Begin racing Complete gave %v", got.State)
					}
					return
				}
			})
		}
		if err := st.Complete(ctx, key, token, rec, time.Hour); err != nil {
			t.Fatalf("round %d: Complete: %v", round, err)
		}
		done.Store(true)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func runConcurrentKeys(t *testing.T, newStore NewStore) {
	const goroutines, perGoroutine = 16, 25
	clock := NewClock(Epoch())
	st := newStore(t, clock.Now)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				key := fmt.Sprintf("g%d\x00k%d", g, i)
				fp := Fingerprint(key)
				got, err := st.Begin(ctx, key, fp, time.Minute)
				if err != nil || got.State != idempotency.Started {
					errs <- fmt.Errorf("Begin(%q): %v, %v", key, got.State, err)
					return
				}
				if i%2 == 0 {
					err = st.Abort(ctx, key, got.Token)
				} else {
					err = st.Complete(ctx, key, got.Token, idempotency.Record{Status: 200, Body: []byte(key)}, time.Hour)
				}
				if err != nil {
					errs <- fmt.Errorf("finishing %q: %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := range goroutines {
		for i := range perGoroutine {
			key := fmt.Sprintf("g%d\x00k%d", g, i)
			got, err := st.Begin(ctx, key, Fingerprint(key), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 && got.State != idempotency.Started {
				t.Fatalf("%q was aborted, then Begin gave %v", key, got.State)
			}
			if i%2 == 1 && (got.State != idempotency.Completed || string(got.Record.Body) != key) {
				t.Fatalf("%q was completed, then Begin gave %v %v", key, got.State, got.Record)
			}
		}
	}
}

func runInvalid(t *testing.T, newStore NewStore) {
	clock := NewClock(Epoch())
	st := newStore(t, clock.Now)
	ctx := context.Background()
	fp := Fingerprint("invalid")
	for _, d := range []time.Duration{0, -time.Nanosecond, -time.Hour} {
		if _, err := st.Begin(ctx, "k", fp, d); !errors.Is(err, idempotency.ErrInvalidTTL) {
			t.Errorf("Begin with lease %v: err = %v, want ErrInvalidTTL", d, err)
		}
	}
	got, err := st.Begin(ctx, "k", fp, time.Minute)
	if err != nil || got.State != idempotency.Started {
		t.Fatalf("Begin after refused ones: %v, %v; want Started", got.State, err)
	}
	for _, d := range []time.Duration{0, -time.Nanosecond} {
		if err := st.Complete(ctx, "k", got.Token, idempotency.Record{Status: 200}, d); !errors.Is(err, idempotency.ErrInvalidTTL) {
			t.Errorf("Complete with ttl %v: err = %v, want ErrInvalidTTL", d, err)
		}
	}
	// The refused Completes left the marker as it was.
	if again, err := st.Begin(ctx, "k", fp, time.Minute); err != nil || again.State != idempotency.InProgress {
		t.Fatalf("after refused Completes: %v, %v; want InProgress", again.State, err)
	}
	if err := st.Abort(ctx, "k", got.Token); err != nil {
		t.Fatalf("Abort after refused Completes: %v", err)
	}
}
