package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekit/gatekit/internal/bucket"
)

// DefaultMaxKeys is the number of keys a Memory tracks when
// MemoryConfig.MaxKeys is 0: about 12 MB with 20-byte keys.
const DefaultMaxKeys = 100_000

// memoryShards is the number of independently locked parts of a Memory.
const memoryShards = 64

// evictionSamples is how many entries a full shard looks at to pick one to
// evict.
const evictionSamples = 5

// MemoryConfig configures a Memory. The zero value (or a nil pointer) gives
// the defaults.
type MemoryConfig struct {
	// MaxKeys is the most keys tracked at once; default DefaultMaxKeys. It
	// is a hard cap, split evenly across 64 shards by key hash, so allow
	// some headroom (10% is plenty above a few thousand keys) over the
	// number of keys expected to be active at once. When a shard is full,
	// a new key evicts whichever of a few sampled keys has the bucket that
	// is (or will be) full soonest. A full bucket is the same as an
	// untracked one, so eviction loses nothing unless more keys than
	// MaxKeys are active at once, and then it errs on the side of allowing.
	MaxKeys int
	// Now is the clock. Decisions use it to the millisecond. By default
	// the Memory reads the monotonic clock, counting from time.Now at
	// NewMemory: it agrees with time.Now until the wall clock is stepped
	// (by NTP, say), and unlike time.Now it never jumps with it, so a step
	// neither refills nor drains any bucket.
	Now func() time.Time
}

// Memory is a Limiter that keeps its buckets in this process's memory: the
// store for a single instance (several instances with a Memory each would
// each grant the whole quota; across instances, admit requests with package
// admission on an admission/redisstore.Store instead). Decisions on
// a key already tracked allocate nothing and lock only the key's shard, one
// of 64. Memory is safe for concurrent use. It does no I/O and never fails
// for a valid request; the ctx argument of its methods is unused.
type Memory struct {
	now    func() time.Time // nil: the monotonic clock from start
	start  time.Time        // time.Now at NewMemory, with its monotonic reading
	startN int64            // start.UnixNano()
	seed   maphash.Seed
	shards []memoryShard
	// policies caches the bucket parameters of valid policies, in slots
	// picked by a hash of the policy.
	policies [8]atomic.Pointer[policyParams]
}

// Memory shares its integer arithmetic (internal/bucket) with package
// admission's stores, Redis's included, instead of wrapping
// golang.org/x/time/rate, so that they answer every request
// identically: rate.Limiter reports no retry time from AllowN (ReserveN
// allocates one), and would cost a pointer and about 80 bytes per key where
// an entry here is 56.

type memoryShard struct {
	mu sync.Mutex
	// table holds the shard's entries in place, by key hash: an
	// open-addressing table with linear probing, a power of two long and
	// at most 7/8 full, so that finding a key reads one entry, not an
	// index and then an entry.
	table []memoryEntry
	n     int // entries in use
	max   int
	_     [16]byte
	// peek is the table too, for Allow to start loading a key's entry
	// before it has the lock: entries' hash fields are written atomically
	// and read so, outside the lock, only as that hint. It is on a cache
	// line of its own, which only a growing table writes, so that reading
	// it does not fetch the line the lock is on, which other cores write.
	peek atomic.Pointer[[]memoryEntry]
	_    [56]byte // keep shards on separate cache lines
}

// memoryMinTable is the length of a shard's table before it grows.
const memoryMinTable = 8

type memoryEntry struct {
	// hash is 0 when the entry is empty, else the high 32 bits of the
	// key's hash (which also pick the entry to start probing from) above
	// a 1. A matching hash is only a candidate: the key itself is compared.
	hash   uint64
	key    string
	state  bucket.State
	fullAt int64 // millisecond from which state is a full bucket
}

// NewMemory returns a Memory configured by cfg; nil means the defaults.
func NewMemory(cfg *MemoryConfig) (*Memory, error) {
	var c MemoryConfig
	if cfg != nil {
		c = *cfg
	}
	if c.MaxKeys < 0 {
		return nil, errors.New("ratelimit: MemoryConfig.MaxKeys is negative")
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	n := min(memoryShards, c.MaxKeys)
	m := &Memory{now: c.Now, seed: maphash.MakeSeed(), shards: make([]memoryShard, n)}
	if m.now == nil {
		m.start = time.Now()
		m.startN = m.start.UnixNano()
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.setTable(make([]memoryEntry, memoryMinTable))
		s.max = c.MaxKeys / n
		if i < c.MaxKeys%n {
			s.max++
		}
		s.max = min(s.max, math.MaxInt32) // so that 32 hash bits can place any entry
	}
	return m, nil
}

// Len returns the number of keys tracked.
func (m *Memory) Len() int {
	total := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		total += s.n
		s.mu.Unlock()
	}
	return total
}

// Allow implements Limiter.Allow.
func (m *Memory) Allow(_ context.Context, key string, p Policy, n int64) (Decision, error) {
	if n < 0 {
		return Decision{}, ErrNegativeUnits
	}
	now := m.nowMilli()
	// One hash serves both to pick the shard (low half) and to find the
	// key in it (high half).
	h := maphash.String(m.seed, key)
	si := uint64(uint32(h)) * uint64(len(m.shards)) >> 32
	s := &m.shards[si]
	hash := h>>32<<32 | 1
	// Touch the entry where the search for key starts, so that it is on
	// its way to the cache while the policy is checked and the lock taken.
	t := *s.peek.Load()
	atomic.LoadUint64(&t[uint32(hash>>32)&uint32(len(t)-1)].hash)
	prm, err := m.params(p)
	if err != nil {
		return Decision{}, err
	}

	s.mu.Lock()
	i := s.find(key, hash)
	var r bucket.Result
	if i >= 0 {
		r = s.apply(i, prm, now, n)
	} else {
		r = bucket.Decide(nil, prm, now, bucket.OpAllow, n)
		if r.Write {
			m.insert(s, key, hash, r.State, r.FullAt, now)
		}
	}
	s.mu.Unlock()
	return decision(p, r), nil
}

