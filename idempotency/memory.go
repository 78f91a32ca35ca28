package idempotency

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxEntries is the number of entries a Memory holds when
// MemoryConfig.MaxEntries is 0.
const DefaultMaxEntries = 100_000

const (
	// maxShards is the most independently locked parts of a Memory.
	maxShards = 64
	// minShardEntries is the fewest entries a shard is made to hold, so
	// that a small Memory is not split into shards too small to absorb the
	// uneven spread of keys.
	minShardEntries = 256
	// sweepPerInsert is how many expired entries a new entry may sweep from
	// the front of each of its shard's lists.
	sweepPerInsert = 2
	// evictionScan is how many entries at the front of each list a full
	// shard looks at for an expired one before evicting a live one.
	evictionScan = 4
)

// MemoryConfig configures a Memory. The zero value (or a nil pointer) gives
// the defaults.
type MemoryConfig struct {
	// MaxEntries is the most entries, in progress or completed, held at
	// once; default DefaultMaxEntries. It is a hard cap, split evenly
	// across up to 64 shards by key hash (at least 256 entries a shard), so
	// allow some headroom over the number of keys expected within a
	// record's retention. Memory use is about 300 bytes an entry plus the
	// key, the kept headers and the body: bound the body (the middleware's
	// MaxBodyBytes) accordingly.
	//
	// A new key arriving at a full shard evicts an entry that has expired
	// if one is among the oldest few; otherwise the oldest completed
	// record, which loses a replay; and only if the shard holds nothing
	// but in-progress markers, the oldest of those, which lets a duplicate
	// of that request run.
	MaxEntries int
	// Now is the clock; default time.Now. Expiry uses it to the
	// millisecond; CreatedAt, when Complete sets it, to the nanosecond.
	Now func() time.Time
	// OnComplete, if set, is told of every record a Complete stores: the
	// key, the record as kept (with Begin's fingerprint, and CreatedAt set)
	// and the instant it expires. It is for a store that keeps records
	// beyond the process (package durable). It is called with the key's
	// lock held, so it must be quick, must not block and must not call the
	// Memory; calls for one key come in the order of its completions. It
	// may keep key and rec, which the Memory never modifies; it must not
	// modify them either.
	OnComplete func(key string, rec Record, expires time.Time)
}

// Memory is a Store that keeps its entries in this process's memory: the
// store for a single instance (several instances with a Memory each would
// each run a retried request once; share a redisstore.Store instead).
//
// Entries expire by the configured clock: an expired entry is dropped when
// its key is next used, and every new entry sweeps a few expired ones from
// the front of its shard, so that none lingers while new keys keep coming.
// Each call locks only its key's shard, one of up to 64, and never scans
// more than a few entries. Records are copied in and out, so callers never
// share memory with the store. Memory is safe for concurrent use. It does
// no I/O and never fails for valid durations; the ctx argument of its
// methods is unused.
//
// Its records are lost with the process, unless a store keeps them:
// MemoryConfig.OnComplete reports each one to write, and Restore reloads
// them on start. Package durable does this on local disk.
type Memory struct {
	now        func() time.Time
	onComplete func(key string, rec Record, expires time.Time)
	seed       maphash.Seed
	shards     []memoryShard
	tokens     atomic.Uint64 // the last token issued
}

var _ Store = (*Memory)(nil)

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]*memoryEntry
	// markers holds the in-progress entries in the order they began, and
	// records the completed ones in the order they completed: with one
	// lease and one retention for all keys, each list is in expiry order.
	markers, records entryList
	max              int
	_                [64]byte // keep shards on separate cache lines
}

type memoryEntry struct {
	key   string
	token string // the marker's token; "" once completed
	exp   int64  // millisecond from which the entry is gone
	done  bool   // rec is a completed record, not only a fingerprint
	// rec.fingerprint is set from Begin on; the other fields on Complete.
	// Once set, nothing in rec is ever modified, so that a copy of it can
	// be read outside the lock.
	rec        keptRecord
	prev, next *memoryEntry
}

