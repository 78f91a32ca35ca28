package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/middleware"
	"github.com/gatekit/gatekit/ratelimit"
)

// Defaults of [Config].
const (
	DefaultMaxEntries   = 100_000
	DefaultPollInterval = 250 * time.Millisecond
	DefaultMaxStale     = time.Second
)

// Config configures a [Registry]; a nil *Config takes every default.
type Config struct {
	// Prefix names the provider in generated keys ("sk-PREFIX-..."): 1 to
	// 16 lowercase letters or digits. Default: DefaultPrefix.
	Prefix string
	// Now is the clock for creation, expiry and grace periods, and for how
	// fresh the cache is. Default: time.Now.
	Now func() time.Time
	// Random supplies the bytes of secrets and ids. Default: crypto/rand.
	Random io.Reader
	// MaxEntries bounds the cache of keys found, and separately the cache
	// of keys not found. Default: DefaultMaxEntries each.
	MaxEntries int
	// PollInterval is how often the store's change counter is read, which
	// catches changes whose announcement was lost. Default:
	// DefaultPollInterval.
	PollInterval time.Duration
	// MaxStale is how long the cache is trusted after the last successful
	// read of the change counter: past it (the store unreachable), every
	// lookup goes to the store, so that a revoked key is never accepted
	// longer than this. Default: DefaultMaxStale.
	MaxStale time.Duration
	// Principal builds the principal of a key and its account (nil when
	// the account has no settings). Default: [DefaultPrincipal].
	Principal func(k Key, a *Account) *middleware.Principal
	// ValidTier, when set, rejects a create or update naming a tier it
	// returns false for.
	ValidTier func(tier string) bool
	// Logger receives a warning when the store cannot be read in the
	// background. Default: slog.Default().
	Logger *slog.Logger
}

// Registry is a service's API keys: a middleware.KeyStore answering from a
// bounded in-memory cache, and the operations that change keys (create,
// update, rotate, revoke) and accounts, written to its Store and
// announced to every instance's Registry over the same Store.
//
// A lookup costs no store call when the cache knows the key, found or not,
// and none at all for a key that cannot be one of the service's: a key in
// gatekit's shape whose checksum fails, or any other key that is not one
// of those loaded from the configuration. A change reaches every
// instance's cache as soon as the store announces it, and at the latest
// one PollInterval later; while the store cannot be reached for longer
// than MaxStale, lookups go to the store (and fail) rather than trust the
// cache. It is safe for concurrent use.
type Registry struct {
	store     Store
	prefix    string
	now       func() time.Time
	random    io.Reader
	max       int
	maxStale  time.Duration
	principal func(Key, *Account) *middleware.Principal
	validTier func(string) bool
	logger    *slog.Logger

	synced atomic.Int64 // unix ns of the last successful read of the change counter
	stop   context.CancelFunc
	done   chan struct{}

	mu       sync.RWMutex
	version  int64
	gen      uint64 // bumped by every invalidation
	found    map[Digest]*entry
	missing  map[Digest]struct{}
	accounts map[string]*Account // nil value: the account has no settings
	static   map[Digest]bool     // digests of the configuration's keys
}

// entry is a cached key that authenticates with one secret.
type entry struct {
	p       *middleware.Principal
	id      string
	account string
	until   time.Time // end of the secret's grace, or zero
	expires time.Time // the key's expiry, or zero
}

var _ middleware.KeyStore = (*Registry)(nil)