// apply decides on n units from the bucket at position i of s's table,
// writing its new state. s.mu is held.
func (s *memoryShard) apply(i int, prm bucket.Params, now, n int64) bucket.Result {
	e := &s.table[i]
	r := bucket.Decide(&e.state, prm, now, bucket.OpAllow, n)
	if r.Write {
		e.state, e.fullAt = r.State, r.FullAt
	}
	return r
}

// decision is a bucket's answer as a Decision on policy p.
func decision(p Policy, r bucket.Result) Decision {
	return Decision{
		Allowed:    r.Allowed,
		Limit:      p.Limit,
		Remaining:  r.Remaining,
		ResetAfter: time.Duration(r.ResetAfter) * time.Millisecond,
		RetryAfter: time.Duration(r.RetryAfter) * time.Millisecond,
	}
}

// params returns the bucket parameters of p, from a small cache of the
// policies last used: working them out takes divisions, and a service has
// few policies.
func (m *Memory) params(p Policy) (bucket.Params, error) {
	slot := &m.policies[uint64(p.Limit^int64(p.Window)^p.Burst)*0x9e3779b97f4a7c15>>61]
	if c := slot.Load(); c != nil && c.policy == p {
		return c.params, nil
	}
	prm, err := bucket.New(p.Limit, p.Window, p.Burst)
	if err != nil {
		return prm, err
	}
	slot.Store(&policyParams{policy: p, params: prm})
	return prm, nil
}

// policyParams is a valid Policy with its bucket parameters.
type policyParams struct {
	policy Policy
	params bucket.Params
}

// nowMilli returns the current Unix time in milliseconds. Without a
// configured clock it reads only the monotonic clock: time.Since on a Time
// with a monotonic reading is a single clock read, where time.Now is two.
func (m *Memory) nowMilli() int64 {
	if m.now != nil {
		return m.now().UnixMilli()
	}
	return (m.startN + int64(time.Since(m.start))) / int64(time.Millisecond)
}

// find returns the position in s.table of key, whose hash field is hash, or
// -1 if the shard does not hold key. s.mu is held.
func (s *memoryShard) find(key string, hash uint64) int {
	mask := uint32(len(s.table) - 1)
	for i := uint32(hash>>32) & mask; ; i = (i + 1) & mask {
		e := &s.table[i]
		if e.hash == hash && e.key == key {
			return int(i)
		}
		if e.hash == 0 {
			return -1
		}
	}
}

// insert adds key, whose hash field is hash, evicting another key if the
// shard is full. s.mu is held.
func (m *Memory) insert(s *memoryShard, key string, hash uint64, st bucket.State, fullAt, now int64) {
	// Copy the key so that a key sliced from a larger buffer (a request
	// body, say) does not keep the whole buffer alive.
	e := memoryEntry{hash: hash, key: strings.Clone(key), state: st, fullAt: fullAt}
	if s.n < s.max {
		if 8*(s.n+1) > 7*len(s.table) {
			s.grow()
		}
		s.put(e)
		s.n++
		return
	}
	victim := s.sample()
	for range evictionSamples - 1 {
		if s.table[victim].fullAt <= now {
			break // already full: forgetting it loses nothing
		}
		if j := s.sample(); s.table[j].fullAt < s.table[victim].fullAt {
			victim = j
		}
	}
	s.remove(victim)
	s.put(e)
}

// sample returns the position of a random entry in use; the shard holds at
// least one. s.mu is held.
func (s *memoryShard) sample() int {
	mask := len(s.table) - 1
	i := rand.IntN(len(s.table))
	for s.table[i].hash == 0 {
		i = (i + 1) & mask
	}
	return i
}

// put adds e to the table, which has room for it. s.mu is held.
func (s *memoryShard) put(e memoryEntry) {
	mask := uint32(len(s.table) - 1)
	i := uint32(e.hash>>32) & mask
	for s.table[i].hash != 0 {
		i = (i + 1) & mask
	}
	s.set(i, &e)
}

// remove empties the entry at position i. s.mu is held.
func (s *memoryShard) remove(i int) {
	mask := len(s.table) - 1
	// Move back each following entry of the run that probing from its home
	// would no longer reach across the hole at i.
	for j := (i + 1) & mask; s.table[j].hash != 0; j = (j + 1) & mask {
		home := int(s.table[j].hash>>32) & mask
		if (j-home)&mask >= (j-i)&mask { // home is at or before i
			s.set(uint32(i), &s.table[j])
			i = j
		}
	}
	s.set(uint32(i), &memoryEntry{})
}

// set copies e to position i, writing the hash atomically. s.mu is held.
func (s *memoryShard) set(i uint32, e *memoryEntry) {
	d := &s.table[i]
	d.key, d.state, d.fullAt = e.key, e.state, e.fullAt
	atomic.StoreUint64(&d.hash, e.hash)
}

// setTable replaces the table with t. s.mu is held, or s is not shared yet.
func (s *memoryShard) setTable(t []memoryEntry) {
	s.table = t
	s.peek.Store(&t)
}

// grow doubles the table. Each entry holds the bits that place it, so the
// keys are not hashed again. s.mu is held.
func (s *memoryShard) grow() {
	old := s.table
	s.table = make([]memoryEntry, 2*len(old))
	for i := range old {
		if old[i].hash != 0 {
			s.put(old[i])
		}
	}
	s.setTable(s.table)
}
