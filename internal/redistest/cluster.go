package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartCluster starts a Redis Cluster for the calling test alone: one
// redis-server in cluster mode serving every hash slot, stopped when the
// test ends. It returns a ClusterClient of it, closed when the test ends,
// that honours context deadlines and does not retry. One node checks that
// the keys a command declares (a script's KEYS included) share one hash
// slot, and the client routes by them as on any Cluster; a node serving
// every slot cannot check that a script touches no undeclared key of
// another slot. Without redis-server it skips the test, or fails it when
// CI=true, as Ready does.
func StartCluster(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	bin, err := findServer()
	switch {
	case err == nil:
	case errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") != "true":
		tb.Skipf("redistest: %v; install redis-server to run this test", err)
	default:
		tb.Fatalf("redistest: %v", err)
	}
	dir := tb.TempDir()
	var addr string
	// Another process can take the free port between our check and
	// redis-server's bind: try a few.
	for range 3 {
		if addr, err = startClusterNode(tb, bin, dir); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}

	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		tb.Fatalf("redistest: assigning the hash slots: %v", err)
	}
	for deadline := time.Now().Add(startTimeout); ; {
		info, err := admin.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: cluster on %s not ready within %v: %v %q", addr, startTimeout, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	tb.Cleanup(func() { c.Close() })
	return c
}

// startClusterNode starts redis-server in cluster mode on a free port, to
// be stopped when the test ends, and waits for it to answer PING.
func startClusterNode(tb testing.TB, bin, dir string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	stop := func() {
		cmd.Process.Signal(terminate)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(startTimeout); ; {
		err := ping(addr)
		if err == nil {
			tb.Cleanup(stop)
			return addr, nil
		}
		select {
		case <-done:
			return "", fmt.Errorf("redis-server on port %d exited: %s", port, strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redis-server on port %d did not answer PING within %v: %v", port, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