// New returns a Registry over store, watching it for changes until Close.
// It fails when the store cannot be read.
func New(store Store, cfg *Config) (*Registry, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !validPrefix(c.Prefix) {
		return nil, fmt.Errorf("keys: prefix %q: want 1 to 16 lowercase letters or digits", c.Prefix)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Random == nil {
		c.Random = rand.Reader
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxStale <= 0 {
		c.MaxStale = DefaultMaxStale
	}
	if c.Principal == nil {
		c.Principal = DefaultPrincipal
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	r := &Registry{
		store: store, prefix: c.Prefix, now: c.Now, random: c.Random, max: c.MaxEntries, maxStale: c.MaxStale,
		principal: c.Principal, validTier: c.ValidTier, logger: c.Logger,
		found: map[Digest]*entry{}, missing: map[Digest]struct{}{}, accounts: map[string]*Account{}, static: map[Digest]bool{},
		done: make(chan struct{}),
	}
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	if err := store.Watch(ctx, r.changed); err != nil {
		stop()
		return nil, fmt.Errorf("keys: watching the store: %w", err)
	}
	v, err := store.Version(ctx)
	if err != nil {
		stop()
		return nil, fmt.Errorf("keys: reading the store: %w", err)
	}
	r.version = v
	r.synced.Store(r.now().UnixNano())
	go r.poll(ctx, c.PollInterval)
	return r, nil
}

// Close stops watching the store. Lookups still work, each going to the
// store once the cache is older than MaxStale.
func (r *Registry) Close() error {
	r.stop()
	<-r.done
	return nil
}

// Prefix returns the provider prefix of the keys r generates.
func (r *Registry) Prefix() string { return r.prefix }

// poll reads the store's change counter every interval: a counter that
// moved past what the announcements said empties the cache.
func (r *Registry) poll(ctx context.Context, interval time.Duration) {
	defer close(r.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := r.store.Version(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.logger.Warn("keys: reading the store's change counter", "error", err.Error())
			}
			continue
		}
		r.mu.Lock()
		if v != r.version {
			r.flushLocked()
			r.version = v
		}
		r.mu.Unlock()
		r.synced.Store(r.now().UnixNano())
	}
}

// changed applies a change announced by the store.
func (r *Registry) changed(ch Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case ch.Version > r.version+1:
		// Announcements were missed: forget everything.
		r.flushLocked()
	default:
		r.invalidateLocked(ch)
	}
	r.version = max(r.version, ch.Version)
}

// invalidateLocked drops what the cache holds of ch's key and accounts.
func (r *Registry) invalidateLocked(ch Change) {
	r.gen++
	for _, d := range ch.Digests {
		delete(r.found, d)
		delete(r.missing, d)
	}
	for _, a := range ch.Accounts {
		delete(r.accounts, a)
	}
	if ch.KeyID == "" && len(ch.Accounts) == 0 {
		return
	}
	for d, e := range r.found {
		if e.id == ch.KeyID || slices.Contains(ch.Accounts, e.account) {
			delete(r.found, d)
		}
	}
}

// flushLocked empties the cache.
func (r *Registry) flushLocked() {
	r.gen++
	clear(r.found)
	clear(r.missing)
	clear(r.accounts)
}

// Lookup implements middleware.KeyStore. A revoked key, a secret whose
// rotation grace has ended and an unknown key are ok == false; an expired
// key is an *apierrors.Error, 401 expired_api_key.
func (r *Registry) Lookup(ctx context.Context, key string) (*middleware.Principal, bool, error) {
	// Hashing from a stack buffer keeps keys of up to 128 bytes off the heap.
	var buf [128]byte
	d := Digest(sha256.Sum256(append(buf[:0], key...)))
	now := r.now()
	fresh := now.UnixNano()-r.synced.Load() <= int64(r.maxStale)
	r.mu.RLock()
	if !WellFormed(r.prefix, key) && !r.static[d] {
		r.mu.RUnlock()
		return nil, false, nil
	}
	e, hit := r.found[d]
	_, miss := r.missing[d]
	gen := r.gen
	r.mu.RUnlock()
	if fresh && hit {
		return e.check(now)
	}
	if fresh && miss {
		return nil, false, nil
	}
	e, err := r.fetch(ctx, d, now)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	if r.gen == gen {
		r.storeLocked(d, e)
	}
	r.mu.Unlock()
	if e == nil {
		return nil, false, nil
	}
	return e.check(now)
}

// check answers a lookup from a cached entry.
func (e *entry) check(now time.Time) (*middleware.Principal, bool, error) {
	if !e.until.IsZero() && !now.Before(e.until) {
		return nil, false, nil
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		return nil, false, apierrors.ExpiredAPIKey(e.expires)
	}
	return e.p, true, nil
}

// fetch reads the key of digest d from the store: nil when no active key
// authenticates with it.
func (r *Registry) fetch(ctx context.Context, d Digest, now time.Time) (*entry, error) {
	rec, ok, err := r.store.Find(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("keys: finding a key: %w", err)
	}
	if !ok || rec.State != Active {
		return nil, nil
	}
	i := slices.IndexFunc(rec.Secrets, func(s Secret) bool { return s.Digest == d })
	if i < 0 {
		return nil, nil
	}
	acct, err := r.account(ctx, rec.Account)
	if err != nil {
		return nil, err
	}
	e := &entry{p: r.principal(rec.Key, acct), id: rec.ID, account: rec.Account, until: rec.Secrets[i].Until}
	if rec.ExpiresAt != nil {
		e.expires = *rec.ExpiresAt
	}
	return e, nil
}

// account returns the settings of account id, from the cache when it has
// them; nil when the account has none.
func (r *Registry) account(ctx context.Context, id string) (*Account, error) {
	r.mu.RLock()
	a, ok := r.accounts[id]
	gen := r.gen
	r.mu.RUnlock()
	if ok {
		return a, nil
	}
	got, found, err := r.store.GetAccount(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("keys: reading account %q: %w", id, err)
	}
	if found {
		a = &got
	}
	r.mu.Lock()
	if r.gen == gen {
		if len(r.accounts) >= r.max {
			evictOne(r.accounts)
		}
		r.accounts[id] = a
	}
	r.mu.Unlock()
	return a, nil
}

// storeLocked caches what a lookup of d found: e, or nothing.
func (r *Registry) storeLocked(d Digest, e *entry) {
	if e == nil {
		if len(r.missing) >= r.max {
			evictOne(r.missing)
		}
		r.missing[d] = struct{}{}
		return
	}
	if len(r.found) >= r.max {
		evictOne(r.found)
	}
	r.found[d] = e
}

// evictOne drops one entry of m, whichever the map yields first.
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}

