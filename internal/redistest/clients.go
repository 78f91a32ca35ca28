package redistest

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// ClientWithDefaults starts the server if needed and returns a new client of
// it with go-redis's own retries and timeouts, as in production, closed when
// the test ends. contextTimeouts sets ContextTimeoutEnabled: whether the
// client aborts I/O at a context's deadline.
func (s *Server) ClientWithDefaults(tb testing.TB, contextTimeouts bool) *redis.Client {
	tb.Helper()
	s.Ready(tb)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: contextTimeouts})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Unreachable returns a client of an address no server listens on, closed
// when the test ends, for tests of what a store does without Redis: its
// configuration, its key names.
func Unreachable(tb testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	tb.Cleanup(func() { c.Close() })
	return c
}

// CommandCounter is a redis.Hook that counts the commands a client sends,
// each command of a pipeline included, and the round trips it sends them
// in: one per command sent alone, one per pipeline. Add it with the
// client's AddHook.
type CommandCounter struct{ n, trips atomic.Int64 }

var _ redis.Hook = (*CommandCounter)(nil)

// Count returns how many commands have been sent so far.
func (h *CommandCounter) Count() int64 { return h.n.Load() }

// RoundTrips returns how many round trips the commands took so far.
func (h *CommandCounter) RoundTrips() int64 { return h.trips.Load() }

// DialHook implements redis.Hook; it counts nothing.
func (h *CommandCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook implements redis.Hook: one command.
func (h *CommandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook: every command of the pipeline.
func (h *CommandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}
