// Package redistest runs a real redis-server for tests.
//
// A test package shares one server, started on first use and stopped by its
// TestMain; each test isolates its keys with KeyPrefix:
//
//	var redisServer = redistest.New()
//
//	func TestMain(m *testing.M) {
//		m.Run()
//		redisServer.Close()
//	}
//
//	func TestSomething(t *testing.T) {
//		client := redisServer.Client(t)
//		prefix := redisServer.KeyPrefix(t)
//		...
//	}
//
// A test that stops, pauses or restarts Redis gets a server of its own from
// Start, and checks a store's calls against it with FailsFastWhileStopped,
// TimesOutWhileHung and RestartAndRetry. A Cluster is the same for Redis
// Cluster: three masters and three replicas, shared per package
// (NewCluster) or a test's own (StartCluster, for tests that kill nodes).
// When redis-server (or, for a Cluster, redis-cli) is not installed, tests
// that need it are skipped, except when the environment variable CI is
// "true": there they fail, so that a CI job can never pass by skipping.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is a redis-server process on a loopback port. Its methods are safe
// for concurrent use.
type Server struct {
	once     sync.Once
	startErr error
	prefixes atomic.Int64

	mu   sync.Mutex
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *lockedBuffer
}

// New returns a Server that starts on its first use by Ready, Client or
// KeyPrefix. Close stops it.
func New() *Server { return &Server{} }

// Start returns a Server for the calling test alone, already running, and
// stopped when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := New()
	tb.Cleanup(s.Close)
	s.Ready(tb)
	return s
}

// Ready starts the server if it has not started yet. If redis-server cannot
// be found it skips the test, or fails it when CI=true; if it cannot start,
// it fails the test.
func (s *Server) Ready(tb testing.TB) {
	tb.Helper()
	s.once.Do(func() { s.startErr = s.launch() })
	switch {
	case s.startErr == nil:
	case errors.Is(s.startErr, exec.ErrNotFound) && os.Getenv("CI") != "true":
		tb.Skipf("redistest: %v; install redis-server to run this test", s.startErr)
	default:
		tb.Fatalf("redistest: %v", s.startErr)
	}
}

// Addr returns the server's host:port. It is empty before the server starts.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.port == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Client starts the server if needed and returns a new client of it, closed
// when the test ends. The client honours context deadlines
// (ContextTimeoutEnabled) and does not retry, so that a test sees failures as
// they happen.
func (s *Server) Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	s.Ready(tb)
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// KeyPrefix starts the server if needed and returns a key prefix that no
// other call on s returns, so that tests sharing the server (and repeated
// runs of one test) never see each other's keys.
func (s *Server) KeyPrefix(tb testing.TB) string {
	tb.Helper()
	s.Ready(tb)
	// Braces in a key would change its Redis Cluster hash slot.
	name := strings.NewReplacer("{", "(", "}", ")").Replace(tb.Name())
	return fmt.Sprintf("test:%d:%s:", s.prefixes.Add(1), name)
}

// Stop stops the server; Restart starts it again on the same port. Stopping a
// stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// Restart starts the server again on the same port, with no data, stopping
// it first if it is running.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bin == "" {
		return errors.New("redistest: Restart of a server that never started")
	}
	if err := s.stopLocked(); err != nil {
		return err
	}
	return s.runLocked()
}

// Close stops the server for good and removes its directory.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if s.dir != "" {
		os.RemoveAll(s.dir)
		s.dir = ""
	}
}

// launch finds redis-server and starts it on a free port.
func (s *Server) launch() error {
	bin, err := findServer()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bin, s.dir = bin, dir
	// Another process can take the free port between our check and
	// redis-server's bind: try a few.
	for range 3 {
		if s.port, err = freePort(); err != nil {
			return err
		}
		if err = s.runLocked(); err == nil {
			return nil
		}
	}
	return err
}

func findServer() (string, error) {
	const usual = "/usr/bin/redis-server"
	if _, err := os.Stat(usual); err == nil {
		return usual, nil
	}
	return exec.LookPath("redis-server")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runLocked starts redis-server on s.port and waits for it to answer PING.
func (s *Server) runLocked() error {
	s.out = &lockedBuffer{}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, strings.TrimSpace(s.out.String()))
		default:
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v", s.port, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd = nil
	resume(cmd.Process) // a paused server cannot act on SIGTERM
	cmd.Process.Signal(terminate)
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		return nil
	}
}

// ping sends PING over a fresh connection and expects PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
