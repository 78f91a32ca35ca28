package durable_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/budget/budgettest"
	"github.com/gatekit/gatekit/durable"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/idempotency/idempotencytest"
)

// never is a FlushInterval under which only Flush, Close and every-settle
// mode write: what the file holds is then exactly what the test made it
// hold.
const never = 24 * time.Hour

var ctx = context.Background()

// spend holds amount on scopes and settles it.
func spend(tb testing.TB, l budget.Ledger, amount budget.Micros, scopes ...budget.Scope) {
	tb.Helper()
	r, err := l.Hold(ctx, scopes, amount)
	if err != nil || !r.Allowed {
		tb.Fatalf("Hold %v on %v: %+v, %v", amount, scopes, r, err)
	}
	if _, err := l.Settle(ctx, r.ID, amount); err != nil {
		tb.Fatalf("Settle: %v", err)
	}
}

// spent returns scope's Spent.
func spent(tb testing.TB, l budget.Ledger, scope budget.Scope) budget.Micros {
	tb.Helper()
	b, err := l.Balance(ctx, scope)
	if err != nil {
		tb.Fatal(err)
	}
	return b.Spent
}

// crashCopy returns a directory holding a copy of s's data file as it is
// now: what a process killed at this instant would leave behind.
func crashCopy(tb testing.TB, s *durable.Store) string {
	tb.Helper()
	data, err := os.ReadFile(s.Path())
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, durable.FileName), data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

var (
	jan15 = time.Date(2030, time.January, 15, 10, 0, 0, 0, time.UTC)
	key   = budget.Scope{Tag: "acme", Kind: "key", ID: "k1", Limit: 1000 * budget.Dollar, Period: budget.Daily}
	key2  = budget.Scope{Tag: "acme", Kind: "key", ID: "k2", Limit: 1000 * budget.Dollar, Period: budget.Daily}
	acct  = budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000 * budget.Dollar, Period: budget.Monthly}
	life  = budget.Scope{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000 * budget.Dollar, Period: budget.None}
	beta  = budget.Scope{Tag: "beta", Kind: "account", ID: "beta", Limit: 1000 * budget.Dollar, Period: budget.Monthly}
)

func TestRestartKeepsEverySettledSpend(t *testing.T) {
	for _, flush := range []time.Duration{0, -1, never} {
		t.Run(fmt.Sprintf("FlushInterval=%v", flush), func(t *testing.T) {
			clock := budgettest.NewClock(jan15)
			dir := t.TempDir()
			cfg := &durable.Config{Now: clock.Now, FlushInterval: flush}
			s := open(t, dir, cfg)
			want := map[budget.Scope]budget.Micros{}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 1000 {
				amount := budget.Micros(rng.IntN(int(budget.Cent)))
				scopes := [][]budget.Scope{{key, acct, life}, {key2, acct}, {beta}}[i%3]
				spend(t, s.Ledger(), amount, scopes...)
				for _, sc := range scopes {
					want[sc] += amount
				}
				// A hold that is not settled, and one released: neither
				// is spend.
				s.Ledger().Hold(ctx, scopes, budget.Cent)
				r, _ := s.Ledger().Hold(ctx, scopes, budget.Cent)
				s.Ledger().Release(ctx, r.ID)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir, cfg)
			for sc, w := range want {
				b, err := s.Ledger().Balance(ctx, sc)
				if err != nil {
					t.Fatal(err)
				}
				if b.Spent != w || b.Held != 0 {
					t.Errorf("%v after restart: %+v, want Spent %v and nothing held", sc, b, w)
				}
			}
		})
	}
}

