package redisstore_test

import (
	"github.com/redis/go-redis/v9"
	"testing"

	"github.com/gatekit/gatekit/alerts"
	"github.com/gatekit/gatekit/alerts/alertstest"
	"github.com/gatekit/gatekit/alerts/redisstore"
	"github.com/gatekit/gatekit/internal/redistest"
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

// A restart is a new process with a new connection on the same data.
func TestConformance(t *testing.T) {
	alertstest.Run(t, alertstest.Factory{
		New:     func(t *testing.T) alerts.Ledger { return open(t, redisServer.KeyPrefix(t)) },
		Restart: func(t *testing.T, l alerts.Ledger) alerts.Ledger { return open(t, l.(*handle).prefix) },
	})
}

// TestConformanceOnCluster runs the suite on a Redis Cluster through
// redis.NewClusterClient: the cluster refuses any command or script whose
// keys are not all in one slot.
func TestConformanceOnCluster(t *testing.T) {
	alertstest.Run(t, alertstest.Factory{
		New: func(t *testing.T) alerts.Ledger { return openOn(t, redisCluster.Client(t), redisCluster.KeyPrefix(t)) },
		Restart: func(t *testing.T, l alerts.Ledger) alerts.Ledger {
			return openOn(t, redisCluster.Client(t), l.(*handle).prefix)
		},
	})
}

func TestNewRefusesABracedPrefix(t *testing.T) {
	if _, err := redisstore.New(redistest.Unreachable(t), &redisstore.Config{Prefix: "{x}"}); err == nil {
		t.Fatal("a braced prefix was accepted")
	}
}
