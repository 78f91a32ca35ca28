package admission

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/internal/bucket"
	"github.com/gatekit/gatekit/ratelimit"
)

// memoryShards is the number of independently locked parts of a Memory.
const memoryShards = 64

// tidyEvery is how often, on its clock, a shard forgets buckets that are
// full again and limits with no slot held.
const tidyEvery = time.Minute

// MemoryConfig configures a Memory. The zero value (or a nil pointer)
// gives the defaults.
type MemoryConfig struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// TTL is how long an unsettled reservation holds its slots and budget
	// amounts; default DefaultTTL.
	TTL time.Duration
	// SettleGrace is how long after a reservation expires Settle still
	// records its spend; default DefaultSettleGrace.
	SettleGrace time.Duration
	// Ledger keeps the budgets: a budget.Memory, or package durable's
	// ledger to keep spend across restarts. It must answer from this
	// process's memory, be used by nothing else for the same budgets, and
	// hold for TTL (its own HoldTTL). Default: a budget.Memory on Now, in
	// Location, with HoldTTL TTL.
	Ledger budget.Ledger
	// Location is the time zone of the default Ledger's calendar periods;
	// default UTC.
	Location *time.Location
}

// Memory is a Store that keeps its state in this process's memory: the
// store of a single instance (several instances with a Memory each would
// each allow every limit in full; share an admission/redisstore.Store
// instead). It is safe for concurrent use and does no I/O; the ctx of its
// methods is unused.
//
// State is split among 64 shards by Tag, each with its own lock, so a
// call locks one shard: every claim of a Request is decided and taken
// under that lock. Reserving and settling on keys already in use allocates
// nothing. Buckets that are full again and limits with no slot held are
// forgotten, as budgets are by their Ledger.
type Memory struct {
	now    func() time.Time
	ttl    int64 // ns
	grace  int64 // ns
	ledger budget.Ledger
	seed   maphash.Seed
	shards []memShard
}

var _ Store = (*Memory)(nil)

// tagKey names a bucket or a slot limit: a Request's Tag and Holder, and
// a claim's Key.
type tagKey struct{ tag, holder, key string }

// rateState is one token bucket.
type rateState struct {
	st     bucket.State
	fullAt int64 // ms: from then on the bucket is full and may be forgotten
}

// gauge is one concurrency limit: the slots held.
type gauge struct{ inUse int64 }

// reservation is what a shard keeps of one reservation until it is
// settled or forgotten.
type reservation struct {
	seq      uint64
	live     bool  // still holding its slots (not expired)
	deadline int64 // ns: its expiry while live, then the end of its grace
	pos      int   // index in the shard's heap
	hold     budget.HoldID
	nslots   int
	slots    [MaxSlots]*gauge
}

type memShard struct {
	mu       sync.Mutex
	rates    map[tagKey]*rateState
	gauges   map[tagKey]*gauge
	resv     map[uint64]*reservation
	expiry   expiryHeap
	free     []*reservation
	seq      uint64
	nextTidy int64
	_        [64]byte // keep shards on separate cache lines
}