// DefaultPrincipal is the principal of k with its own limits, and its
// own budget and its account's, both tagged with the account.
func DefaultPrincipal(k Key, a *Account) *middleware.Principal {
	p := &middleware.Principal{ID: k.ID, Account: k.Account, Tier: k.Tier, Models: slices.Clone(k.Models)}
	if k.Limits != nil {
		p.Limits = k.Limits.Middleware()
	}
	if k.Budget != nil {
		p.Budgets = append(p.Budgets, budget.Scope{Tag: k.Account, Kind: "key", ID: k.ID, Limit: k.Budget.Limit, Period: k.Budget.Period})
	}
	if a != nil && a.Budget != nil {
		p.Budgets = append(p.Budgets, budget.Scope{Tag: k.Account, Kind: "account", ID: k.Account, Limit: a.Budget.Limit, Period: a.Budget.Period})
	}
	return p
}

// Middleware returns l as the middleware's limits; zero fields stay unset.
func (l Limits) Middleware() middleware.Limits {
	var m middleware.Limits
	if l.RPM > 0 {
		p := ratelimit.PerMinute(l.RPM).WithBurst(l.RPMBurst)
		m.Requests = &p
	}
	if l.TPM > 0 {
		p := ratelimit.PerMinute(l.TPM).WithBurst(l.TPMBurst)
		m.Tokens = &p
	}
	m.MaxParallel = l.MaxParallel
	return m
}

// validate rejects negative figures and bursts without their rate.
func (l Limits) validate() error {
	if l.RPM < 0 || l.TPM < 0 || l.RPMBurst < 0 || l.TPMBurst < 0 || l.MaxParallel < 0 {
		return fmt.Errorf("%w: limits must not be negative", ErrInvalid)
	}
	if (l.RPMBurst > 0 && l.RPM == 0) || (l.TPMBurst > 0 && l.TPM == 0) {
		return fmt.Errorf("%w: a burst needs its rate (rpm or tpm)", ErrInvalid)
	}
	m := l.Middleware()
	for _, p := range []*ratelimit.Policy{m.Requests, m.Tokens} {
		if p != nil {
			if err := p.Valid(); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
		}
	}
	return nil
}

