package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shape and timing of the clusters this package starts.
const (
	// ClusterMasters is how many masters a Cluster has; each has one
	// replica.
	ClusterMasters = 3
	// ClusterNodeTimeout is the nodes' cluster-node-timeout: how long a
	// node may be unreachable before the others mark it failed and its
	// replica promotes itself.
	ClusterNodeTimeout = 2 * time.Second
	// clusterStartTimeout bounds the creation of a cluster, from the
	// first node's start to every replica in sync.
	clusterStartTimeout = 30 * time.Second
)

// Cluster is a real Redis Cluster on loopback ports: ClusterMasters
// masters, each with one replica, every node a redis-server process with
// --cluster-enabled yes, joined by redis-cli --cluster create. Its methods
// are safe for concurrent use.
//
// A test package shares one, started on first use and stopped by its
// TestMain, the way it shares a Server; each test isolates its keys with
// KeyPrefix:
//
//	var redisCluster = redistest.NewCluster()
//
//	func TestMain(m *testing.M) {
//		m.Run()
//		redisCluster.Close()
//	}
//
// A test that kills nodes gets a cluster of its own from StartCluster.
// Without redis-server or redis-cli, tests that need a cluster are
// skipped, or fail when CI=true.
//
// The nodes run with cluster-require-full-coverage no, so that the slots
// of the other masters keep answering while one master is down, and
// cluster-replica-validity-factor 0, so that a replica may always take
// over.
type Cluster struct {
	once     sync.Once
	startErr error
	prefixes atomic.Int64

	mu    sync.Mutex
	dir   string
	nodes []*clusterNode
}

// clusterNode is one redis-server process of a Cluster.
type clusterNode struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *lockedBuffer
}

// NewCluster returns a Cluster that starts on its first use by Ready,
// Client or KeyPrefix. Close stops it.
func NewCluster() *Cluster { return &Cluster{} }

// StartCluster returns a Cluster for the calling test alone, already
// running, and stopped when the test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c := NewCluster()
	tb.Cleanup(c.Close)
	c.Ready(tb)
	return c
}

// Ready starts the cluster if it has not started yet. If redis-server or
// redis-cli cannot be found it skips the test, or fails it when CI=true;
// if the cluster cannot be created, it fails the test.
func (c *Cluster) Ready(tb testing.TB) {
	tb.Helper()
	c.once.Do(func() { c.startErr = c.launch() })
	switch {
	case c.startErr == nil:
	case errors.Is(c.startErr, exec.ErrNotFound) && os.Getenv("CI") != "true":
		tb.Skipf("redistest: %v; install redis-server and redis-cli (Debian: redis-tools) to run this test", c.startErr)
	default:
		tb.Fatalf("redistest: %v", c.startErr)
	}
}

// Addrs returns the host:port of every node, masters and replicas, in the
// order they were started.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// Client starts the cluster if needed and returns a new ClusterClient of
// it, closed when the test ends. The client knows every node, honours
// context deadlines (ContextTimeoutEnabled), does not retry a failed
// command (MaxRetries -1), and follows MOVED and ASK redirections.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	c.Ready(tb)
	cl := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// KeyPrefix starts the cluster if needed and returns a key prefix that no
// other call on c returns, as Server.KeyPrefix does.
func (c *Cluster) KeyPrefix(tb testing.TB) string {
	tb.Helper()
	c.Ready(tb)
	name := strings.NewReplacer("{", "(", "}", ")").Replace(tb.Name())
	return fmt.Sprintf("test:%d:%s:", c.prefixes.Add(1), name)
}

// Close stops every node for good and removes their directory.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.stop()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir = ""
	}
}

// Shard is one master of a Cluster and its replica, by address.
type Shard struct {
	Master, Replica string
}

// ShardOf returns the master serving key's hash slot and that master's
// replica (empty when it has none alive), as the cluster sees them now,
// failing the test if it cannot tell.
func (c *Cluster) ShardOf(tb testing.TB, key string) Shard {
	tb.Helper()
	ctx := context.Background()
	var lastErr error
	for _, addr := range c.Addrs() {
		admin := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		slot, err := admin.ClusterKeySlot(ctx, key).Result()
		var nodes string
		if err == nil {
			nodes, err = admin.ClusterNodes(ctx).Result()
		}
		admin.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if sh, ok := shardOf(nodes, slot); ok {
			return sh
		}
		lastErr = fmt.Errorf("no live master serves slot %d: %s", slot, nodes)
	}
	tb.Fatalf("redistest: the shard of %q: %v", key, lastErr)
	return Shard{}
}

// shardOf finds, in the output of CLUSTER NODES, the live master serving
// slot and its live replica, if any.
func shardOf(nodes string, slot int64) (Shard, bool) {
	type node struct{ id, addr, flags, master string }
	var all []node
	var owner string
	for line := range strings.Lines(nodes) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := node{id: f[0], addr: addr, flags: f[2], master: f[3]}
		all = append(all, n)
		if !strings.Contains(n.flags, "master") || strings.Contains(n.flags, "fail") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			a, err1 := strconv.ParseInt(lo, 10, 64)
			b, err2 := strconv.ParseInt(hi, 10, 64)
			if err1 == nil && err2 == nil && a <= slot && slot <= b {
				owner = n.id
			}
		}
	}
	var sh Shard
	for _, n := range all {
		switch {
		case n.id == owner:
			sh.Master = n.addr
		case n.master == owner && owner != "" && !strings.Contains(n.flags, "fail"):
			sh.Replica = n.addr
		}
	}
	return sh, sh.Master != ""
}

