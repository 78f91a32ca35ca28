package redistest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/internal/redistest"
)

func TestServerStopsAndRestartsOnTheSamePort(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	addr := srv.Addr()
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Stop")
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Fatalf("restarted on %s, was %s", srv.Addr(), addr)
	}
	deadline := time.Now().Add(2 * time.Second)
	for client.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("no PING answer 2s after Restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, err := client.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after Restart: EXISTS k = %d, %v; want an empty server", n, err)
	}
}

func TestPausedServerAnswersNothing(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("paused server answered PING")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

func TestKeyPrefixesAreUnique(t *testing.T) {
	srv := redistest.New()
	defer srv.Close()
	a, b := srv.KeyPrefix(t), srv.KeyPrefix(t)
	if a == b {
		t.Fatalf("two calls returned the same prefix %q", a)
	}
}

func TestCommandCounterCountsCommands(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.ClientWithDefaults(t, true)
	hook := &redistest.CommandCounter{}
	client.AddHook(hook)
	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil { // opens the connection, with commands of its own
		t.Fatal(err)
	}
	before := hook.Count()
	for range 3 {
		if err := client.Set(ctx, "a", 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n := hook.Count() - before; n != 3 {
		t.Fatalf("3 SETs counted %d commands, want 3", n)
	}
}

func TestRestartAndRetryReturnsOnceTheServerAnswers(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.ClientWithDefaults(t, true)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := 0
	srv.RestartAndRetry(t, func() error {
		calls++
		return client.Ping(context.Background()).Err()
	})
	if calls == 0 {
		t.Fatal("call never made")
	}
}

func TestProxyForwardsAndDrops(t *testing.T) {
	srv := redistest.New()
	defer srv.Close()
	proxy := srv.Proxy(t)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1})
	defer client.Close()
	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING through the proxy: %v", err)
	}
	proxy.Drop()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := client.WithTimeout(100 * time.Millisecond).Ping(short).Err(); err == nil {
		t.Fatal("PING answered while the proxy dropped everything")
	}
	proxy.Forward()
	// The connection that lost its reply is discarded; a new one works.
	deadline := time.Now().Add(2 * time.Second)
	for client.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("no PING answer 2s after the proxy forwarded again")
		}
	}
}

// TestClusterFailsOverToTheReplica: a cluster of three masters with a
// replica each serves keys of every slot; after its master is killed, a
// key's replica takes over with what had reached it.
func TestClusterFailsOverToTheReplica(t *testing.T) {
	cl := redistest.StartCluster(t)
	client := cl.Client(t)
	ctx := context.Background()
	var counted atomic.Int64
	if err := client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		counted.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if masters := counted.Load(); masters != redistest.ClusterMasters {
		t.Fatalf("%d masters, want %d", masters, redistest.ClusterMasters)
	}
	for i := range 100 {
		if err := client.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	sh := cl.ShardOf(t, "k1")
	// Let the replica have the write before the master dies.
	if err := client.Do(ctx, "wait", 1, 1000).Err(); err != nil {
		t.Fatal(err)
	}
	master, _ := client.MasterForKey(ctx, "k1")
	if n, err := master.Do(ctx, "wait", 1, 1000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT on the master of k1: %d, %v", n, err)
	}
	cl.Kill(t, sh.Master)
	took := cl.Failover(t, sh.Replica, 10*time.Second)
	t.Logf("replica %s took over from %s in %v", sh.Replica, sh.Master, took)
	client.ReloadState(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := client.Get(ctx, "k1").Int()
		if err != nil {
			client.ReloadState(ctx) // the layout is read again in the background
		}
		if err == nil {
			if v != 1 {
				t.Fatalf("k1 = %d after the failover, want 1", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("k1 after the failover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
