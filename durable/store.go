package durable

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/idempotency"
)

// FileName is the name of the data file that Open keeps in its directory.
const FileName = "gatekit.db"

// DefaultFlushInterval is how often settled spend and kept responses are
// written when Config.FlushInterval is 0.
const DefaultFlushInterval = 100 * time.Millisecond

// pruneEvery is how often, on the store's clock, a write also deletes the
// spend of ended periods and the expired records.
const pruneEvery = time.Hour

var (
	// ErrClosed is returned by a Store, its Ledger and its idempotency
	// Store once Close was called.
	ErrClosed = errors.New("durable: store is closed")
	// ErrCorrupt is wrapped by the error of Open, which names the file,
	// when the data file is damaged: cut short, overwritten, or not a
	// gatekit data file. Open never starts afresh over such a file; an
	// operator restores it from a backup, or moves it away to start with
	// no spend and no records.
	ErrCorrupt = errors.New("durable: data file is corrupt")
)

// Config configures a Store. The zero value (or a nil pointer) gives the
// defaults.
type Config struct {
	// FlushInterval is how often settled spend and kept responses are
	// written to the data file, all that was queued since the last write in
	// one transaction (group commit); default DefaultFlushInterval. A crash
	// loses at most the last FlushInterval of them (plus the time one write
	// takes).
	//
	// A negative FlushInterval writes every settlement and completion
	// before Settle and Complete return (concurrent ones still share a
	// write): a crash then loses nothing acknowledged, at the price of a
	// disk write in the request's path. If that write fails, Settle and
	// Complete return its error after recording in memory all the same,
	// and the next write tries again.
	FlushInterval time.Duration
	// Now is the clock; default time.Now. It decides budget periods, when
	// holds and records expire, and which spend and records Open reloads.
	Now func() time.Time
	// Location is the time zone whose calendar budget periods follow;
	// default UTC. Keep it from one Open to the next: spend kept under
	// another zone's periods is reloaded into the period of this one that
	// contains their start.
	Location *time.Location
	// HoldTTL is how long a hold reserves its amount unless settled or
	// released; default budget.DefaultHoldTTL.
	HoldTTL time.Duration
	// SettleGrace is how long after a hold expires Settle still records
	// its cost; default budget.DefaultSettleGrace.
	SettleGrace time.Duration
	// MaxEntries is the most idempotency entries kept in memory; default
	// idempotency.DefaultMaxEntries (see idempotency.MemoryConfig).
	MaxEntries int
	// Logger receives what goes wrong without failing a call: a write
	// that failed (the Store retries it), a damaged meta page that Open
	// worked around; default slog.Default().
	Logger *slog.Logger
}

// Store keeps a budget ledger and an idempotency store in memory, and their
// settled spend and completed records in one data file, so that a single
// instance keeps its books across restarts without Redis.
//
// Every call is answered from memory by a budget.Memory and an
// idempotency.Memory. The ledger tracks what settlements added to each
// budget since the last write (an addition per budget, no lock of its own),
// a Complete queues its record, and a background writer takes all of it and
// writes it in one transaction, with one sync to disk, every FlushInterval. Open reloads what the file holds. Holds and
// in-progress idempotency markers are not kept: they expire on their own.
//
// A Store is safe for concurrent use. Close it when the service stops, after
// the last request has settled: Close writes what is queued.
type Store struct {
	path   string
	logger *slog.Logger
	now    func() time.Time
	loc    *time.Location
	sync   bool // FlushInterval < 0

	budgets *budget.Memory
	records *idempotency.Memory
	ledger  ledger
	idem    idemStore

	pending recordQueue
	late    atomic.Int64 // completions queued after Close

	// swaps counts the times a write took what was settled and queued:
	// what was there when swaps read n is written by the write that takes
	// it n+1.
	swaps    atomic.Uint64
	writeMu  sync.Mutex // one write at a time; guards the fields below
	db       *bolt.DB   // nil once closed
	written  uint64     // the swaps number of the last successful write
	prune    time.Time  // when, on the store's clock, to prune next
	failing  bool       // the last write failed
	spendBuf []budget.Spend
	retry    []queuedSpend // the spend of a failed write

	closed  atomic.Bool
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	err     error // of Close
}

