package budget

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memoryShards is the number of independently locked parts of a Memory.
const memoryShards = 64

// tidyEvery is how often, on its clock, a shard forgets budgets that no
// longer matter: periods that ended, and budgets with nothing spent or held.
const tidyEvery = time.Minute

// MemoryConfig configures a Memory. The zero value (or a nil pointer) gives
// the defaults.
type MemoryConfig struct {
	// Now is the clock; default time.Now. It decides the current period and
	// when holds expire.
	Now func() time.Time
	// Location is the time zone whose calendar periods follow; default UTC.
	Location *time.Location
	// HoldTTL is how long a hold reserves its amount unless settled or
	// released; default DefaultHoldTTL.
	HoldTTL time.Duration
	// SettleGrace is how long after a hold expires Settle still records
	// its cost; default DefaultSettleGrace. After that the hold is
	// forgotten.
	SettleGrace time.Duration
	// TrackSettled makes the Memory keep, beside what each budget spent,
	// what settlements added to it since the last call of TakeSettled: for
	// a store that writes spending to disk behind the requests (package
	// durable). Settling then costs an addition more per budget, and no
	// lock or allocation. Set it only if TakeSettled is called regularly:
	// until it is, every budget settled since the last call is kept in
	// memory, even one the Memory would otherwise have dropped.
	TrackSettled bool
}

// Spend is an amount added to what one budget spent in one period: what
// Memory.TakeSettled reports, and what Memory.Restore gives back.
type Spend struct {
	// Scope is the budget: its Tag, Kind, ID and Period. Limit is not used
	// (TakeSettled reports 0).
	Scope Scope
	// Start is the first instant of the period (see Period.Start), in the
	// ledger's time zone; the zero Time for a budget whose Period is None.
	Start time.Time
	// Amount is what was spent.
	Amount Micros
}

// Memory is a Ledger that keeps its budgets in this process's memory: the
// ledger for a single instance (several instances with a Memory each would
// each allow the whole budget; share a redisstore.Ledger instead). It is safe
// for concurrent use. It does no I/O and never fails for valid arguments;
// the ctx argument of its methods is unused.
//
// Budgets are split among 64 shards by Tag, each with its own lock, so every
// call locks exactly one shard. Holding and settling on budgets already in
// use allocates nothing. Budgets whose period has ended, or with nothing
// spent or held, are dropped once their holds are gone.
//
// What a Memory spent is lost with the process, unless a store keeps it:
// TakeSettled (with MemoryConfig.TrackSettled) reports what to write, and
// Restore reloads it on start. Package durable does this on local disk.
type Memory struct {
	now    func() time.Time
	loc    *time.Location
	ttl    int64 // ns
	grace  int64 // ns
	track  bool  // MemoryConfig.TrackSettled
	seed   maphash.Seed
	spans  [Monthly + 1]atomic.Pointer[span]
	shards []memShard
}

var _ Ledger = (*Memory)(nil)

// span is the period containing the current time, for one Period.
type span struct {
	start    int64 // Unix seconds, the period's identity; 0 for None
	lo, hi   int64 // [start, end) in Unix ns
	begins   time.Time
	resetsAt time.Time
}

type counterKey struct {
	tag, kind, id string
	period        Period
	start         int64
}

// counter is one budget in one period.
type counter struct {
	scope       Scope // Limit unused
	end         int64 // Unix ns; math.MaxInt64 for None
	begins      time.Time
	resetsAt    time.Time
	spent, held Micros
	refs        int32 // holds pointing here
	// With TrackSettled: what settlements added since the last
	// TakeSettled, and whether the counter is in its shard's untaken list.
	untaken Micros
	listed  bool
}

type holdState uint8

const (
	holdFree holdState = iota
	holdLive
	holdExpired
)

// hold is the record of one hold. A shard keeps its holds in a slice, reused
// through a free list, and a heap of the live and expired ones ordered by
// deadline: its expiry while live, then the end of its grace.
type hold struct {
	tag      string
	gen      uint32
	state    holdState
	n        uint8
	pos      int32 // index in the shard's heap
	amount   Micros
	expires  int64 // Unix ns
	deadline int64 // Unix ns
	counters [MaxScopes]*counter
	limits   [MaxScopes]Micros
}

type memShard struct {
	mu       sync.Mutex
	counters map[counterKey]*counter
	holds    []hold
	free     []int32
	heap     []int32    // slots in holds
	untaken  []*counter // with TrackSettled: counters with spending untaken
	nextTidy int64
	_        [64]byte // keep shards on separate cache lines
}