// Spec is what a new key is created with.
type Spec struct {
	// ID names the key; empty generates one ("key_" and 24 hex digits).
	ID string `json:"id,omitempty"`
	// Account is the account the key belongs to. Required.
	Account string `json:"account"`
	// Tier names the key's plan.
	Tier string `json:"tier,omitempty"`
	// Models the key may use; empty takes its tier's.
	Models []string `json:"models,omitempty"`
	// Limits are the key's own rate limits.
	Limits *Limits `json:"limits,omitempty"`
	// Budget is the key's own spending cap.
	Budget *Budget `json:"budget,omitempty"`
	// ExpiresAt, when set, is when the key stops authenticating.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Create makes a new active key and returns it with its secret, which
// exists nowhere else: the store keeps only its digest. It fails with
// ErrInvalid for a spec it cannot honour and ErrConflict for an id in
// use.
func (r *Registry) Create(ctx context.Context, s Spec) (Key, string, error) {
	now := r.now()
	if s.ID == "" {
		var b [12]byte
		if _, err := io.ReadFull(r.random, b[:]); err != nil {
			return Key{}, "", fmt.Errorf("keys: reading random bytes: %w", err)
		}
		s.ID = "key_" + hex.EncodeToString(b[:])
	}
	k := Key{ID: s.ID, Account: s.Account, Tier: s.Tier, Models: s.Models, Limits: s.Limits, Budget: s.Budget, ExpiresAt: s.ExpiresAt, CreatedAt: now, State: Active}
	if err := r.validate(k); err != nil {
		return Key{}, "", err
	}
	secret, err := Generate(r.prefix, r.random)
	if err != nil {
		return Key{}, "", err
	}
	k.Hint = Hint(secret)
	rec := Record{Key: k, Secrets: []Secret{{Digest: DigestOf(secret)}}}
	ch, err := r.store.Put(ctx, rec, 0)
	if err != nil {
		return Key{}, "", fmt.Errorf("keys: creating %q: %w", k.ID, err)
	}
	r.applied(ch)
	k.Rev = 1
	return k, secret, nil
}

// validate checks what a create or update asks for.
func (r *Registry) validate(k Key) error {
	switch {
	case !validName(k.ID):
		return fmt.Errorf("%w: id %q: want 1 to 64 letters, digits, '_', '-' or '.'", ErrInvalid, k.ID)
	case !validName(k.Account):
		return fmt.Errorf("%w: account %q: want 1 to 64 letters, digits, '_', '-' or '.'", ErrInvalid, k.Account)
	case r.validTier != nil && k.Tier != "" && !r.validTier(k.Tier):
		return fmt.Errorf("%w: tier %q is not defined", ErrInvalid, k.Tier)
	case k.Budget != nil && (k.Budget.Limit < 0 || k.Budget.Limit > budget.MaxMicros || !k.Budget.Period.Valid()):
		return fmt.Errorf("%w: budget out of range", ErrInvalid)
	}
	for _, m := range k.Models {
		if m == "" {
			return fmt.Errorf("%w: an empty model name", ErrInvalid)
		}
	}
	if k.Limits != nil {
		return k.Limits.validate()
	}
	return nil
}

// validName accepts 1 to 64 letters, digits, '_', '-' and '.'.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.')
	}) < 0
}

// applied drops from the cache what a change made here touched, at once,
// before the store's announcement comes back.
func (r *Registry) applied(ch Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.invalidateLocked(ch)
}

// Get returns key id, or ErrNotFound.
func (r *Registry) Get(ctx context.Context, id string) (Key, error) {
	rec, ok, err := r.store.Get(ctx, id)
	if err != nil {
		return Key{}, fmt.Errorf("keys: reading %q: %w", id, err)
	}
	if !ok {
		return Key{}, fmt.Errorf("keys: %q: %w", id, ErrNotFound)
	}
	return rec.Key, nil
}

// List returns up to limit keys with ids after after, in id order, and
// the id to pass as after for the next page ("" on the last page).
func (r *Registry) List(ctx context.Context, after string, limit int) ([]Key, string, error) {
	if limit <= 0 {
		limit = 100
	}
	recs, err := r.store.List(ctx, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("keys: listing: %w", err)
	}
	next := ""
	if len(recs) > limit {
		recs = recs[:limit]
		next = recs[limit-1].ID
	}
	out := make([]Key, len(recs))
	for i, rec := range recs {
		out[i] = rec.Key
	}
	return out, next, nil
}

// Update changes key id with fn: its tier, models, limits, budget and
// expiry (its id, account, state, secrets and creation time stay). A
// changed limit or budget applies from the key's next request, on every
// instance; spend so far is kept. It fails with ErrNotFound, ErrReadOnly,
// or ErrInvalid for a result it cannot honour.
func (r *Registry) Update(ctx context.Context, id string, fn func(*Key) error) (Key, error) {
	rec, err := r.modify(ctx, id, func(rec *Record) error {
		k := rec.Key
		if err := fn(&k); err != nil {
			return err
		}
		k.ID, k.Account, k.State, k.CreatedAt, k.Hint, k.ReadOnly, k.Rev = rec.ID, rec.Account, rec.State, rec.CreatedAt, rec.Hint, rec.ReadOnly, rec.Rev
		if err := r.validate(k); err != nil {
			return err
		}
		rec.Key = k
		return nil
	})
	return rec.Key, err
}

