// Package rediscall runs the Lua scripts of gatekit's Redis stores
// (admission and idempotency redisstore) within a per-call timeout,
// and checks the settings those stores share.
//
// A Caller bounds every call by its Timeout, round trip included, or by the
// caller's context when that ends sooner. By default it sends its commands
// through the client's asynchronous autopipeliner
// (redis.UniversalClient.AsyncAutoPipeline), so that calls made at the same
// time share one write and one read on one connection, and waits for its
// command's batch only until the deadline. A batch ends only when Redis
// answers or the client's ReadTimeout passes, and later batches queue
// behind it; so once a call's batch outlives its deadline, calls go
// unbatched until that batch has ended, and a connection that stopped
// answering holds up only the calls already in its batch.
//
// Unbatched, a call runs in place when the client aborts I/O at a
// context's deadline (ContextTimeoutEnabled), and otherwise on a goroutine
// of its own, which the Caller stops waiting for at the deadline and leaves
// to finish in the background, so that the Timeout holds either way.
package rediscall

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds each call when New is given a Timeout of 0.
const DefaultTimeout = 100 * time.Millisecond

// Script is a Lua script a Caller runs: sent as EVALSHA with its SHA-1,
// and as EVAL with its source when Redis does not have it cached.
type Script struct {
	src, hash string
}

// NewScript returns the Script of src.
func NewScript(src string) *Script {
	return &Script{src: src, hash: redis.NewScript(src).Hash()}
}

// Hash is the script's SHA-1, in hex, as EVALSHA takes it.
func (s *Script) Hash() string { return s.hash }

// Options configures a Caller.
type Options struct {
	// Timeout bounds each call; 0 means DefaultTimeout.
	Timeout time.Duration
	// Unbatched sends every call as a command of its own, on a connection
	// of its own, instead of through the client's autopipeliner.
	Unbatched bool
}

// Caller runs scripts on one client, each within the same Timeout. It is
// safe for concurrent use; its zero value is not usable, use New.
type Caller struct {
	client redis.UniversalClient
	// pipe is the client's asynchronous autopipeliner, or nil when calls
	// are sent unbatched: by Options, or because the client has none (a
	// Ring).
	pipe *redis.AutoPipeliner
	// stalled is the latest command whose batch outlived its caller's
	// deadline, while that batch has not ended: calls go unbatched then.
	stalled *atomic.Pointer[redis.AutoFuture]
	timeout time.Duration
	// honoursDeadlines is true when the client aborts I/O at the context's
	// deadline (ContextTimeoutEnabled); otherwise each unbatched call runs
	// on its own goroutine so that the Timeout still holds.
	honoursDeadlines bool
}