// NewMemory returns a Memory configured by cfg; nil means the defaults.
func NewMemory(cfg *MemoryConfig) (*Memory, error) {
	var c MemoryConfig
	if cfg != nil {
		c = *cfg
	}
	if c.HoldTTL < 0 || c.SettleGrace < 0 {
		return nil, errors.New("budget: MemoryConfig.HoldTTL or SettleGrace is negative")
	}
	if c.HoldTTL == 0 {
		c.HoldTTL = DefaultHoldTTL
	}
	if c.SettleGrace == 0 {
		c.SettleGrace = DefaultSettleGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	m := &Memory{
		now:    c.Now,
		loc:    c.Location,
		ttl:    int64(c.HoldTTL),
		grace:  int64(c.SettleGrace),
		track:  c.TrackSettled,
		seed:   maphash.MakeSeed(),
		shards: make([]memShard, memoryShards),
	}
	m.spans[None].Store(&span{lo: math.MinInt64, hi: math.MaxInt64})
	for i := range m.shards {
		m.shards[i].counters = make(map[counterKey]*counter)
	}
	return m, nil
}

// Hold implements Ledger.Hold.
func (m *Memory) Hold(_ context.Context, scopes []Scope, amount Micros) (HoldResult, error) {
	if err := ValidateHold(scopes, amount); err != nil {
		return HoldResult{}, err
	}
	now := m.now()
	ns := now.UnixNano()
	var spans [MaxScopes]*span
	for i, sc := range scopes {
		spans[i] = m.span(sc.Period, now, ns)
	}
	sh := m.shard(scopes[0].Tag)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(ns, m.grace)
	var cs [MaxScopes]*counter
	for i, sc := range scopes {
		c := sh.counters[counterKey{sc.Tag, sc.Kind, sc.ID, sc.Period, spans[i].start}]
		var spent, held Micros
		if c != nil {
			spent, held = c.spent, c.held
		}
		if !fits(sc.Limit, spent, held, amount) {
			return HoldResult{Scope: sc, Balance: NewBalance(sc.Limit, spent, held, spans[i].resetsAt)}, nil
		}
		cs[i] = c
	}
	slot := sh.alloc()
	h := &sh.holds[slot]
	h.state, h.n, h.amount = holdLive, uint8(len(scopes)), amount
	h.expires = ns + m.ttl
	best, bestLeft := 0, Micros(math.MaxInt64)
	for i, sc := range scopes {
		c := cs[i]
		if c == nil {
			c = sh.newCounter(sc, spans[i])
		}
		c.held += amount
		c.refs++
		h.counters[i], h.limits[i] = c, sc.Limit
		if left := max(sc.Limit-c.spent-c.held, 0); left < bestLeft {
			best, bestLeft = i, left
		}
	}
	h.tag = h.counters[0].scope.Tag
	sh.push(slot, h.expires)
	c := h.counters[best]
	return HoldResult{
		Allowed: true,
		ID:      HoldID{Tag: h.tag, Seq: uint64(h.gen)<<32 | uint64(slot)},
		Scope:   scopes[best],
		Balance: NewBalance(scopes[best].Limit, c.spent, c.held, c.resetsAt),
	}, nil
}

// Settle implements Ledger.Settle.
func (m *Memory) Settle(_ context.Context, id HoldID, actual Micros) (SettleResult, error) {
	if err := ValidateAmount(actual); err != nil {
		return SettleResult{}, err
	}
	ns := m.now().UnixNano()
	sh := m.shard(id.Tag)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(ns, m.grace)
	slot, h := sh.find(id)
	if h == nil {
		return SettleResult{}, ErrUnknownHold
	}
	expired := h.state == holdExpired
	for _, c := range h.counters[:h.n] {
		if !expired {
			c.held -= h.amount
		}
		c.spent += actual
	}
	if m.track && actual > 0 {
		for _, c := range h.counters[:h.n] {
			c.untaken += actual
			if !c.listed {
				c.listed = true
				sh.untaken = append(sh.untaken, c)
			}
		}
	}
	i := h.tightest()
	c := h.counters[i]
	res := SettleResult{
		Held:    h.amount,
		Expired: expired,
		Scope:   h.scope(i),
		Balance: NewBalance(h.limits[i], c.spent, c.held, c.resetsAt),
	}
	sh.remove(slot)
	return res, nil
}

// Release implements Ledger.Release.
func (m *Memory) Release(_ context.Context, id HoldID) error {
	ns := m.now().UnixNano()
	sh := m.shard(id.Tag)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(ns, m.grace)
	slot, h := sh.find(id)
	if h == nil {
		return ErrUnknownHold
	}
	if h.state == holdLive {
		for _, c := range h.counters[:h.n] {
			c.held -= h.amount
		}
	}
	sh.remove(slot)
	return nil
}

// Balance implements Ledger.Balance.
func (m *Memory) Balance(_ context.Context, scope Scope) (Balance, error) {
	if err := scope.Valid(); err != nil {
		return Balance{}, err
	}
	now := m.now()
	ns := now.UnixNano()
	sp := m.span(scope.Period, now, ns)
	sh := m.shard(scope.Tag)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(ns, m.grace)
	var spent, held Micros
	if c := sh.counters[counterKey{scope.Tag, scope.Kind, scope.ID, scope.Period, sp.start}]; c != nil {
		spent, held = c.spent, c.held
	}
	return NewBalance(scope.Limit, spent, held, sp.resetsAt), nil
}

// TakeSettled appends to buf what settlements added to each budget since
// the last call, one Spend per budget and period with the sum, and returns
// the extended buf; what it reports is not reported again. It is for a store
// writing spending behind the requests (package durable): whatever a Settle
// that returned before TakeSettled was called recorded is in its answer.
// Without MemoryConfig.TrackSettled it returns buf as it is. Passing the
// previous answer's buf[:0] makes it allocation-free.
//
// A budget forgotten and tracked again between two calls (say, after its
// holds ended and the clock moved on, in a period that ended) may appear
// twice: the amounts add up.
func (m *Memory) TakeSettled(buf []Spend) []Spend {
	if !m.track {
		return buf
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, c := range sh.untaken {
			buf = append(buf, Spend{Scope: c.scope, Start: c.begins, Amount: c.untaken})
			c.untaken, c.listed = 0, false
		}
		clear(sh.untaken)
		sh.untaken = sh.untaken[:0]
		sh.mu.Unlock()
	}
	return buf
}

// Restore adds sp.Amount to what the budget sp.Scope spent in the period
// that contains sp.Start on m's calendar (or, for a budget whose Period is
// None, in its lifetime), as a settlement would, but without a hold and
// without reporting it to TakeSettled: it is for a store reloading the
// spending it kept (package durable). sp.Scope.Limit is ignored. Spending
// in a period that has ended by m's clock no longer counts, so Restore
// ignores it. The error, for an invalid scope or a negative amount, wraps
// ErrInvalidScope or ErrInvalidAmount.
func (m *Memory) Restore(sp Spend) error {
	sc := sp.Scope
	sc.Limit = 0
	if err := sc.Valid(); err != nil {
		return err
	}
	if sp.Amount < 0 {
		return fmt.Errorf("%w: %d is negative", ErrInvalidAmount, int64(sp.Amount))
	}
	ns := m.now().UnixNano()
	per := m.spans[None].Load()
	if sc.Period != None {
		start, end := sc.Period.Start(sp.Start, m.loc), sc.Period.End(sp.Start, m.loc)
		if end.UnixNano() <= ns {
			return nil
		}
		per = &span{start: start.Unix(), lo: start.UnixNano(), hi: end.UnixNano(), begins: start, resetsAt: end}
	}
	sh := m.shard(sc.Tag)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(ns, m.grace)
	c := sh.counters[counterKey{sc.Tag, sc.Kind, sc.ID, sc.Period, per.start}]
	if c == nil {
		c = sh.newCounter(sc, per)
	}
	c.spent += sp.Amount
	return nil
}

// Holds returns the number of holds m remembers: those live, and those
// expired less than SettleGrace ago.
func (m *Memory) Holds() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.heap)
		sh.mu.Unlock()
	}
	return n
}