// Rotate gives key id a new secret, returned once, and keeps accepting
// its current secrets for grace (none when grace <= 0); secrets whose
// grace has ended are dropped. Limits, budgets and spend stay with the
// id. A revoked key cannot be rotated (ErrInvalid).
func (r *Registry) Rotate(ctx context.Context, id string, grace time.Duration) (Key, string, error) {
	secret, err := Generate(r.prefix, r.random)
	if err != nil {
		return Key{}, "", err
	}
	now := r.now()
	until := now.Add(grace)
	rec, err := r.modify(ctx, id, func(rec *Record) error {
		if rec.State != Active {
			return fmt.Errorf("%w: key %q is revoked", ErrInvalid, id)
		}
		kept := rec.Secrets[:0]
		for _, s := range rec.Secrets {
			switch {
			case !s.Until.IsZero() && !now.Before(s.Until):
				continue // its grace is over
			case grace <= 0:
				continue
			case s.Until.IsZero() || until.Before(s.Until):
				s.Until = until
			}
			kept = append(kept, s)
		}
		rec.Secrets = append(kept, Secret{Digest: DigestOf(secret)})
		rec.Hint = Hint(secret)
		return nil
	})
	if err != nil {
		return Key{}, "", err
	}
	return rec.Key, secret, nil
}

// Revoke refuses key id from now on, on every instance, old secrets
// included. Revoking a revoked key changes nothing.
func (r *Registry) Revoke(ctx context.Context, id string) (Key, error) {
	rec, err := r.modify(ctx, id, func(rec *Record) error {
		rec.State = Revoked
		return nil
	})
	return rec.Key, err
}

// modify reads key id, applies fn and writes the result, reading again
// when another write came in between.
func (r *Registry) modify(ctx context.Context, id string, fn func(*Record) error) (Record, error) {
	for range 5 {
		rec, ok, err := r.store.Get(ctx, id)
		if err != nil {
			return Record{}, fmt.Errorf("keys: reading %q: %w", id, err)
		}
		if !ok {
			return Record{}, fmt.Errorf("keys: %q: %w", id, ErrNotFound)
		}
		if rec.ReadOnly {
			return Record{}, fmt.Errorf("keys: %q: %w", id, ErrReadOnly)
		}
		prev := rec.Rev
		if err := fn(&rec); err != nil {
			return Record{}, err
		}
		ch, err := r.store.Put(ctx, rec, prev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Record{}, fmt.Errorf("keys: writing %q: %w", id, err)
		}
		r.applied(ch)
		rec.Rev = prev + 1
		return rec, nil
	}
	return Record{}, fmt.Errorf("keys: %q: %w", id, ErrConflict)
}

// Account returns the settings of account id; an account with none is
// returned with only its ID.
func (r *Registry) Account(ctx context.Context, id string) (Account, error) {
	a, ok, err := r.store.GetAccount(ctx, id)
	if err != nil {
		return Account{}, fmt.Errorf("keys: reading account %q: %w", id, err)
	}
	if !ok {
		return Account{ID: id}, nil
	}
	return a, nil
}

// SetAccountBudget sets account id's budget (nil removes it). The new
// limit applies from the account's next request, on every instance; the
// spend of the current period is kept.
func (r *Registry) SetAccountBudget(ctx context.Context, id string, b *Budget) (Account, error) {
	if !validName(id) {
		return Account{}, fmt.Errorf("%w: account %q: want 1 to 64 letters, digits, '_', '-' or '.'", ErrInvalid, id)
	}
	if b != nil && (b.Limit < 0 || b.Limit > budget.MaxMicros || !b.Period.Valid()) {
		return Account{}, fmt.Errorf("%w: budget out of range", ErrInvalid)
	}
	for range 5 {
		a, ok, err := r.store.GetAccount(ctx, id)
		if err != nil {
			return Account{}, fmt.Errorf("keys: reading account %q: %w", id, err)
		}
		prev := int64(0)
		if ok {
			prev = a.Rev
		}
		a = Account{ID: id, Budget: b}
		ch, err := r.store.PutAccount(ctx, a, prev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Account{}, fmt.Errorf("keys: writing account %q: %w", id, err)
		}
		r.applied(ch)
		a.Rev = prev + 1
		return a, nil
	}
	return Account{}, fmt.Errorf("keys: account %q: %w", id, ErrConflict)
}