// NewMemory returns a Memory configured by cfg; nil means the defaults.
func NewMemory(cfg *MemoryConfig) (*Memory, error) {
	var c MemoryConfig
	if cfg != nil {
		c = *cfg
	}
	if c.TTL < 0 || c.SettleGrace < 0 {
		return nil, errors.New("admission: MemoryConfig.TTL or SettleGrace is negative")
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.SettleGrace == 0 {
		c.SettleGrace = DefaultSettleGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Ledger == nil {
		l, err := budget.NewMemory(&budget.MemoryConfig{Now: c.Now, Location: c.Location, HoldTTL: c.TTL, SettleGrace: c.SettleGrace})
		if err != nil {
			return nil, fmt.Errorf("admission: %w", err)
		}
		c.Ledger = l
	}
	m := &Memory{
		now: c.Now, ttl: int64(c.TTL), grace: int64(c.SettleGrace), ledger: c.Ledger,
		seed: maphash.MakeSeed(), shards: make([]memShard, memoryShards),
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.rates = map[tagKey]*rateState{}
		sh.gauges = map[tagKey]*gauge{}
		sh.resv = map[uint64]*reservation{}
	}
	return m, nil
}

// Ledger returns the ledger the Memory keeps budgets in.
func (m *Memory) Ledger() budget.Ledger { return m.ledger }

func (m *Memory) shard(tag string) *memShard {
	return &m.shards[maphash.String(m.seed, tag)%memoryShards]
}

// Reserve implements Store.Reserve.
func (m *Memory) Reserve(ctx context.Context, r *Request) (Result, error) {
	var res Result
	var params [MaxRates]bucket.Params
	if err := validate(r, &params); err != nil {
		return res, err
	}
	now := m.now()
	ns := now.UnixNano()
	ms := now.UnixMilli()
	var decided [MaxRates]bucket.Result
	sh := m.shard(r.Tag)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(m, ns)

	var states [MaxRates]*rateState
	for i, c := range r.Rates {
		states[i] = sh.rates[tagKey{r.Tag, r.Holder, c.Key}]
		var st *bucket.State
		if states[i] != nil {
			st = &states[i].st
		}
		decided[i] = bucket.Decide(st, params[i], ms, bucket.OpAllow, c.N)
		res.Rates[i] = decision(c.Policy.Limit, decided[i])
		if !decided[i].Allowed && res.Refused == KindNone {
			res.Refused, res.Index, res.Never = KindRate, i, c.N > params[i].Burst
		}
	}
	var gauges [MaxSlots]*gauge
	for i, s := range r.Slots {
		gauges[i] = sh.gauges[tagKey{r.Tag, r.Holder, s.Key}]
		if gauges[i] != nil {
			res.InUse[i] = gauges[i].inUse
		}
		if res.InUse[i] >= s.Limit && res.Refused == KindNone {
			res.Refused, res.Index = KindSlot, i
		}
	}
	if res.Refused != KindNone {
		return res, nil
	}
	var hold budget.HoldID
	if len(r.Budgets) > 0 {
		hr, err := m.ledger.Hold(ctx, r.Budgets, r.Cost)
		if err != nil {
			return res, err
		}
		res.Budget, res.Balance = scopeIndex(r, hr.Scope), hr.Balance
		if !hr.Allowed {
			b := r.Budgets[res.Budget]
			res.Refused, res.Index, res.Never = KindBudget, res.Budget, r.Cost > b.Limit || b.Limit == 0
			return res, nil
		}
		hold = hr.ID
	}

	// Every claim fits: take them all.
	for i, c := range r.Rates {
		if !decided[i].Write {
			continue
		}
		if states[i] == nil {
			states[i] = &rateState{}
			sh.rates[tagKey{r.Tag, r.Holder, c.Key}] = states[i]
		}
		states[i].st, states[i].fullAt = decided[i].State, decided[i].FullAt
	}
	if !r.Settles() {
		res.Allowed = true
		return res, nil
	}
	rv := sh.alloc()
	rv.live, rv.hold, rv.nslots = true, hold, len(r.Slots)
	for i, s := range r.Slots {
		if gauges[i] == nil {
			gauges[i] = &gauge{}
			sh.gauges[tagKey{r.Tag, r.Holder, s.Key}] = gauges[i]
		}
		gauges[i].inUse++
		res.InUse[i]++
		rv.slots[i] = gauges[i]
	}
	rv.deadline = ns + m.ttl
	heap.Push(&sh.expiry, rv)
	sh.resv[rv.seq] = rv
	res.Allowed, res.ID = true, ID{Tag: r.Tag, Seq: rv.seq}
	return res, nil
}

// scopeIndex is the index of scope among r's budgets.
func scopeIndex(r *Request, scope budget.Scope) int {
	for i, b := range r.Budgets {
		if b.Kind == scope.Kind && b.ID == scope.ID && b.Period == scope.Period {
			return i
		}
	}
	return 0
}

// decision is a bucket's result as a ratelimit.Decision.
func decision(limit int64, b bucket.Result) ratelimit.Decision {
	return ratelimit.Decision{
		Allowed: b.Allowed, Limit: limit, Remaining: b.Remaining,
		ResetAfter: time.Duration(b.ResetAfter) * time.Millisecond,
		RetryAfter: time.Duration(b.RetryAfter) * time.Millisecond,
	}
}

// Settle implements Store.Settle.
func (m *Memory) Settle(ctx context.Context, r *Request, id ID, u Usage) (SettleResult, error) {
	var res SettleResult
	if err := Validate(r); err != nil {
		return res, err
	}
	if id.Tag != r.Tag {
		return res, fmt.Errorf("%w: %v is not of tag %q", ErrUnknownReservation, id, r.Tag)
	}
	if u.Cost < 0 {
		return res, fmt.Errorf("%w: negative cost", ErrInvalidRequest)
	}
	now := m.now()
	ns, ms := now.UnixNano(), now.UnixMilli()
	sh := m.shard(r.Tag)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(m, ns)
	rv := sh.resv[id.Seq]
	if rv == nil {
		return res, fmt.Errorf("%w: %v", ErrUnknownReservation, id)
	}
	if rv.hold != (budget.HoldID{}) {
		if _, err := m.ledger.Settle(ctx, rv.hold, min(u.Cost, r.Cost)); err != nil && !errors.Is(err, budget.ErrUnknownHold) {
			// The reservation stays, so the call can be made again.
			return res, err
		}
	}
	for i, c := range r.Rates {
		back := c.N - max(u.Used[i], 0)
		if !c.Refund || back <= 0 {
			continue
		}
		st := sh.rates[tagKey{r.Tag, r.Holder, c.Key}]
		if st == nil {
			continue // full again, and forgotten
		}
		p, _ := bucket.New(c.Policy.Limit, c.Policy.Window, c.Policy.Burst)
		d := bucket.Decide(&st.st, p, ms, bucket.OpRefund, back)
		st.st, st.fullAt = d.State, d.FullAt
	}
	res.Expired = !rv.live
	if rv.live {
		rv.release()
	}
	heap.Remove(&sh.expiry, rv.pos)
	delete(sh.resv, rv.seq)
	sh.free = append(sh.free, rv)
	return res, nil
}

// Balance implements Store.Balance.
func (m *Memory) Balance(ctx context.Context, scope budget.Scope) (budget.Balance, error) {
	return m.ledger.Balance(ctx, scope)
}

// InUse returns how many slots of key, of holder under tag, are held: for
// status pages and tests.
func (m *Memory) InUse(tag, holder, key string) int64 {
	sh := m.shard(tag)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.advance(m, m.now().UnixNano())
	if g := sh.gauges[tagKey{tag, holder, key}]; g != nil {
		return g.inUse
	}
	return 0
}

// release frees the reservation's slots.
func (rv *reservation) release() {
	for i := range rv.nslots {
		rv.slots[i].inUse--
		rv.slots[i] = nil
	}
	rv.live = false
}

// alloc returns a reservation record with a new sequence number, reused
// when one is free.
func (sh *memShard) alloc() *reservation {
	var rv *reservation
	if n := len(sh.free); n > 0 {
		rv, sh.free = sh.free[n-1], sh.free[:n-1]
		*rv = reservation{}
	} else {
		rv = &reservation{}
	}
	sh.seq++
	rv.seq = sh.seq
	return rv
}

// advance expires the reservations whose TTL has passed at ns, forgets
// those whose grace has passed, and now and then drops what no longer
// matters.
func (sh *memShard) advance(m *Memory, ns int64) {
	for len(sh.expiry) > 0 && sh.expiry[0].deadline <= ns {
		rv := sh.expiry[0]
		if rv.live {
			// Its budget hold expires in the ledger on the same clock.
			rv.release()
			rv.deadline += m.grace
			heap.Fix(&sh.expiry, 0)
			continue
		}
		heap.Pop(&sh.expiry)
		delete(sh.resv, rv.seq)
		sh.free = append(sh.free, rv)
	}
	if ns < sh.nextTidy {
		return
	}
	sh.nextTidy = ns + int64(tidyEvery)
	ms := ns / int64(time.Millisecond)
	for k, st := range sh.rates {
		if ms >= st.fullAt {
			delete(sh.rates, k)
		}
	}
	for k, g := range sh.gauges {
		if g.inUse == 0 {
			delete(sh.gauges, k)
		}
	}
}

// expiryHeap orders a shard's reservations by deadline.
type expiryHeap []*reservation

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *expiryHeap) Push(x any) {
	rv := x.(*reservation)
	rv.pos = len(*h)
	*h = append(*h, rv)
}
func (h *expiryHeap) Pop() any {
	old := *h
	rv := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return rv
}