func TestRestartKeepsSpendWithinPeriodsOnly(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// The last hour of January in New York: 04:00 UTC on February 1.
	clock := budgettest.NewClock(time.Date(2030, time.January, 31, 23, 0, 0, 0, ny))
	dir := t.TempDir()
	cfg := &durable.Config{Now: clock.Now, Location: ny}
	s := open(t, dir, cfg)
	spend(t, s.Ledger(), 3*budget.Dollar, key, acct, life)
	s.Close()

	// The same evening: all of it counts.
	clock.Advance(30 * time.Minute)
	s = open(t, dir, cfg)
	for _, sc := range []budget.Scope{key, acct, life} {
		if got := spent(t, s.Ledger(), sc); got != 3*budget.Dollar {
			t.Errorf("%v the same evening: Spent %v, want 3.00 USD", sc, got)
		}
	}
	spend(t, s.Ledger(), 1*budget.Dollar, key, acct, life)
	s.Close()

	// February: the day and the month start over; the lifetime does not.
	clock.Advance(time.Hour)
	s = open(t, dir, cfg)
	for sc, want := range map[budget.Scope]budget.Micros{key: 0, acct: 0, life: 4 * budget.Dollar} {
		if got := spent(t, s.Ledger(), sc); got != want {
			t.Errorf("%v in February: Spent %v, want %v", sc, got, want)
		}
	}
	spend(t, s.Ledger(), 2*budget.Dollar, key, acct, life)
	s.Close()

	// January's spend was deleted from the file when February's Open
	// found its periods over: turning the clock back shows nothing of it.
	clock.Advance(-time.Hour)
	s = open(t, dir, cfg)
	for sc, want := range map[budget.Scope]budget.Micros{key: 0, acct: 0, life: 6 * budget.Dollar} {
		if got := spent(t, s.Ledger(), sc); got != want {
			t.Errorf("%v back in January: Spent %v, want %v", sc, got, want)
		}
	}
}

func TestWritesAreBehindUnlessEverySettle(t *testing.T) {
	clock := budgettest.NewClock(jan15)

	s := open(t, t.TempDir(), &durable.Config{Now: clock.Now, FlushInterval: never})
	spend(t, s.Ledger(), budget.Dollar, key)
	crashed := open(t, crashCopy(t, s), &durable.Config{Now: clock.Now})
	if got := spent(t, crashed.Ledger(), key); got != 0 {
		t.Fatalf("before any write, the file holds %v", got)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed = open(t, crashCopy(t, s), &durable.Config{Now: clock.Now})
	if got := spent(t, crashed.Ledger(), key); got != budget.Dollar {
		t.Fatalf("after Flush, the file holds %v, want 1.00 USD", got)
	}

	s = open(t, t.TempDir(), &durable.Config{Now: clock.Now, FlushInterval: -1})
	spend(t, s.Ledger(), budget.Dollar, key)
	crashed = open(t, crashCopy(t, s), &durable.Config{Now: clock.Now})
	if got := spent(t, crashed.Ledger(), key); got != budget.Dollar {
		t.Fatalf("every settle: the file holds %v once Settle returned, want 1.00 USD", got)
	}
}

func TestWriterWritesEveryFlushInterval(t *testing.T) {
	s := open(t, t.TempDir(), &durable.Config{FlushInterval: 10 * time.Millisecond})
	spend(t, s.Ledger(), budget.Dollar, key)
	deadline := time.Now().Add(10 * time.Second)
	for {
		crashed, err := durable.Open(crashCopy(t, s), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := spent(t, crashed.Ledger(), key)
		crashed.Close()
		if got == budget.Dollar {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after a settlement, the file holds %v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRestartKeepsIdempotentResponses(t *testing.T) {
	clock := idempotencytest.NewClock(idempotencytest.Epoch())
	dir := t.TempDir()
	cfg := &durable.Config{Now: clock.Now}
	s := open(t, dir, cfg)
	st := s.Idempotency()
	begin := func(st idempotency.Store, key string, want idempotency.State) idempotency.Begin {
		t.Helper()
		b, err := st.Begin(ctx, key, idempotencytest.Fingerprint(key), time.Minute)
		if err != nil || b.State != want {
			t.Fatalf("Begin(%q): %v, %v; want %v", key, b.State, err, want)
		}
		return b
	}
	recs := map[string]idempotency.Record{}
	for i := range 50 {
		key := fmt.Sprintf("user\x00key-%d", i)
		b := begin(st, key, idempotency.Started)
		rec := idempotency.Record{
			Status:    200 + i%3,
			Header:    http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {fmt.Sprint("req_", i)}},
			Body:      bytes.Repeat([]byte{byte(i)}, i*100),
			Stream:    i%2 == 0,
			CreatedAt: clock.Now(),
		}
		ttl := time.Hour
		if i%5 == 0 {
			ttl = time.Minute // expired by the restart
		}
		if err := st.Complete(ctx, key, b.Token, rec, ttl); err != nil {
			t.Fatal(err)
		}
		rec.Fingerprint = idempotencytest.Fingerprint(key)
		recs[key] = rec
	}
	begin(st, "in progress", idempotency.Started)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(30 * time.Minute)
	s = open(t, dir, cfg)
	for i := range 50 {
		key := fmt.Sprintf("user\x00key-%d", i)
		if i%5 == 0 {
			begin(s.Idempotency(), key, idempotency.Started)
			continue
		}
		b := begin(s.Idempotency(), key, idempotency.Completed)
		want := recs[key]
		if diff := idempotencytest.DiffRecords(b.Record, &want); diff != "" {
			t.Fatalf("%q replayed after restart: %s", key, diff)
		}
	}
	// In-progress markers are not kept: the key is free.
	begin(s.Idempotency(), "in progress", idempotency.Started)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Records end on time after a restart too, and are deleted.
	clock.Advance(30 * time.Minute)
	s = open(t, dir, cfg)
	for key := range recs {
		begin(s.Idempotency(), key, idempotency.Started)
	}
	s.Close()
	if n := countKeys(t, s.Path(), "records"); n != 0 {
		t.Fatalf("%d records left in the file after all expired", n)
	}
}

// countKeys returns the number of keys in a bucket of a closed data file.
func countKeys(t *testing.T, path, bucket string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucket)).Stats().KeyN
		return nil
	})
	return n
}