type recordQueue struct {
	mu     sync.Mutex
	queued map[string]pending
	sealed bool
}

// Open opens the store kept in dir, creating dir and its data file
// (dir/gatekit.db) if need be, and reloads the spend of current periods and
// the records not yet expired. A damaged data file is an error naming it and
// wrapping ErrCorrupt: Open never starts afresh over it. Only one process at
// a time may have a directory open; another waits a second, then fails.
func Open(dir string, cfg *Config) (*Store, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	s := &Store{
		path:    filepath.Join(dir, FileName),
		logger:  c.Logger,
		now:     c.Now,
		loc:     c.Location,
		sync:    c.FlushInterval < 0,
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	var err error
	s.budgets, err = budget.NewMemory(&budget.MemoryConfig{
		Now: c.Now, Location: c.Location, HoldTTL: c.HoldTTL, SettleGrace: c.SettleGrace,
		TrackSettled: true,
	})
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	s.records, err = idempotency.NewMemory(&idempotency.MemoryConfig{
		Now: c.Now, MaxEntries: c.MaxEntries,
		OnComplete: s.queueRecord,
	})
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	s.ledger.s, s.idem.s = s, s
	s.pending.queued = make(map[string]pending)

	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	if _, err := os.Stat(s.path); errors.Is(err, os.ErrNotExist) {
		if err := create(s.path); err != nil {
			return nil, err
		}
	}
	kept, err := load(s.path, s.loc, s.logger)
	if err != nil {
		return nil, err
	}
	s.db, err = bolt.Open(s.path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, openError(s.path, err)
	}
	for _, sp := range kept.spends {
		if err := s.budgets.Restore(sp); err != nil {
			s.db.Close()
			return nil, corrupt(s.path, "%v", err)
		}
	}
	// In order of expiry, so that each is inserted at once.
	slices.SortFunc(kept.records, func(a, b pending) int { return cmp.Compare(a.expires, b.expires) })
	for i := range kept.records {
		p := &kept.records[i]
		s.records.Restore(p.key, p.rec, time.UnixMilli(p.expires))
	}
	// Prune what no longer counts, now.
	s.writeMu.Lock()
	err = s.write(false)
	s.writeMu.Unlock()
	if err != nil {
		s.db.Close()
		return nil, err
	}
	if s.sync {
		close(s.stopped)
	} else {
		go s.run(c.FlushInterval)
	}
	return s, nil
}

// Path returns the data file's path.
func (s *Store) Path() string { return s.path }

// Ledger returns the store's budget ledger: a budget.Memory whose settled
// spend is kept in the data file. It is the same Ledger on every call.
func (s *Store) Ledger() budget.Ledger { return &s.ledger }

// Idempotency returns the store's idempotency store: an idempotency.Memory
// whose completed records are kept in the data file. It is the same Store on
// every call.
func (s *Store) Idempotency() idempotency.Store { return &s.idem }

// Flush writes everything queued so far to the data file, and returns once
// it is on disk. It returns the write's error, or ErrClosed after Close.
func (s *Store) Flush() error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.write(false)
}

// Close stops the background writer, writes everything queued and closes
// the data file. Calls made after Close return ErrClosed. Later calls of
// Close return the same error as the first, which is nil unless the last
// write or closing the file failed.
//
// Close must come after the last Settle and Complete: one that runs
// concurrently with Close is recorded in memory and may miss the last write,
// which is logged when Close notices.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.stopped
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		err := s.write(true)
		if left := s.budgets.TakeSettled(nil); len(left) > 0 {
			s.logger.Error("durable: settlements arrived while Close wrote the last batch; they are not kept", "path", s.path, "budgets", len(left))
		}
		if cerr := s.db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("durable: closing %s: %w", s.path, cerr))
		}
		s.db = nil
		s.err = err
	})
	return s.err
}

// run writes the queues every interval until Close.
func (s *Store) run(interval time.Duration) {
	defer close(s.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.writeMu.Lock()
		s.write(false)
		s.writeMu.Unlock()
	}
}