// entryList is a doubly linked list of entries around a sentinel.
type entryList struct{ root memoryEntry }

func (l *entryList) init() { l.root.prev, l.root.next = &l.root, &l.root }

func (l *entryList) pushBack(e *memoryEntry) {
	e.prev, e.next = l.root.prev, &l.root
	l.root.prev.next = e
	l.root.prev = e
}

// insertByExpiry inserts e after the last entry that expires no later.
func (l *entryList) insertByExpiry(e *memoryEntry) {
	at := l.root.prev
	for at != &l.root && at.exp > e.exp {
		at = at.prev
	}
	e.prev, e.next = at, at.next
	at.next.prev = e
	at.next = e
}

// front returns the first entry, or nil.
func (l *entryList) front() *memoryEntry { return l.after(&l.root) }

// after returns the entry after e, or nil.
func (l *entryList) after(e *memoryEntry) *memoryEntry {
	if e.next == &l.root {
		return nil
	}
	return e.next
}

func unlink(e *memoryEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// NewMemory returns a Memory configured by cfg; nil means the defaults.
func NewMemory(cfg *MemoryConfig) (*Memory, error) {
	var c MemoryConfig
	if cfg != nil {
		c = *cfg
	}
	if c.MaxEntries < 0 {
		return nil, errors.New("idempotency: MemoryConfig.MaxEntries is negative")
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	n := min(maxShards, max(1, c.MaxEntries/minShardEntries))
	m := &Memory{now: c.Now, onComplete: c.OnComplete, seed: maphash.MakeSeed(), shards: make([]memoryShard, n)}
	for i := range m.shards {
		s := &m.shards[i]
		s.entries = make(map[string]*memoryEntry)
		s.markers.init()
		s.records.init()
		s.max = c.MaxEntries / n
		if i < c.MaxEntries%n {
			s.max++
		}
	}
	return m, nil
}

// Begin implements Store.Begin.
func (m *Memory) Begin(_ context.Context, key, fingerprint string, lease time.Duration) (Begin, error) {
	ms, ok := millis(lease)
	if !ok {
		return Begin{}, ErrInvalidTTL
	}
	now := m.now().UnixMilli()
	s := m.shard(key)

	s.mu.Lock()
	e := s.entries[key]
	if e != nil && e.exp > now {
		switch {
		case e.rec.fingerprint != fingerprint:
			s.mu.Unlock()
			return Begin{State: Mismatch}, nil
		case !e.done:
			s.mu.Unlock()
			return Begin{State: InProgress}, nil
		}
		rec := e.rec
		s.mu.Unlock()
		c := rec.record()
		return Begin{State: Completed, Record: &c}, nil
	}
	if e != nil {
		// Expired: the key is free, and its entry is reused.
		unlink(e)
	} else {
		s.sweep(now)
		if len(s.entries) >= s.max {
			s.evict(now)
		}
		// Copy the key so that a key sliced from a larger buffer does not
		// keep the whole buffer alive.
		e = &memoryEntry{key: strings.Clone(key)}
		s.entries[e.key] = e
	}
	token := strconv.FormatUint(m.tokens.Add(1), 36)
	e.token, e.exp, e.done = token, now+ms, false
	e.rec = keptRecord{fingerprint: strings.Clone(fingerprint)}
	s.markers.pushBack(e)
	s.mu.Unlock()
	return Begin{State: Started, Token: token}, nil
}

// Complete implements Store.Complete.
func (m *Memory) Complete(_ context.Context, key, token string, rec Record, ttl time.Duration) error {
	ms, ok := millis(ttl)
	if !ok {
		return ErrInvalidTTL
	}
	t := m.now()
	now := t.UnixMilli()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = t
	}
	kept := keep(&rec) // before locking; wasted only if the lease is lost
	s := m.shard(key)

	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.held(key, token, now)
	if e == nil {
		return ErrLeaseLost
	}
	kept.fingerprint = e.rec.fingerprint
	e.rec, e.done, e.token, e.exp = kept, true, "", now+ms
	unlink(e)
	s.records.pushBack(e)
	if m.onComplete != nil {
		m.onComplete(e.key, e.rec.record(), time.UnixMilli(e.exp))
	}
	return nil
}

// Restore puts back a completed record under key, kept until expires (to
// the millisecond), as if a Complete had stored it then: it is for a store
// reloading the records it kept (package durable). It reports whether it
// did: it does nothing if expires has passed by m's clock or if key already
// has a live entry. Like a new key, a restored record may evict another
// entry from a full Memory (see MemoryConfig.MaxEntries).
//
// Restore keeps a copy of rec. It does not tell OnComplete. Records restored in order of
// expiry are inserted at once; others take a walk through the records that
// expire later.
func (m *Memory) Restore(key string, rec Record, expires time.Time) bool {
	now := m.now().UnixMilli()
	exp := expires.UnixMilli()
	if exp <= now {
		return false
	}
	s := m.shard(key)

	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e != nil && e.exp > now {
		return false
	}
	if e != nil {
		unlink(e)
	} else {
		s.sweep(now)
		if len(s.entries) >= s.max {
			s.evict(now)
		}
		e = &memoryEntry{key: strings.Clone(key)}
		s.entries[e.key] = e
	}
	e.rec, e.done, e.token, e.exp = keep(&rec), true, "", exp
	s.records.insertByExpiry(e)
	return true
}

// Abort implements Store.Abort.
func (m *Memory) Abort(_ context.Context, key, token string) error {
	now := m.now().UnixMilli()
	s := m.shard(key)

	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.held(key, token, now)
	if e == nil {
		return ErrLeaseLost
	}
	s.remove(e)
	return nil
}

// Len returns the number of entries held, in progress or completed,
// including expired ones not yet dropped.
func (m *Memory) Len() int {
	total := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		total += len(s.entries)
		s.mu.Unlock()
	}
	return total
}