// SeedAccount sets account a's budget unless the store already has
// settings for it: for budgets from a configuration file, which the admin
// API may then change.
func (r *Registry) SeedAccount(ctx context.Context, a Account) error {
	_, ok, err := r.store.GetAccount(ctx, a.ID)
	if err != nil || ok {
		return err
	}
	ch, err := r.store.PutAccount(ctx, Account{ID: a.ID, Budget: a.Budget}, 0)
	if errors.Is(err, ErrConflict) {
		return nil // another instance seeded it first
	}
	if err != nil {
		return fmt.Errorf("keys: seeding account %q: %w", a.ID, err)
	}
	r.applied(ch)
	return nil
}

// Load writes a key from the configuration file, read-only, replacing
// the one of the same id loaded before; it fails for an id held by a key
// made at runtime. Keys not in gatekit's shape authenticate only once
// loaded by the Registry that looks them up.
func (r *Registry) Load(ctx context.Context, k Key, d Digest) error {
	k.ReadOnly, k.State = true, Active
	if k.Hint == "" {
		k.Hint = "sha256:" + d.String()[:8]
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = r.now()
	}
	r.mu.Lock()
	r.static[d] = true
	r.mu.Unlock()
	for range 5 {
		old, ok, err := r.store.Get(ctx, k.ID)
		if err != nil {
			return fmt.Errorf("keys: reading %q: %w", k.ID, err)
		}
		prev := int64(0)
		if ok {
			if !old.ReadOnly {
				return fmt.Errorf("keys: configuration key %q: the id is held by a key made at runtime: %w", k.ID, ErrConflict)
			}
			if !old.CreatedAt.IsZero() {
				k.CreatedAt = old.CreatedAt
			}
			prev = old.Rev
			if sameLoaded(old, k, d) {
				return nil
			}
		}
		ch, err := r.store.Put(ctx, Record{Key: k, Secrets: []Secret{{Digest: d}}}, prev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("keys: loading %q: %w", k.ID, err)
		}
		r.applied(ch)
		return nil
	}
	return fmt.Errorf("keys: loading %q: %w", k.ID, ErrConflict)
}

// RetireLoaded revokes every key loaded from a configuration file whose
// id is not in keep: a key taken out of the file stops authenticating
// once the service starts without it, on every instance sharing the
// store.
func (r *Registry) RetireLoaded(ctx context.Context, keep []string) error {
	after := ""
	for {
		recs, err := r.store.List(ctx, after, 500)
		if err != nil {
			return fmt.Errorf("keys: listing: %w", err)
		}
		if len(recs) == 0 {
			return nil
		}
		for _, rec := range recs {
			if !rec.ReadOnly || rec.State != Active || slices.Contains(keep, rec.ID) {
				continue
			}
			prev := rec.Rev
			rec.State = Revoked
			ch, err := r.store.Put(ctx, rec, prev)
			if err != nil && !errors.Is(err, ErrConflict) {
				return fmt.Errorf("keys: retiring %q: %w", rec.ID, err)
			}
			if err == nil {
				r.applied(ch)
			}
		}
		after = recs[len(recs)-1].ID
	}
}

// sameLoaded reports whether old already holds configuration key k.
func sameLoaded(old Record, k Key, d Digest) bool {
	k.Rev = old.Rev
	a, errA := json.Marshal(old.Key)
	b, errB := json.Marshal(k)
	return errA == nil && errB == nil && len(old.Secrets) == 1 && old.Secrets[0].Digest == d && bytes.Equal(a, b)
}

// Principal returns the principal key id acts as, for reading its usage
// and limits.
func (r *Registry) Principal(ctx context.Context, id string) (*middleware.Principal, Key, error) {
	k, err := r.Get(ctx, id)
	if err != nil {
		return nil, Key{}, err
	}
	a, err := r.account(ctx, k.Account)
	if err != nil {
		return nil, Key{}, err
	}
	return r.principal(k, a), k, nil
}