// queueRecord is the idempotency.Memory's OnComplete: it adds the record to
// the queue, replacing any older one for the key.
func (s *Store) queueRecord(key string, rec idempotency.Record, expires time.Time) {
	q := &s.pending
	q.mu.Lock()
	if q.sealed {
		q.mu.Unlock()
		if s.late.Add(1) == 1 {
			s.logger.Error("durable: a completion arrived after Close had written the last batch; it is not kept", "path", s.path)
		}
		return
	}
	q.queued[key] = pending{key: key, rec: rec, expires: expires.UnixMilli()}
	q.mu.Unlock()
}

// waitWritten returns once what was queued when swaps read n is on disk,
// writing it if no write took it since. It returns the error of that write.
func (s *Store) waitWritten(n uint64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.written > n {
		return nil
	}
	if s.db == nil {
		return ErrClosed
	}
	return s.write(false)
}

// write takes everything queued and writes it in one transaction, pruning
// too when it is time; seal (for Close) makes it the last. s.writeMu is
// held.
func (s *Store) write(seal bool) error {
	if s.db == nil {
		return ErrClosed
	}
	n := s.swaps.Add(1)
	b := s.take(seal)
	now := s.now()
	pruning := !now.Before(s.prune)
	if b.empty() && !pruning {
		s.written = n
		return nil
	}
	var spends, records int
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := b.apply(tx); err != nil {
			return err
		}
		if pruning {
			var err error
			spends, records, err = prune(tx, now, s.loc)
			return err
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("durable: writing %s: %w", s.path, err)
		if !seal {
			s.requeue(b)
		}
		if !s.failing {
			s.logger.Error("durable: a write failed; it is retried with the next", "path", s.path, "error", err,
				"spends", len(b.spends), "records", len(b.records))
		}
		s.failing = true
		return err
	}
	if s.failing {
		s.logger.Info("durable: writes succeed again", "path", s.path)
		s.failing = false
	}
	if pruning {
		s.prune = now.Add(pruneEvery)
		if spends+records > 0 {
			s.logger.Debug("durable: pruned", "path", s.path, "ended_periods", spends, "expired_records", records)
		}
	}
	s.written = n
	return nil
}

// take takes what was settled and queued into a batch, its spend in the
// order of its keys, one entry per budget and period. s.writeMu is held.
func (s *Store) take(seal bool) batch {
	b := batch{spends: s.retry}
	s.retry = nil
	s.spendBuf = s.budgets.TakeSettled(s.spendBuf[:0])
	for _, sp := range s.spendBuf {
		k := newSpendKey(sp)
		b.spends = append(b.spends, queuedSpend{key: k, enc: k.encode(), amount: sp.Amount})
	}
	clear(s.spendBuf) // let go of the scopes' strings
	slices.SortFunc(b.spends, func(x, y queuedSpend) int { return bytes.Compare(x.enc, y.enc) })
	merged := b.spends[:0] // a budget may come twice: from a retry, or forgotten and tracked again
	for _, q := range b.spends {
		if n := len(merged); n > 0 && bytes.Equal(merged[n-1].enc, q.enc) {
			merged[n-1].amount += q.amount
			continue
		}
		merged = append(merged, q)
	}
	b.spends = merged
	q := &s.pending
	q.mu.Lock()
	recs := q.queued
	if len(recs) > 0 {
		q.queued = make(map[string]pending)
	}
	q.sealed = seal
	q.mu.Unlock()
	if len(recs) > 0 {
		b.records = make([]queuedRecord, 0, len(recs))
		for _, p := range recs {
			b.records = append(b.records, queuedRecord{pending: p, rkey: recordKey(p.key)})
		}
		// In the order of their keys, as bbolt inserts fastest.
		slices.SortFunc(b.records, func(x, y queuedRecord) int { return bytes.Compare(x.rkey, y.rkey) })
	}
	return b
}

// requeue puts back a batch whose write failed, for the next write to try
// again. s.writeMu is held.
func (s *Store) requeue(b batch) {
	s.retry = b.spends
	q := &s.pending
	q.mu.Lock()
	for _, r := range b.records {
		if _, newer := q.queued[r.key]; !newer {
			q.queued[r.key] = r.pending
		}
	}
	q.mu.Unlock()
}
