// Package keystest is the conformance suite of keys.Store: every store,
// in memory, on disk or on Redis, passes the same tests, directly and
// through a keys.Registry, in the style of testing/fstest.
package keystest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	apierrors "github.com/gatekit/gatekit/errors"
	"github.com/gatekit/gatekit/internal/testclock"
	"github.com/gatekit/gatekit/keys"
)

// Clock is the suite's fake clock.
type Clock = testclock.Clock

// Factory makes the stores of one test.
type Factory struct {
	// New returns an empty store for the calling test.
	New func(t *testing.T) keys.Store
	// Peer returns another handle on s's data, as a second instance sees
	// it (its own connection); nil uses s itself.
	Peer func(t *testing.T, s keys.Store) keys.Store
}

// Run runs every test of the suite against the stores f makes.
func Run(t *testing.T, f Factory) {
	if f.Peer == nil {
		f.Peer = func(_ *testing.T, s keys.Store) keys.Store { return s }
	}
	t.Run("PutGetFind", func(t *testing.T) { testPutGetFind(t, f) })
	t.Run("PutRefusesStaleWrites", func(t *testing.T) { testConflicts(t, f) })
	t.Run("ListPagesInIDOrder", func(t *testing.T) { testList(t, f) })
	t.Run("Accounts", func(t *testing.T) { testAccounts(t, f) })
	t.Run("WatchSeesEveryChangeFromAPeer", func(t *testing.T) { testWatch(t, f) })
	t.Run("CreatedKeyAuthenticatesAtOnce", func(t *testing.T) { testCreate(t, f) })
	t.Run("RevokedKeyRefusedOnAPeerWithinASecond", func(t *testing.T) { testRevokeOnPeer(t, f) })
	t.Run("RotationGraceThenOnlyTheNewSecret", func(t *testing.T) { testRotate(t, f) })
	t.Run("ExpiredKeyAnswersExpired", func(t *testing.T) { testExpiry(t, f) })
	t.Run("InvalidKeysCostNoStoreCallAfterWarmUp", func(t *testing.T) { testFlood(t, f) })
	t.Run("AccountBudgetChangeReachesPeer", func(t *testing.T) { testAccountBudget(t, f) })
}

func digest(s string) keys.Digest { return keys.DigestOf(s) }

func record(id, account string, secrets ...string) keys.Record {
	r := keys.Record{Key: keys.Key{ID: id, Account: account, State: keys.Active, CreatedAt: time.Unix(1_700_000_000, 0).UTC()}}
	for _, s := range secrets {
		r.Secrets = append(r.Secrets, keys.Secret{Digest: digest(s)})
	}
	return r
}

func testPutGetFind(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	r := record("k1", "acme", "one")
	r.Models = []string{"m1"}
	r.Budget = &keys.Budget{Limit: 5_000_000, Period: budget.Daily}
	if _, err := s.Put(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(ctx, "k1")
	if err != nil || !ok || got.Rev != 1 || got.Account != "acme" || got.Models[0] != "m1" || got.Budget.Limit != 5_000_000 || got.Budget.Period != budget.Daily {
		t.Fatalf("Get: %+v %v %v", got, ok, err)
	}
	if got, ok, err := s.Find(ctx, digest("one")); err != nil || !ok || got.ID != "k1" {
		t.Fatalf("Find: %+v %v %v", got, ok, err)
	}
	if _, ok, err := s.Find(ctx, digest("two")); err != nil || ok {
		t.Fatalf("Find of an unknown digest: %v %v", ok, err)
	}
	if _, ok, err := s.Get(ctx, "nope"); err != nil || ok {
		t.Fatalf("Get of an unknown id: %v %v", ok, err)
	}
	// A second write replaces the secrets: the old digest is gone.
	r2 := got
	r2.Secrets = []keys.Secret{{Digest: digest("two")}}
	ch, err := s.Put(ctx, r2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Digests) != 2 || ch.KeyID != "k1" {
		t.Fatalf("change %+v: want both digests and the id", ch)
	}
	if _, ok, _ := s.Find(ctx, digest("one")); ok {
		t.Fatal("the replaced secret is still found")
	}
	if got, ok, _ := s.Find(ctx, digest("two")); !ok || got.Rev != 2 {
		t.Fatalf("the new secret: %+v %v", got, ok)
	}
}

func testConflicts(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	if _, err := s.Put(ctx, record("k1", "acme", "one"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, record("k1", "acme", "x"), 0); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("creating a taken id: %v", err)
	}
	if _, err := s.Put(ctx, record("k1", "acme", "x"), 7); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("a stale rev: %v", err)
	}
	if _, err := s.Put(ctx, record("k2", "acme", "one"), 0); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("a secret of another key: %v", err)
	}
	if _, err := s.Put(ctx, record("k3", "acme", "three"), 3); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("an update of a missing key: %v", err)
	}
}

