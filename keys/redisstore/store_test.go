package redisstore_test

import (
	"context"
	"github.com/redis/go-redis/v9"
	"testing"
	"time"

	"github.com/gatekit/gatekit/internal/redistest"
	"github.com/gatekit/gatekit/keys"
	"github.com/gatekit/gatekit/keys/keystest"
	"github.com/gatekit/gatekit/keys/redisstore"
)

// redisServer is this package's redis-server, and redisCluster its Redis
// Cluster (3 masters, 3 replicas), each started by the first test that
// needs it and stopped by TestMain.
var (
	redisServer  = redistest.New()
	redisCluster = redistest.NewCluster()
)

func TestMain(m *testing.M) {
	m.Run()
	redisServer.Close()
	redisCluster.Close()
}

// handle is one instance's store: a client of its own, on the shared
// prefix.
type handle struct {
	*redisstore.Store
	prefix string
}

func open(t *testing.T, prefix string) *handle {
	t.Helper()
	return openOn(t, redisServer.Client(t), prefix)
}

// openOn is open on client.
func openOn(t *testing.T, client redis.UniversalClient, prefix string) *handle {
	t.Helper()
	s, err := redisstore.New(client, &redisstore.Config{Prefix: prefix, Timeout: redistest.SlowTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return &handle{Store: s, prefix: prefix}
}

func TestConformance(t *testing.T) {
	keystest.Run(t, keystest.Factory{
		New:  func(t *testing.T) keys.Store { return open(t, redisServer.KeyPrefix(t)) },
		Peer: func(t *testing.T, s keys.Store) keys.Store { return open(t, s.(*handle).prefix) },
	})
}

// TestConformanceOnCluster runs the suite on a Redis Cluster through
// redis.NewClusterClient: the cluster refuses any command or script whose
// keys are not all in one slot.
func TestConformanceOnCluster(t *testing.T) {
	keystest.Run(t, keystest.Factory{
		New: func(t *testing.T) keys.Store { return openOn(t, redisCluster.Client(t), redisCluster.KeyPrefix(t)) },
		Peer: func(t *testing.T, s keys.Store) keys.Store {
			return openOn(t, redisCluster.Client(t), s.(*handle).prefix)
		},
	})
}

// A change whose announcement a peer never hears (its subscription was
// down) still reaches the peer by its poll of the version.
func TestARevocationReachesAPeerThatMissedTheMessage(t *testing.T) {
	ctx := context.Background()
	prefix := redisServer.KeyPrefix(t)
	a, err := keys.New(open(t, prefix), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deaf := &noWatch{open(t, prefix)}
	b, err := keys.New(deaf, &keys.Config{PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k, secret, err := a.Create(ctx, keys.Spec{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Lookup(ctx, secret); !ok {
		t.Fatal("the peer refuses a new key")
	}
	start := time.Now()
	if _, err := a.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok, _ := b.Lookup(ctx, secret); !ok {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the peer still accepts the revoked key after 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revocation reached the deaf peer in %v", time.Since(start))
}

// noWatch is a store whose announcements never arrive.
type noWatch struct{ keys.Store }

func (noWatch) Watch(context.Context, func(keys.Change)) error { return nil }

func TestNewRefusesABracedPrefix(t *testing.T) {
	if _, err := redisstore.New(redistest.Unreachable(t), &redisstore.Config{Prefix: "a{b}"}); err == nil {
		t.Fatal("a prefix with braces was accepted")
	}
	if _, err := redisstore.New(nil, nil); err == nil {
		t.Fatal("a nil client was accepted")
	}
}