// fits reports whether amount fits a budget (see Ledger).
func fits(limit, spent, held, amount Micros) bool {
	if amount == 0 {
		return spent+held < limit
	}
	return spent+held+amount <= limit
}

func (m *Memory) shard(tag string) *memShard {
	return &m.shards[maphash.String(m.seed, tag)%memoryShards]
}

// span returns the period of p containing now (ns is now in Unix ns).
func (m *Memory) span(p Period, now time.Time, ns int64) *span {
	s := m.spans[p].Load()
	if s != nil && s.lo <= ns && ns < s.hi {
		return s
	}
	start, end := p.Start(now, m.loc), p.End(now, m.loc)
	s = &span{start: start.Unix(), lo: start.UnixNano(), hi: end.UnixNano(), begins: start, resetsAt: end}
	m.spans[p].Store(s)
	return s
}

// newCounter adds the counter of sc in period sp. sh.mu is held.
func (sh *memShard) newCounter(sc Scope, sp *span) *counter {
	// Copy the strings so that ones sliced from a larger buffer (a request
	// body, say) do not keep the whole buffer alive.
	sc.Tag, sc.Kind, sc.ID, sc.Limit = strings.Clone(sc.Tag), strings.Clone(sc.Kind), strings.Clone(sc.ID), 0
	c := &counter{scope: sc, end: sp.hi, begins: sp.begins, resetsAt: sp.resetsAt}
	sh.counters[counterKey{sc.Tag, sc.Kind, sc.ID, sc.Period, sp.start}] = c
	return c
}