func TestCallsAfterCloseFail(t *testing.T) {
	s := open(t, t.TempDir(), nil)
	r, _ := s.Ledger().Hold(ctx, []budget.Scope{key}, budget.Cent)
	b, _ := s.Idempotency().Begin(ctx, "k", "fp", time.Minute)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Flush":    s.Flush(),
		"Settle":   second(s.Ledger().Settle(ctx, r.ID, 1)),
		"Hold":     second(s.Ledger().Hold(ctx, []budget.Scope{key}, 1)),
		"Release":  s.Ledger().Release(ctx, r.ID),
		"Balance":  second(s.Ledger().Balance(ctx, key)),
		"Begin":    second(s.Idempotency().Begin(ctx, "k", "fp", time.Minute)),
		"Complete": s.Idempotency().Complete(ctx, "k", b.Token, idempotency.Record{}, time.Minute),
		"Abort":    s.Idempotency().Abort(ctx, "k", b.Token),
	} {
		if !errors.Is(err, durable.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestOneProcessAtATime(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, nil)
	start := time.Now()
	_, err := durable.Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), filepath.Join(dir, durable.FileName)) {
		t.Fatalf("second Open of %s: %v, want an error naming the file in use", dir, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

func TestOpenCreatesTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := open(t, dir, nil)
	if s.Path() != filepath.Join(dir, durable.FileName) {
		t.Fatalf("Path %q", s.Path())
	}
	if _, err := os.Stat(s.Path()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	for _, cfg := range []*durable.Config{{HoldTTL: -1}, {SettleGrace: -1}, {MaxEntries: -1}} {
		if s, err := durable.Open(t.TempDir(), cfg); err == nil {
			s.Close()
			t.Errorf("Open accepted %+v", cfg)
		}
	}
}

// TestCorruptFileIsAnErrorNamingIt damages a data file in several ways:
// Open must fail with ErrCorrupt and the file's path, and leave the file as
// it was.
func TestCorruptFileIsAnErrorNamingIt(t *testing.T) {
	clock := budgettest.NewClock(jan15)
	good := t.TempDir()
	s := open(t, good, &durable.Config{Now: clock.Now})
	for i := range 2000 {
		sc := key
		sc.ID = fmt.Sprint("key-", i)
		spend(t, s.Ledger(), budget.Cent, sc)
	}
	b, _ := s.Idempotency().Begin(ctx, "k", "fp", time.Minute)
	s.Idempotency().Complete(ctx, "k", b.Token, idempotency.Record{Status: 200, Body: []byte("a response worth keeping")}, time.Hour)
	s.Close()
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 64<<10 {
		t.Fatalf("the data file is only %d bytes", len(data))
	}
	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0x5a
		return b
	}
	garbage := make([]byte, len(data))
	rand.NewChaCha8([32]byte{3, 4}).Read(garbage)
	body := bytes.Index(data, []byte("a response worth keeping"))
	if body < 0 {
		t.Fatal("the record's body is not in the file")
	}
	spendValue := bytes.Index(data, []byte("key-1234"))
	if spendValue < 0 {
		t.Fatal("a budget's key is not in the file")
	}
	db, err := bolt.Open(s.Path(), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var pages int // bytes up to the end of the last page in use
	db.View(func(tx *bolt.Tx) error { pages = int(tx.Size()); return nil })
	db.Close()
	notOurs := filepath.Join(t.TempDir(), "other.db")
	db, err = bolt.Open(notOurs, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
	db.Close()
	other, err := os.ReadFile(notOurs)
	if err != nil {
		t.Fatal(err)
	}

	for name, damaged := range map[string][]byte{
		"Garbage":              garbage,
		"Empty":                {},
		"CutToAFewBytes":       data[:100],
		"CutInHalf":            data[:len(data)/2],
		"CutByOnePage":         data[:pages-4096],
		"GarbageHeader":        append(bytes.Clone(garbage[:8192]), data[8192:]...),
		"FlippedByteInABody":   flip(data, body+3),
		"FlippedByteInAKey":    flip(data, spendValue+5),
		"AnotherBboltDatabase": other,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, durable.FileName)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := durable.Open(dir, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a damaged file")
			}
			if !errors.Is(err, durable.ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: %v; want ErrCorrupt naming %s", err, path)
			}
			t.Log(err)
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, damaged) {
				t.Fatal("Open changed the damaged file")
			}
		})
	}
}