func testList(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	for _, id := range []string{"c", "a", "e", "b", "d"} {
		if _, err := s.Put(ctx, record(id, "acme", "secret-"+id), 0); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for range 5 {
		page, err := s.List(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		after = page[len(page)-1].ID
	}
	if fmt.Sprint(got) != "[a b c d e]" {
		t.Fatalf("listed %v", got)
	}
}

func testAccounts(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	if _, ok, err := s.GetAccount(ctx, "acme"); err != nil || ok {
		t.Fatalf("%v %v", ok, err)
	}
	a := keys.Account{ID: "acme", Budget: &keys.Budget{Limit: 1_000_000, Period: budget.Monthly}}
	if _, err := s.PutAccount(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAccount(ctx, a, 0); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("a second create: %v", err)
	}
	got, ok, err := s.GetAccount(ctx, "acme")
	if err != nil || !ok || got.Rev != 1 || got.Budget.Limit != 1_000_000 {
		t.Fatalf("%+v %v %v", got, ok, err)
	}
}

func testWatch(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	peer := f.Peer(t, s)
	seen := make(chan keys.Change, 10)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := peer.Watch(wctx, func(ch keys.Change) { seen <- ch }); err != nil {
		t.Fatal(err)
	}
	v0, err := peer.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, record("k1", "acme", "one"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutAccount(ctx, keys.Account{ID: "acme"}, 0); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"k1", ""} {
		select {
		case ch := <-seen:
			if ch.KeyID != want || ch.Version != v0+int64(i)+1 || len(ch.Accounts) == 0 || ch.Accounts[0] != "acme" {
				t.Fatalf("change %d: %+v", i, ch)
			}
			if want != "" && (len(ch.Digests) != 1 || ch.Digests[0] != digest("one")) {
				t.Fatalf("change %d: digests %v", i, ch.Digests)
			}
		case <-time.After(time.Second):
			t.Fatalf("change %d not seen within 1s", i)
		}
	}
	if v, err := peer.Version(ctx); err != nil || v != v0+2 {
		t.Fatalf("version %d %v, want %d", v, err, v0+2)
	}
}

// counting counts a store's lookups.
type counting struct {
	keys.Store
	finds, accounts atomic.Int64
}

func (c *counting) Find(ctx context.Context, d keys.Digest) (keys.Record, bool, error) {
	c.finds.Add(1)
	return c.Store.Find(ctx, d)
}

func (c *counting) GetAccount(ctx context.Context, id string) (keys.Account, bool, error) {
	c.accounts.Add(1)
	return c.Store.GetAccount(ctx, id)
}

func registry(t *testing.T, s keys.Store, cfg *keys.Config) *keys.Registry {
	t.Helper()
	r, err := keys.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func testCreate(t *testing.T, f Factory) {
	ctx := context.Background()
	r := registry(t, f.New(t), nil)
	k, secret, err := r.Create(ctx, keys.Spec{Account: "acme", Tier: "free", Models: []string{"gk-small"}})
	if err != nil {
		t.Fatal(err)
	}
	if !keys.WellFormed(keys.DefaultPrefix, secret) || k.Hint != keys.Hint(secret) || k.State != keys.Active {
		t.Fatalf("key %+v, secret %q", k, secret)
	}
	p, ok, err := r.Lookup(ctx, secret)
	if err != nil || !ok || p.ID != k.ID || p.Account != "acme" || p.Tier != "free" || !p.AllowsModel("gk-small") || p.AllowsModel("gk-large") {
		t.Fatalf("lookup: %+v %v %v", p, ok, err)
	}
	if _, _, err := r.Create(ctx, keys.Spec{ID: k.ID, Account: "acme"}); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("a second key with the id: %v", err)
	}
	for _, bad := range []keys.Spec{{Account: ""}, {Account: "a{b}"}, {Account: "acme", Limits: &keys.Limits{RPM: -1}}, {Account: "acme", Limits: &keys.Limits{RPMBurst: 5}}} {
		if _, _, err := r.Create(ctx, bad); !errors.Is(err, keys.ErrInvalid) {
			t.Errorf("spec %+v: %v, want ErrInvalid", bad, err)
		}
	}
}

func testRevokeOnPeer(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	a := registry(t, s, nil)
	b := registry(t, f.Peer(t, s), nil)
	k, secret, err := a.Create(ctx, keys.Spec{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	// b caches the key as valid.
	for range 3 {
		if _, ok, err := b.Lookup(ctx, secret); !ok || err != nil {
			t.Fatalf("peer lookup before the revocation: %v %v", ok, err)
		}
	}
	start := time.Now()
	if _, err := a.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Lookup(ctx, secret); ok {
		t.Fatal("the revoking instance still accepts the key")
	}
	for {
		_, ok, err := b.Lookup(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the peer still accepts the revoked key after 1s")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("revocation reached the peer in %v", time.Since(start))
	if _, _, err := a.Rotate(ctx, k.ID, time.Minute); !errors.Is(err, keys.ErrInvalid) {
		t.Fatalf("rotating a revoked key: %v", err)
	}
}

func testRotate(t *testing.T, f Factory) {
	ctx := context.Background()
	clock := testclock.New(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))
	// The cache is trusted for an hour of the fake clock, so that moving
	// it does not send lookups to the store; the store's version poll
	// keeps the cache current regardless.
	r := registry(t, f.New(t), &keys.Config{Now: clock.Now, MaxStale: time.Hour})
	k, old, err := r.Create(ctx, keys.Spec{Account: "acme", Limits: &keys.Limits{RPM: 7}, Budget: &keys.Budget{Limit: 2_000_000, Period: budget.Monthly}})
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := r.Lookup(ctx, old)
	rk, fresh, err := r.Rotate(ctx, k.ID, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == old || rk.ID != k.ID || rk.Hint != keys.Hint(fresh) {
		t.Fatalf("rotated %+v", rk)
	}
	for _, s := range []string{old, fresh} {
		p, ok, err := r.Lookup(ctx, s)
		if err != nil || !ok || p.ID != k.ID || p.Limits.Requests.Limit != 7 || len(p.Budgets) != 1 || p.Budgets[0] != before.Budgets[0] {
			t.Fatalf("during the grace: %+v %v %v", p, ok, err)
		}
	}
	clock.Advance(2 * time.Second)
	if _, ok, err := r.Lookup(ctx, old); ok || err != nil {
		t.Fatalf("the old secret after the grace: %v %v", ok, err)
	}
	if p, ok, err := r.Lookup(ctx, fresh); !ok || err != nil || p.ID != k.ID {
		t.Fatalf("the new secret after the grace: %v %v", ok, err)
	}
	// A rotation with no grace drops the secret at once.
	_, third, err := r.Rotate(ctx, k.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := r.Lookup(ctx, fresh); ok {
		t.Fatal("a secret rotated without grace still works")
	}
	if _, ok, _ := r.Lookup(ctx, third); !ok {
		t.Fatal("the third secret does not work")
	}
}

func testExpiry(t *testing.T, f Factory) {
	ctx := context.Background()
	clock := testclock.New(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))
	r := registry(t, f.New(t), &keys.Config{Now: clock.Now, MaxStale: time.Hour})
	at := clock.Now().Add(time.Hour)
	_, secret, err := r.Create(ctx, keys.Spec{Account: "acme", ExpiresAt: &at})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Lookup(ctx, secret); !ok || err != nil {
		t.Fatalf("before expiry: %v %v", ok, err)
	}
	clock.Advance(time.Hour)
	_, ok, err := r.Lookup(ctx, secret)
	var e *apierrors.Error
	if ok || !errors.As(err, &e) || e.Code != apierrors.CodeExpiredAPIKey {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
}

func testFlood(t *testing.T, f Factory) {
	ctx := context.Background()
	s := &counting{Store: f.New(t)}
	r := registry(t, s, nil)
	_, secret, err := r.Create(ctx, keys.Spec{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx, keys.Key{ID: "yaml-key", Account: "acme"}, keys.DigestOf("sk-demo-from-yaml")); err != nil {
		t.Fatal(err)
	}
	// Well-formed keys with valid checksums that no one holds: each costs
	// one store call, once.
	var forged []string
	for range 100 {
		k, err := keys.Generate(keys.DefaultPrefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, k)
	}
	flood := func(n int) {
		var b [24]byte
		for i := range n {
			var key string
			switch i % 4 {
			case 0: // random bytes
				rand.Read(b[:])
				key = fmt.Sprintf("sk-%x", b)
			case 1: // gatekit's shape, a wrong checksum
				key = secret[:len(secret)-6] + fmt.Sprintf("%06d", i%1_000_000)
			case 2:
				key = forged[i%len(forged)]
			case 3:
				rand.Read(b[:])
				key = fmt.Sprintf("%x", b)
			}
			if key == secret {
				continue
			}
			if _, ok, err := r.Lookup(ctx, key); ok || err != nil {
				t.Fatalf("key %q: %v %v", key, ok, err)
			}
		}
	}
	flood(1000) // warm-up
	warm := s.finds.Load() + s.accounts.Load()
	flood(100_000)
	after := s.finds.Load() + s.accounts.Load()
	t.Logf("store calls: %d during warm-up, %d for 100,000 invalid keys after it", warm, after-warm)
	if after != warm {
		t.Fatalf("%d store calls after warm-up", after-warm)
	}
	if _, ok, _ := r.Lookup(ctx, secret); !ok {
		t.Fatal("the real key is refused")
	}
	if _, ok, _ := r.Lookup(ctx, "sk-demo-from-yaml"); !ok {
		t.Fatal("the configuration's key is refused")
	}
}

func testAccountBudget(t *testing.T, f Factory) {
	ctx := context.Background()
	s := f.New(t)
	a := registry(t, s, nil)
	b := registry(t, f.Peer(t, s), nil)
	if _, err := a.SetAccountBudget(ctx, "acme", &keys.Budget{Limit: 1_000_000, Period: budget.Monthly}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := a.Create(ctx, keys.Spec{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := b.Lookup(ctx, secret)
	if !ok || err != nil || len(p.Budgets) != 1 || p.Budgets[0].Limit != 1_000_000 || p.Budgets[0].Kind != "account" {
		t.Fatalf("%+v %v %v", p, ok, err)
	}
	if _, err := a.SetAccountBudget(ctx, "acme", &keys.Budget{Limit: 9_000_000, Period: budget.Monthly}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		p, _, _ := b.Lookup(ctx, secret)
		if p.Budgets[0].Limit == 9_000_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the raised budget did not reach the peer within 1s")
		}
		time.Sleep(time.Millisecond)
	}
}