// Kill ends the node at addr at once (SIGKILL), as a crashed host would:
// what it had not yet sent its replica is lost.
func (c *Cluster) Kill(tb testing.TB, addr string) {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.addr == addr {
			if n.cmd.Process.Kill() != nil {
				tb.Fatalf("redistest: killing %s", addr)
			}
			<-n.done
			return
		}
	}
	tb.Fatalf("redistest: no node %s", addr)
}

// Failover makes the replica at addr take over from its master, which may
// be dead (CLUSTER FAILOVER FORCE, with the other masters' votes), and
// waits until it serves as master and every live node's cluster state is
// ok again, failing the test if that takes longer than timeout. It returns
// how long the takeover took.
func (c *Cluster) Failover(tb testing.TB, addr string, timeout time.Duration) time.Duration {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	admin := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer admin.Close()
	if err := admin.Do(ctx, "cluster", "failover", "force").Err(); err != nil {
		tb.Fatalf("redistest: CLUSTER FAILOVER FORCE on %s: %v", addr, err)
	}
	for {
		role, err := admin.Do(ctx, "role").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" && c.stateOK(ctx) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			tb.Fatalf("redistest: %s not master with the cluster ok within %v: %v %v", addr, timeout, role, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stateOK reports whether every live node says cluster_state:ok.
func (c *Cluster) stateOK(ctx context.Context) bool {
	for _, addr := range c.liveAddrs() {
		admin := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		info, err := admin.ClusterInfo(ctx).Result()
		admin.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
	}
	return true
}

func (c *Cluster) liveAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var addrs []string
	for _, n := range c.nodes {
		select {
		case <-n.done:
		default:
			addrs = append(addrs, n.addr)
		}
	}
	return addrs
}

// launch starts the nodes, joins them into a cluster and waits until it
// is ok and every replica is in sync.
func (c *Cluster) launch() error {
	bin, err := findServer()
	if err != nil {
		return err
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.dir = dir
	c.mu.Unlock()
	var addrs []string
	for range 2 * ClusterMasters {
		var n *clusterNode
		// Another process can take the free port between our check and
		// redis-server's bind: try a few.
		for range 3 {
			if n, err = startClusterNode(bin, dir); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.nodes = append(c.nodes, n)
		c.mu.Unlock()
		addrs = append(addrs, n.addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	for _, addr := range addrs {
		if err := waitClusterNode(ctx, addr); err != nil {
			return err
		}
	}
	return nil
}

// waitClusterNode waits until the node at addr knows every node, says
// cluster_state:ok and, if it is a replica, is in sync with its master.
func waitClusterNode(ctx context.Context, addr string) error {
	admin := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer admin.Close()
	want := "cluster_known_nodes:" + strconv.Itoa(2*ClusterMasters)
	for {
		info, err := admin.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want) {
			var repl string
			if repl, err = admin.Info(ctx, "replication").Result(); err == nil {
				if strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up") {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster node %s not ready within %v: %v %q", addr, clusterStartTimeout, err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startClusterNode starts redis-server in cluster mode on a free port and
// waits for it to answer PING.
func startClusterNode(bin, dir string) (*clusterNode, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &clusterNode{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: &lockedBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--dbfilename", fmt.Sprintf("dump-%d.rdb", port),
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
		"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10),
		"--cluster-require-full-coverage", "no",
		"--cluster-replica-validity-factor", "0",
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	n.cmd.SysProcAttr = sysProcAttr()
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	for deadline := time.Now().Add(startTimeout); ; {
		err := ping(n.addr)
		if err == nil {
			return n, nil
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("redis-server on %s exited: %s", n.addr, strings.TrimSpace(n.out.String()))
		default:
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within %v: %v", n.addr, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the node, gently first.
func (n *clusterNode) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(terminate)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// CutReplication stops the replica of sh from receiving its master's
// writes, as a partition between the two would: the master drops its
// replication link (CLIENT KILL TYPE replica) and the replica cannot
// reconnect (it authenticates with a password the master does not have).
// The master goes on answering clients. It waits until the replica sees
// its link down. RestoreReplication undoes it.
func (c *Cluster) CutReplication(tb testing.TB, sh Shard) {
	tb.Helper()
	ctx := context.Background()
	replica := redis.NewClient(&redis.Options{Addr: sh.Replica, MaxRetries: -1})
	defer replica.Close()
	master := redis.NewClient(&redis.Options{Addr: sh.Master, MaxRetries: -1})
	defer master.Close()
	if err := replica.ConfigSet(ctx, "masterauth", "cut-by-redistest").Err(); err != nil {
		tb.Fatalf("redistest: cutting replication: %v", err)
	}
	if err := master.Do(ctx, "client", "kill", "type", "replica").Err(); err != nil {
		tb.Fatalf("redistest: cutting replication: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		info, err := replica.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:down") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: replica %s still linked to %s: %v", sh.Replica, sh.Master, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// RestoreReplication lets the replica at addr reconnect to its master
// after CutReplication.
func (c *Cluster) RestoreReplication(tb testing.TB, addr string) {
	tb.Helper()
	replica := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer replica.Close()
	if err := replica.ConfigSet(context.Background(), "masterauth", "").Err(); err != nil {
		tb.Fatalf("redistest: restoring replication: %v", err)
	}
}