func TestUnreadableFileIsAnErrorNamingIt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, durable.FileName)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := durable.Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open with a directory for a data file: %v, want an error naming %s", err, path)
	}
	t.Log(err)
	if os.Geteuid() == 0 {
		return // root reads any file
	}
	dir = t.TempDir()
	open(t, dir, nil).Close()
	path = filepath.Join(dir, durable.FileName)
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err = durable.Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of an unreadable file: %v, want an error naming %s", err, path)
	}
}

func TestLedgerHotPathAllocatesNothing(t *testing.T) {
	clock := budgettest.NewClock(jan15)
	s := open(t, t.TempDir(), &durable.Config{Now: clock.Now, FlushInterval: never})
	l := s.Ledger()
	scopes := []budget.Scope{key, acct}
	warm := func() {
		r, _ := l.Hold(ctx, scopes, budget.Cent)
		l.Settle(ctx, r.ID, budget.Cent)
	}
	warm()
	s.Flush() // the queue's maps swap: both have room for these budgets
	warm()
	s.Flush()
	if n := testing.AllocsPerRun(1000, warm); n != 0 {
		t.Fatalf("Hold and Settle: %v allocations, want 0", n)
	}
}

func TestConcurrentSettlesAndFlushesLoseNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &durable.Config{FlushInterval: time.Millisecond})
	const workers, each = 8, 500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			s.Flush()
		}
	}()
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			defer func() { errs <- err }()
			sc := budget.Scope{Tag: life.Tag, Kind: "key", ID: fmt.Sprint(w), Limit: budget.MaxMicros}
			for range each {
				var r budget.HoldResult
				if r, err = s.Ledger().Hold(ctx, []budget.Scope{sc, life}, 1); err != nil {
					return
				}
				if _, err = s.Ledger().Settle(ctx, r.ID, 1); err != nil {
					return
				}
			}
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-done
	s.Close()
	s = open(t, dir, nil)
	if got := spent(t, s.Ledger(), life); got != workers*each {
		t.Fatalf("lifetime spend %v after restart, want %v", got, budget.Micros(workers*each))
	}
}

var _ io.Closer = (*durable.Store)(nil)

// TestDamageAnywhereIsFoundOrHarmless flips bytes all over a data file: each
// time, Open either fails with ErrCorrupt or, when the byte was in a part
// of the file not in use, reloads everything exactly. It never crashes and
// never reloads something else.
func TestDamageAnywhereIsFoundOrHarmless(t *testing.T) {
	flips := 300
	if v := os.Getenv("DURABLE_FLIPS"); v != "" {
		fmt.Sscan(v, &flips)
	}
	clock := budgettest.NewClock(jan15)
	good := t.TempDir()
	s := open(t, good, &durable.Config{Now: clock.Now})
	var scopes []budget.Scope
	for i := range 300 {
		sc := key
		sc.ID = fmt.Sprint("key-", i)
		scopes = append(scopes, sc)
		spend(t, s.Ledger(), budget.Micros(i+1), sc)
		if i%10 == 0 {
			b, _ := s.Idempotency().Begin(ctx, sc.ID, "fp", time.Minute)
			s.Idempotency().Complete(ctx, sc.ID, b.Token, idempotency.Record{Status: 200, Body: []byte(sc.ID)}, time.Hour)
		}
	}
	s.Close()
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(s.Path(), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var pages int // bytes up to the end of the last page in use
	db.View(func(tx *bolt.Tx) error { pages = int(tx.Size()); return nil })
	db.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	found, harmless := 0, 0
	// The two meta pages are left out: damage there falls back on the
	// previous transaction (TestDamagedMetaPageFallsBackOnThePreviousWrite).
	for range flips {
		at := 2*os.Getpagesize() + rng.IntN(pages-2*os.Getpagesize())
		damaged := bytes.Clone(data)
		damaged[at] ^= byte(1 + rng.IntN(255))
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, durable.FileName), damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := durable.Open(dir, &durable.Config{Now: clock.Now, FlushInterval: never})
		if err != nil {
			if !errors.Is(err, durable.ErrCorrupt) {
				t.Fatalf("byte %d flipped: %v, want ErrCorrupt", at, err)
			}
			found++
			continue
		}
		harmless++
		for i, sc := range scopes {
			if got := spent(t, s.Ledger(), sc); got != budget.Micros(i+1) {
				t.Fatalf("byte %d flipped: Open accepted the file, and %v spent %v, want %v", at, sc.ID, got, budget.Micros(i+1))
			}
			if i%10 == 0 {
				b, _ := s.Idempotency().Begin(ctx, sc.ID, "fp", time.Minute)
				if b.State != idempotency.Completed || string(b.Record.Body) != sc.ID {
					t.Fatalf("byte %d flipped: Open accepted the file, and %s is %v", at, sc.ID, b.State)
				}
			}
		}
		s.Close()
	}
	t.Logf("%d flipped bytes found, %d harmless", found, harmless)
}

