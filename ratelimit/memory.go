package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/gatekit/gatekit/ratelimit/internal/bucket"
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
// each grant the whole quota; share a redisstore.Store instead). Decisions on
// a key already tracked allocate nothing and lock only the key's shard, one
// of 64. Memory is safe for concurrent use. It does no I/O and never fails
// for a valid request; the ctx argument of its methods is unused.
type Memory struct {
	now    func() time.Time // nil: the monotonic clock from start
	start  time.Time        // time.Now at NewMemory, with its monotonic reading
	startN int64            // start.UnixNano()
	seed   maphash.Seed
	shards []memoryShard
}

// Memory shares its integer arithmetic with the Redis store instead of
// wrapping golang.org/x/time/rate, so that the two answer every request
// identically: rate.Limiter cannot take a charge larger than its burst
// (ReserveN refuses it and leaves the tokens uncharged), has no bound on
// debt, reports no retry time from AllowN (ReserveN allocates one), and would
// cost a pointer and about 80 bytes per key where an entry here is 48.

var _ Limiter = (*Memory)(nil)

type memoryShard struct {
	mu sync.Mutex
	// slots indexes entries by key hash: an open-addressing table with
	// linear probing, a power of two long and at most 3/4 full. A slot is 0
	// when empty, else the high 32 bits of the key's hash (which also pick
	// the slot to start probing from) above the entry's position + 1. A
	// matching hash is only a candidate: the key itself is compared.
	slots   []uint64
	entries []memoryEntry
	max     int
	_       [64]byte // keep shards on separate cache lines
}

// memoryMinSlots is the length of a shard's table before it grows.
const memoryMinSlots = 8

type memoryEntry struct {
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
		s.slots = make([]uint64, memoryMinSlots)
		s.max = c.MaxKeys / n
		if i < c.MaxKeys%n {
			s.max++
		}
		s.max = min(s.max, math.MaxInt32) // positions must fit a slot
	}
	return m, nil
}

// Allow implements Limiter.Allow.
func (m *Memory) Allow(_ context.Context, key string, p Policy, n int64) (Decision, error) {
	return m.decide(key, p, bucket.OpAllow, n)
}

// Charge implements Limiter.Charge.
func (m *Memory) Charge(_ context.Context, key string, p Policy, n int64) (Decision, error) {
	return m.decide(key, p, bucket.OpCharge, n)
}

// Len returns the number of keys tracked.
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

func (m *Memory) decide(key string, p Policy, op bucket.Op, n int64) (Decision, error) {
	if n < 0 {
		return Decision{}, ErrNegativeUnits
	}
	prm, err := bucket.New(p.Limit, p.Window, p.Burst)
	if err != nil {
		return Decision{}, err
	}
	now := m.nowMilli()
	// One hash serves both to pick the shard (low half) and to find the
	// key in it (high half).
	h := maphash.String(m.seed, key)
	s := &m.shards[uint64(uint32(h))*uint64(len(m.shards))>>32]
	tag := uint32(h >> 32)

	s.mu.Lock()
	i := s.find(key, tag)
	var st *bucket.State
	if i >= 0 {
		st = &s.entries[i].state
	}
	r := bucket.Decide(st, prm, now, op, n)
	if r.Write {
		if i >= 0 {
			e := &s.entries[i]
			e.state, e.fullAt = r.State, r.FullAt
		} else {
			m.insert(s, key, tag, r.State, r.FullAt, now)
		}
	}
	s.mu.Unlock()

	return Decision{
		Allowed:    r.Allowed,
		Limit:      p.Limit,
		Remaining:  r.Remaining,
		ResetAfter: time.Duration(r.ResetAfter) * time.Millisecond,
		RetryAfter: time.Duration(r.RetryAfter) * time.Millisecond,
	}, nil
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

// find returns the position in s.entries of key, whose hash has tag as its
// high half, or -1 if the shard does not hold key. s.mu is held.
func (s *memoryShard) find(key string, tag uint32) int {
	mask := uint32(len(s.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == tag {
			if j := int(uint32(v) - 1); s.entries[j].key == key {
				return j
			}
		}
	}
}

// insert adds key, whose hash has tag as its high half, evicting another key
// if the shard is full. s.mu is held.
func (m *Memory) insert(s *memoryShard, key string, tag uint32, st bucket.State, fullAt, now int64) {
	// Copy the key so that a key sliced from a larger buffer (a request
	// body, say) does not keep the whole buffer alive.
	e := memoryEntry{key: strings.Clone(key), state: st, fullAt: fullAt}
	if len(s.entries) < s.max {
		if 4*(len(s.entries)+1) > 3*len(s.slots) {
			s.grow()
		}
		s.put(uint64(tag)<<32 | uint64(len(s.entries)+1))
		s.entries = append(s.entries, e)
		return
	}
	victim := rand.IntN(len(s.entries))
	for range evictionSamples - 1 {
		if s.entries[victim].fullAt <= now {
			break // already full: forgetting it loses nothing
		}
		if j := rand.IntN(len(s.entries)); s.entries[j].fullAt < s.entries[victim].fullAt {
			victim = j
		}
	}
	s.remove(uint64(maphash.String(m.seed, s.entries[victim].key)>>32<<32) | uint64(victim+1))
	s.entries[victim] = e
	s.put(uint64(tag)<<32 | uint64(victim+1))
}

// put adds slot value v to the table, which has room for it. s.mu is held.
func (s *memoryShard) put(v uint64) {
	mask := uint32(len(s.slots) - 1)
	i := uint32(v>>32) & mask
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	s.slots[i] = v
}

// remove takes slot value v, which the table holds, out of it. s.mu is held.
func (s *memoryShard) remove(v uint64) {
	mask := uint32(len(s.slots) - 1)
	i := uint32(v>>32) & mask
	for s.slots[i] != v {
		i = (i + 1) & mask
	}
	// Move back each following slot of the run that probing from its home
	// would no longer reach across the hole at i.
	for j := (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		home := uint32(s.slots[j]>>32) & mask
		if (j-home)&mask >= (j-i)&mask { // home is at or before i
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = 0
}

// grow doubles the table. Each slot holds the bits that place it, so the
// keys are not hashed again. s.mu is held.
func (s *memoryShard) grow() {
	old := s.slots
	s.slots = make([]uint64, 2*len(old))
	for _, v := range old {
		if v != 0 {
			s.put(v)
		}
	}
}