// find returns the live or expired hold id names, or nil. sh.mu is held.
func (sh *memShard) find(id HoldID) (int32, *hold) {
	slot, gen := uint32(id.Seq), uint32(id.Seq>>32)
	if uint64(slot) >= uint64(len(sh.holds)) {
		return 0, nil
	}
	h := &sh.holds[slot]
	if h.state == holdFree || h.gen != gen || h.tag != id.Tag {
		return 0, nil
	}
	return int32(slot), h
}

// alloc returns a free slot in sh.holds, with a new generation. sh.mu is
// held.
func (sh *memShard) alloc() int32 {
	var slot int32
	if n := len(sh.free); n > 0 {
		slot = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		sh.holds = append(sh.holds, hold{})
		slot = int32(len(sh.holds) - 1)
	}
	h := &sh.holds[slot]
	h.gen++
	if h.gen == 0 { // wrapped: 0 would make the zero HoldID valid
		h.gen = 1
	}
	return slot
}

// remove forgets the hold in slot. sh.mu is held.
func (sh *memShard) remove(slot int32) {
	h := &sh.holds[slot]
	sh.heapRemove(h.pos)
	for i, c := range h.counters[:h.n] {
		c.refs--
		h.counters[i] = nil
	}
	h.tag, h.state, h.n = "", holdFree, 0
	sh.free = append(sh.free, slot)
}

// advance expires the holds whose TTL has run out by ns, and forgets those
// whose grace has too; once in a while it also drops counters that no
// longer matter. sh.mu is held.
func (sh *memShard) advance(ns, grace int64) {
	for len(sh.heap) > 0 {
		slot := sh.heap[0]
		h := &sh.holds[slot]
		if h.deadline > ns {
			break
		}
		if h.state == holdLive {
			for _, c := range h.counters[:h.n] {
				c.held -= h.amount
			}
			h.state = holdExpired
			sh.reschedule(slot, h.expires+grace)
		} else {
			sh.remove(slot)
		}
	}
	if ns >= sh.nextTidy {
		sh.nextTidy = ns + int64(tidyEvery)
		for k, c := range sh.counters {
			if c.refs == 0 && c.held == 0 && (c.spent == 0 || c.end <= ns) {
				delete(sh.counters, k)
			}
		}
	}
}

// scope returns the Scope of the hold's i-th budget.
func (h *hold) scope(i int) Scope {
	sc := h.counters[i].scope
	sc.Limit = h.limits[i]
	return sc
}

// tightest returns the index of the hold's budget with the least remaining.
func (h *hold) tightest() int {
	best, bestLeft := 0, Micros(math.MaxInt64)
	for i, c := range h.counters[:h.n] {
		if left := max(h.limits[i]-c.spent-c.held, 0); left < bestLeft {
			best, bestLeft = i, left
		}
	}
	return best
}

// The heap orders sh.heap by the deadline of each hold; every hold knows
// its position (pos).

func (sh *memShard) push(slot int32, deadline int64) {
	h := &sh.holds[slot]
	h.deadline, h.pos = deadline, int32(len(sh.heap))
	sh.heap = append(sh.heap, slot)
	sh.up(int(h.pos))
}

func (sh *memShard) reschedule(slot int32, deadline int64) {
	h := &sh.holds[slot]
	h.deadline = deadline
	if !sh.down(int(h.pos)) {
		sh.up(int(h.pos))
	}
}

func (sh *memShard) heapRemove(pos int32) {
	last := int32(len(sh.heap) - 1)
	if pos != last {
		sh.swap(int(pos), int(last))
	}
	sh.heap = sh.heap[:last]
	if pos != last && !sh.down(int(pos)) {
		sh.up(int(pos))
	}
}

func (sh *memShard) less(i, j int) bool {
	return sh.holds[sh.heap[i]].deadline < sh.holds[sh.heap[j]].deadline
}

func (sh *memShard) swap(i, j int) {
	sh.heap[i], sh.heap[j] = sh.heap[j], sh.heap[i]
	sh.holds[sh.heap[i]].pos = int32(i)
	sh.holds[sh.heap[j]].pos = int32(j)
}

func (sh *memShard) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !sh.less(i, parent) {
			return
		}
		sh.swap(i, parent)
		i = parent
	}
}

// down moves the element at i down to its place and reports whether it
// moved.
func (sh *memShard) down(i int) bool {
	start, n := i, len(sh.heap)
	for {
		child := 2*i + 1
		if child >= n {
			break
		}
		if r := child + 1; r < n && sh.less(r, child) {
			child = r
		}
		if !sh.less(child, i) {
			break
		}
		sh.swap(i, child)
		i = child
	}
	return i > start
}