// TestDamagedMetaPageFallsBackOnThePreviousWrite damages one of the two
// meta pages, which bbolt writes in turn: Open uses the other, as after a
// power failure during a write, and says so in the log; with both damaged,
// the file is corrupt.
func TestDamagedMetaPageFallsBackOnThePreviousWrite(t *testing.T) {
	clock := budgettest.NewClock(jan15)
	s := open(t, t.TempDir(), &durable.Config{Now: clock.Now, FlushInterval: never})
	spend(t, s.Ledger(), 1*budget.Dollar, key)
	s.Flush()
	spend(t, s.Ledger(), 2*budget.Dollar, key)
	s.Close()
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	txid := func(page int) uint64 { return binary.NativeEndian.Uint64(data[page*ps+16+48:]) }
	newest, older := 0, 1
	if txid(1) > txid(0) {
		newest, older = 1, 0
	}
	checksum := func(page int) int { return page*ps + 16 + 56 }
	for _, c := range []struct {
		name    string
		damaged []int
		want    budget.Micros
	}{
		{"Newest", []int{newest}, 1 * budget.Dollar},
		{"Older", []int{older}, 3 * budget.Dollar},
		{"Both", []int{newest, older}, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			damaged := bytes.Clone(data)
			for _, page := range c.damaged {
				damaged[checksum(page)] ^= 0xff
			}
			dir := t.TempDir()
			path := filepath.Join(dir, durable.FileName)
			os.WriteFile(path, damaged, 0o600)
			var log bytes.Buffer
			s, err := durable.Open(dir, &durable.Config{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if c.want < 0 {
				if !errors.Is(err, durable.ErrCorrupt) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Open: %v, want ErrCorrupt naming %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := spent(t, s.Ledger(), key); got != c.want {
				t.Errorf("Spent %v, want %v", got, c.want)
			}
			if !strings.Contains(log.String(), "meta page") || !strings.Contains(log.String(), path) {
				t.Errorf("nothing logged about the damaged meta page of %s: %q", path, log.String())
			}
		})
	}
}

func TestWritesPruneEndedPeriodsAndExpiredRecords(t *testing.T) {
	clock := budgettest.NewClock(jan15)
	s := open(t, t.TempDir(), &durable.Config{Now: clock.Now, FlushInterval: never})
	spend(t, s.Ledger(), budget.Cent, key, acct, life)
	b, _ := s.Idempotency().Begin(ctx, "k", "fp", time.Minute)
	s.Idempotency().Complete(ctx, "k", b.Token, idempotency.Record{Status: 200}, time.Hour)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// Two days later, within the month: the day's spend and the record
	// are gone from the file at the next write, without a restart.
	clock.Advance(48 * time.Hour)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	copied := crashCopy(t, s)
	s.Close()
	path := filepath.Join(copied, durable.FileName)
	if n := countKeys(t, path, "spend"); n != 2 {
		t.Errorf("%d budgets in the file, want the month's and the lifetime's", n)
	}
	if n, m := countKeys(t, path, "records"), countKeys(t, path, "expiry"); n != 0 || m != 0 {
		t.Errorf("%d records and %d expiry entries in the file, want none", n, m)
	}
}
