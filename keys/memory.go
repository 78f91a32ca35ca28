package keys

import (
	"context"
	"slices"
	"sort"
	"sync"
)

// Memory is a Store held in one process's memory: for tests, and for a
// single instance whose keys need not survive a restart. Every Registry
// over the same Memory sees every change at once. It is safe for
// concurrent use; the zero value is not: use NewMemory.
type Memory struct {
	mu       sync.Mutex
	records  map[string]Record
	digests  map[Digest]string
	accounts map[string]Account
	version  int64
	watchers map[int]func(Change)
	nextW    int
	// persist, when set, is called under mu before a write is applied;
	// its error fails the write (the durable store's disk).
	persist func(r *Record, a *Account, version int64) error
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{records: map[string]Record{}, digests: map[Digest]string{}, accounts: map[string]Account{}, watchers: map[int]func(Change){}}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, id string) (Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[id]
	return cloneRecord(r), ok, nil
}

// Find implements Store.
func (m *Memory) Find(_ context.Context, d Digest) (Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.digests[d]
	if !ok {
		return Record{}, false, nil
	}
	return cloneRecord(m.records[id]), true, nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, after string, limit int) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.records))
	for id := range m.records {
		if id > after {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if limit >= 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]Record, len(ids))
	for i, id := range ids {
		out[i] = cloneRecord(m.records[id])
	}
	return out, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, r Record, prevRev int64) (Change, error) {
	m.mu.Lock()
	old, exists := m.records[r.ID]
	if (!exists && prevRev != 0) || (exists && old.Rev != prevRev) {
		m.mu.Unlock()
		return Change{}, ErrConflict
	}
	for _, s := range r.Secrets {
		if id, ok := m.digests[s.Digest]; ok && id != r.ID {
			m.mu.Unlock()
			return Change{}, ErrConflict
		}
	}
	r = cloneRecord(r)
	r.Rev = prevRev + 1
	if m.persist != nil {
		if err := m.persist(&r, nil, m.version+1); err != nil {
			m.mu.Unlock()
			return Change{}, err
		}
	}
	m.apply(r, old)
	m.version++
	ch := Change{Version: m.version, KeyID: r.ID, Accounts: []string{r.Account}, Digests: union(old.digests(), r.digests())}
	if exists && old.Account != r.Account {
		ch.Accounts = append(ch.Accounts, old.Account)
	}
	return ch, m.announce(ch)
}

// apply writes r over old in the maps; m.mu is held.
func (m *Memory) apply(r, old Record) {
	for _, d := range old.digests() {
		delete(m.digests, d)
	}
	for _, d := range r.digests() {
		m.digests[d] = r.ID
	}
	m.records[r.ID] = r
}

// GetAccount implements Store.
func (m *Memory) GetAccount(_ context.Context, id string) (Account, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.accounts[id]
	return cloneAccount(a), ok, nil
}

// PutAccount implements Store.
func (m *Memory) PutAccount(_ context.Context, a Account, prevRev int64) (Change, error) {
	m.mu.Lock()
	old, exists := m.accounts[a.ID]
	if (!exists && prevRev != 0) || (exists && old.Rev != prevRev) {
		m.mu.Unlock()
		return Change{}, ErrConflict
	}
	a = cloneAccount(a)
	a.Rev = prevRev + 1
	if m.persist != nil {
		if err := m.persist(nil, &a, m.version+1); err != nil {
			m.mu.Unlock()
			return Change{}, err
		}
	}
	m.accounts[a.ID] = a
	m.version++
	ch := Change{Version: m.version, Accounts: []string{a.ID}}
	return ch, m.announce(ch)
}

// announce unlocks m.mu and calls every watcher with ch.
func (m *Memory) announce(ch Change) error {
	fns := make([]func(Change), 0, len(m.watchers))
	for _, fn := range m.watchers {
		fns = append(fns, fn)
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn(ch)
	}
	return nil
}

// Version implements Store.
func (m *Memory) Version(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version, nil
}

// Watch implements Store.
func (m *Memory) Watch(ctx context.Context, fn func(Change)) error {
	m.mu.Lock()
	id := m.nextW
	m.nextW++
	m.watchers[id] = fn
	m.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		delete(m.watchers, id)
		m.mu.Unlock()
	})
	return nil
}

// union is the digests of a and b, each once.
func union(a, b []Digest) []Digest {
	out := slices.Clone(a)
	for _, d := range b {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// cloneRecord copies r so that callers never share its slices.
func cloneRecord(r Record) Record {
	r.Models = slices.Clone(r.Models)
	r.Secrets = slices.Clone(r.Secrets)
	if r.Limits != nil {
		l := *r.Limits
		r.Limits = &l
	}
	if r.Budget != nil {
		b := *r.Budget
		r.Budget = &b
	}
	if r.ExpiresAt != nil {
		t := *r.ExpiresAt
		r.ExpiresAt = &t
	}
	return r
}

// cloneAccount copies a.
func cloneAccount(a Account) Account {
	if a.Budget != nil {
		b := *a.Budget
		a.Budget = &b
	}
	return a
}