// New returns a Caller of client configured by o. It fails, with an error
// starting "redisstore: ", when client is nil, the Timeout is negative, or
// the client's autopipeliner cannot be made (its
// redis.Options.AutoPipelineOptions are invalid). A client without one, a
// redis.Ring, is called unbatched.
func New(client redis.UniversalClient, o Options) (Caller, error) {
	if client == nil {
		return Caller{}, errors.New("redisstore: nil client")
	}
	if o.Timeout < 0 {
		return Caller{}, fmt.Errorf("redisstore: negative Timeout %v", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	c := Caller{client: client, timeout: o.Timeout, honoursDeadlines: honoursDeadlines(client)}
	if !o.Unbatched {
		pipe, err := client.AsyncAutoPipeline()
		switch {
		case errors.Is(err, redis.ErrRingAutoPipelineUnsupported):
		case err != nil:
			return Caller{}, fmt.Errorf("redisstore: batching calls: %w", err)
		default:
			c.pipe, c.stalled = pipe, new(atomic.Pointer[redis.AutoFuture])
		}
	}
	return c, nil
}

// Batched reports whether the Caller sends its calls through the client's
// autopipeliner.
func (c *Caller) Batched() bool { return c.pipe != nil }

// batching reports whether a call now goes through the autopipeliner: when
// the Caller batches and no batch that outlived a deadline is still going.
func (c *Caller) batching() bool {
	if c.pipe == nil {
		return false
	}
	f := c.stalled.Load()
	if f == nil {
		return true
	}
	// A future's wait with a context already ended returns that context's
	// error only while the command's batch is still going.
	if f.WaitContext(ended) == ended.Err() {
		return false
	}
	c.stalled.CompareAndSwap(f, nil)
	return true
}

// ended is a context that has ended.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// honoursDeadlines reports whether client aborts I/O at a context's
// deadline. Clients it does not know are assumed not to.
func honoursDeadlines(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Run runs s on keys with args (EVALSHA, then EVAL if Redis does not have it
// cached) and returns its reply, by the Caller's Timeout or ctx's deadline,
// whichever comes first, at the latest.
//
// A failure is returned as "redisstore: " + op + ": " and the cause; when a
// deadline or cancellation of the context ended the call, the error wraps
// the context's error too (context.DeadlineExceeded, context.Canceled), even
// where go-redis reports it as a network timeout.
func (c *Caller) Run(ctx context.Context, op string, s *Script, keys []string, args ...any) (any, error) {
	return run(ctx, c, op, s, redis.NewCmd, keys, args)
}

// Int64s is Run for a script that replies with an array of integers. The
// reply is read straight into the slice it returns.
func (c *Caller) Int64s(ctx context.Context, op string, s *Script, keys []string, args ...any) ([]int64, error) {
	return run(ctx, c, op, s, redis.NewIntSliceCmd, keys, args)
}

// replyCmd is a go-redis command that reads its reply as a T.
type replyCmd[T any] interface {
	redis.Cmder
	Result() (T, error)
}

// result is what a call that runs on its own goroutine hands back.
type result[T any] struct {
	v   T
	err error
}

// evalArgs returns the arguments of EVALSHA for s (or, with source, of
// EVAL) on keys with args. It copies both, so that the slices the caller
// passed do not outlive the call and can stay on its stack.
func evalArgs(s *Script, source bool, keys []string, args []any) []any {
	cmdArgs := make([]any, 3, 3+len(keys)+len(args))
	cmdArgs[0], cmdArgs[1], cmdArgs[2] = "evalsha", s.hash, len(keys)
	if source {
		cmdArgs[0], cmdArgs[1] = "eval", s.src
	}
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	return append(cmdArgs, args...)
}

// run runs s within c's Timeout, as commands made by newCmd, which read the
// reply as a T.
func run[T any, C replyCmd[T]](ctx context.Context, c *Caller, op string, s *Script,
	newCmd func(context.Context, ...any) C, keys []string, args []any) (T, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var (
		v   T
		err error
	)
	batched := c.batching()
	if batched || c.honoursDeadlines {
		v, err = eval(ctx, c, batched, s, newCmd, keys, args)
	} else {
		done := make(chan result[T], 1)
		go func() {
			v, err := eval(ctx, c, false, s, newCmd, keys, args)
			done <- result[T]{v, err}
		}()
		select {
		case r := <-done:
			v, err = r.v, r.err
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		var zero T
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			// go-redis reports a deadline met during I/O as a network
			// timeout; say which deadline it was.
			return zero, fmt.Errorf("redisstore: %s: %w: %w", op, ctxErr, err)
		}
		return zero, fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return v, nil
}

// bound returns ctx limited to c's Timeout from now. A ctx whose deadline
// comes no later is returned as it is, which saves a timer per call.
func (c *Caller) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= c.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// eval sends s by EVALSHA, and by EVAL if Redis answers NOSCRIPT (its
// script cache was flushed, or it restarted): batched or not.
func eval[T any, C replyCmd[T]](ctx context.Context, c *Caller, batched bool, s *Script,
	newCmd func(context.Context, ...any) C, keys []string, args []any) (T, error) {
	v, err := process(ctx, c, batched, newCmd, evalArgs(s, false, keys, args), len(keys))
	// (HasErrorPrefix allocates even for a nil error.)
	if err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return v, err
	}
	return process(ctx, c, batched, newCmd, evalArgs(s, true, keys, args), len(keys))
}

// process sends one command and reads its reply: batched, through c's
// autopipeliner, waiting for the command's batch until ctx ends; or on a
// connection of its own.
func process[T any, C replyCmd[T]](ctx context.Context, c *Caller, batched bool,
	newCmd func(context.Context, ...any) C, cmdArgs []any, nkeys int) (T, error) {
	cmd := newCmd(ctx, cmdArgs...)
	if nkeys > 0 {
		cmd.SetFirstKeyPos(3) // for Redis Cluster, as go-redis's EvalSha does
	}
	if !batched {
		_ = c.client.Process(ctx, cmd) // the error is the command's
		return cmd.Result()
	}
	f := c.pipe.Submit(ctx, cmd)
	if err := f.WaitContext(ctx); ctx.Err() != nil && err == ctx.Err() {
		// The batch is still going and may write cmd at any moment. If it
		// outlived the deadline, it may be stuck on a connection that
		// stopped answering: the next calls go unbatched until it ends.
		if err == context.DeadlineExceeded {
			c.stalled.Store(&f)
		}
		var zero T
		return zero, err
	}
	return cmd.Result()
}