func (m *Memory) shard(key string) *memoryShard {
	return &m.shards[maphash.String(m.seed, key)%uint64(len(m.shards))]
}

// held returns key's entry if it is a live in-progress marker with token,
// and nil otherwise, dropping the entry if it has expired. s.mu is held.
func (s *memoryShard) held(key, token string, now int64) *memoryEntry {
	e := s.entries[key]
	if e == nil {
		return nil
	}
	if e.exp <= now {
		s.remove(e)
		return nil
	}
	if e.done || e.token != token {
		return nil
	}
	return e
}

// remove drops e. s.mu is held.
func (s *memoryShard) remove(e *memoryEntry) {
	delete(s.entries, e.key)
	unlink(e)
}

// sweep drops up to sweepPerInsert expired entries from the front of each
// list. s.mu is held.
func (s *memoryShard) sweep(now int64) {
	for _, l := range [2]*entryList{&s.markers, &s.records} {
		for range sweepPerInsert {
			e := l.front()
			if e == nil || e.exp > now {
				break
			}
			s.remove(e)
		}
	}
}

// evict drops one entry to make room in a full shard: an expired one among
// the first few of each list, else the oldest record, else the oldest
// marker. s.mu is held.
func (s *memoryShard) evict(now int64) {
	for _, l := range [2]*entryList{&s.markers, &s.records} {
		e := l.front()
		for i := 0; e != nil && i < evictionScan; i++ {
			if e.exp <= now {
				s.remove(e)
				return
			}
			e = l.after(e)
		}
	}
	if e := s.records.front(); e != nil {
		s.remove(e)
		return
	}
	if e := s.markers.front(); e != nil {
		s.remove(e)
	}
}

// millis returns d in whole milliseconds, rounded up, and whether d is
// positive.
func millis(d time.Duration) (int64, bool) {
	if d <= 0 {
		return 0, false
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms, true
}
