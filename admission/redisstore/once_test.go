package redisstore_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/admission/redisstore"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/idempotency"
	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/ratelimit"
)

// TestOnceBeginsWithTheReservationAndEndsWithTheSettlement runs an
// idempotent request's whole life through ReserveOnce and SettleOnce, on
// one server and on a cluster: a refused reservation leaves the key free, a
// duplicate takes nothing, and the kept response is replayed.
func TestOnceBeginsWithTheReservationAndEndsWithTheSettlement(t *testing.T) {
	for name, client := range map[string]func(*testing.T) redis.UniversalClient{
		"server":  func(t *testing.T) redis.UniversalClient { return redisServer.Client(t) },
		"cluster": func(t *testing.T) redis.UniversalClient { return redisCluster.Client(t) },
	} {
		t.Run(name, func(t *testing.T) {
			prefix := redisServer.KeyPrefix(t)
			if name == "cluster" {
				prefix = redisCluster.KeyPrefix(t)
			}
			s := newStore(t, client(t), &redisstore.Config{Prefix: prefix, Timeout: redistest.SlowTimeout, Now: fixed(epoch)})
			testOnce(t, s)
		})
	}
}

func testOnce(t *testing.T, s *redisstore.Store) {
	req := func() *admission.Request {
		return &admission.Request{Tag: "acme", Holder: "k1",
			Rates:   []admission.Rate{{Key: "tpm", Policy: ratelimit.PerMinute(1000), N: 100, Refund: true}},
			Slots:   []admission.Slot{{Key: "parallel", Limit: 1}},
			Budgets: []budget.Scope{{Tag: "acme", Kind: "account", ID: "acme", Limit: 1000, Period: budget.Monthly}},
			Cost:    100}
	}
	once := admission.Once{Key: "k1\x00order-1", Fingerprint: "fp1", Lease: time.Minute}

	res, b, err := s.ReserveOnce(ctx, req(), once)
	if err != nil || !res.Allowed || b.State != idempotency.Started || b.Token == "" || res.ID.Seq == 0 {
		t.Fatalf("first: %+v %+v %v", res, b, err)
	}
	// The same key while it runs: 409, and nothing taken (the one slot
	// would refuse a second reservation).
	if res2, b2, err := s.ReserveOnce(ctx, req(), once); err != nil || b2.State != idempotency.InProgress || res2.Allowed {
		t.Fatalf("duplicate: %+v %+v %v", res2, b2, err)
	}
	other := once
	other.Fingerprint = "fp2"
	if _, b2, err := s.ReserveOnce(ctx, req(), other); err != nil || b2.State != idempotency.Mismatch {
		t.Fatalf("other payload: %+v %v", b2, err)
	}
	// Another key, refused for the slot: the key is not claimed.
	second := admission.Once{Key: "k1\x00order-2", Fingerprint: "fp", Lease: time.Minute}
	if res2, b2, err := s.ReserveOnce(ctx, req(), second); err != nil || res2.Allowed || res2.Refused != admission.KindSlot || b2.State != 0 {
		t.Fatalf("refused: %+v %+v %v", res2, b2, err)
	}

	// A wrong token settles the reservation but keeps nothing.
	kept := &idempotency.Record{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"ok":true}`)}
	var used admission.Usage
	used.Used[0], used.Cost = 40, 30
	_, err = s.SettleOnce(ctx, req(), res.ID, used, admission.Done{Key: once.Key, Token: "not-it", Record: kept, TTL: time.Hour})
	if !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("settle with a wrong token: %v", err)
	}
	if _, b2, _ := s.ReserveOnce(ctx, req(), once); b2.State != idempotency.InProgress {
		t.Fatalf("after a wrong token the key is %v, want still in progress", b2.State)
	}
	bal, err := s.Balance(ctx, req().Budgets[0])
	if err != nil || bal.Spent != 30 || bal.Held != 0 {
		t.Fatalf("balance after the settlement: %+v %v", bal, err)
	}

	// The refused key now fits; completed, it replays.
	res, b, err = s.ReserveOnce(ctx, req(), second)
	if err != nil || !res.Allowed || b.State != idempotency.Started {
		t.Fatalf("second key once the slot is free: %+v %+v %v", res, b, err)
	}
	if _, err := s.SettleOnce(ctx, req(), res.ID, used, admission.Done{Key: second.Key, Token: b.Token, Record: kept, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	res, b, err = s.ReserveOnce(ctx, req(), second)
	if err != nil || res.Allowed || b.State != idempotency.Completed || b.Record == nil ||
		string(b.Record.Body) != `{"ok":true}` || b.Record.Status != 200 || b.Record.Fingerprint != "fp" || !b.Record.CreatedAt.Equal(epoch) {
		t.Fatalf("replay: %+v %+v %v", res, b, err)
	}
	if bal, _ := s.Balance(ctx, req().Budgets[0]); bal.Spent != 60 {
		t.Fatalf("a replay was charged: spent %v, want 60", bal.Spent)
	}

	// A request with no claims only claims its key; aborted, it runs again.
	bare := &admission.Request{Tag: "acme"}
	third := admission.Once{Key: "anon\x00x", Fingerprint: "fp", Lease: time.Minute}
	res, b, err = s.ReserveOnce(ctx, bare, third)
	if err != nil || !res.Allowed || res.ID != (admission.ID{}) || b.State != idempotency.Started {
		t.Fatalf("bare: %+v %+v %v", res, b, err)
	}
	if _, err := s.SettleOnce(ctx, bare, admission.ID{}, admission.Usage{}, admission.Done{Key: third.Key, Token: b.Token}); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if _, b, err = s.ReserveOnce(ctx, bare, third); err != nil || b.State != idempotency.Started {
		t.Fatalf("after the abort: %+v %v", b, err)
	}
}
