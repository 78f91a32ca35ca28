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
// context's deadline (ContextTimeoutEnabled, on a Client or a Ring), and
// otherwise (a ClusterClient among them) on a goroutine of its own, which the Caller stops waiting for at the deadline and leaves
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
// and as EVAL with its source when Redis does not have it cached; or a
// function of a Library, sent as FCALL.
type Script struct {
	src, hash string
	// fn is the function's name when the script is one of lib's.
	fn  string
	lib *Library
}

// NewScript returns the Script of src.
func NewScript(src string) *Script {
	return &Script{src: src, hash: redis.NewScript(src).Hash()}
}

// Hash is the script's SHA-1, in hex, as EVALSHA takes it; empty for a
// function.
func (s *Script) Hash() string { return s.hash }

// Library is a library of Redis functions (Redis 7.0 or later): Lua
// loaded once by FUNCTION LOAD, whose functions a call runs by FCALL
// without running the library's own code again, as every EVALSHA runs a
// script's whole source. A Caller loads it, on every master, when Redis
// answers that a function is not found (a server that restarted without
// it, or has not had it yet).
type Library struct {
	src string
}

// NewLibrary returns the Library of src, which starts with its shebang
// line ("#!lua name=...") and registers its functions.
func NewLibrary(src string) *Library { return &Library{src: src} }

// Function returns the Script that calls lib's function name.
func (lib *Library) Function(name string) *Script { return &Script{fn: name, lib: lib} }

// missing reports whether err says that s is not on the server: a
// script's NOSCRIPT, or a function's "ERR Function not found" (which
// HasErrorPrefix reads without its "ERR ").
func (s *Script) missing(err error) bool {
	if err == nil {
		return false
	}
	if s.lib != nil {
		return redis.HasErrorPrefix(err, "Function not found")
	}
	return redis.HasErrorPrefix(err, "NOSCRIPT")
}

// load loads s's library on every master (on a plain client, its server).
func (c *Caller) load(ctx context.Context, s *Script) error {
	load := func(ctx context.Context, cl *redis.Client) error { return cl.FunctionLoadReplace(ctx, s.lib.src).Err() }
	switch cl := c.client.(type) {
	case *redis.ClusterClient:
		return cl.ForEachMaster(ctx, load)
	case *redis.Ring:
		return cl.ForEachShard(ctx, load)
	default:
		return c.client.FunctionLoadReplace(ctx, s.lib.src).Err()
	}
}

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
// deadline. Clients it does not know are assumed not to, and neither is a
// ClusterClient: besides its I/O, a call may wait on the client's own work
// for a cluster whose master just died (its layout, its nodes'
// connections), and requests meeting a dead master were seen to take
// four times the store's Timeout on a loaded machine.
func honoursDeadlines(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Run runs s on keys with args (EVALSHA, then EVAL if Redis does not have it
// cached; FCALL for a function) and returns its reply, by the Caller's Timeout or ctx's deadline,
// whichever comes first, at the latest.
//
// A failure is returned as "redisstore: " + op + ": " and the cause, and
// has a ClusterClient reload the cluster's layout, so that later calls find
// a slot's new master after a failover; when a
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
	switch {
	case s.lib != nil:
		cmdArgs[0], cmdArgs[1] = "fcall", s.fn
	case source:
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
		c.reload(ctx)
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

// reload has a ClusterClient reload the cluster's layout in the
// background, after a failed call: the master it called may have died and
// its replica taken over, or the slot moved. go-redis does so itself on a
// MOVED reply, not on a connection refused by a dead master; reloads are
// coalesced, at most one every 200ms.
func (c *Caller) reload(ctx context.Context) {
	if cc, ok := c.client.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
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
// script cache was flushed, or it restarted); a function by FCALL, and
// again once its library is loaded if Redis does not have it: batched or
// not.
func eval[T any, C replyCmd[T]](ctx context.Context, c *Caller, batched bool, s *Script,
	newCmd func(context.Context, ...any) C, keys []string, args []any) (T, error) {
	v, err := process(ctx, c, batched, newCmd, evalArgs(s, false, keys, args), len(keys))
	if !s.missing(err) {
		return v, err
	}
	if s.lib != nil {
		if err := c.load(ctx, s); err != nil {
			var zero T
			return zero, fmt.Errorf("loading functions: %w", err)
		}
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

// Ping reports whether Redis answers PING within the Caller's Timeout (or
// ctx's deadline, if sooner): on a ClusterClient, every master must. The
// error starts "redisstore: ping: ".
func (c *Caller) Ping(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var err error
	switch cl := c.client.(type) {
	case *redis.ClusterClient:
		err = cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
	default:
		err = c.client.Ping(ctx).Err()
	}
	if err != nil {
		c.reload(ctx)
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			return fmt.Errorf("redisstore: ping: %w: %w", ctxErr, err)
		}
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// CanWait reports why the Caller cannot run Int64sWait, or nil if it can:
// the client must be a *redis.Client (a server, or Sentinel's failover
// client) or a *redis.ClusterClient, whose connection to a key's master it
// can reach.
func (c *Caller) CanWait() error {
	switch c.client.(type) {
	case *redis.Client, *redis.ClusterClient:
		return nil
	}
	return fmt.Errorf("redisstore: waiting for replicas needs a *redis.Client or *redis.ClusterClient, not %T", c.client)
}

// Int64sWait is Int64s followed, in the same round trip and on the same
// connection of the master serving keys[0], by WAIT replicas wait: Redis
// answers once that many replicas have every write made on the connection
// so far, the script's included, or once wait has passed. It returns the
// script's reply and how many replicas acknowledged it. Since WAIT holds
// its connection, the call is never batched. The Caller's Timeout bounds
// the whole call, wait included.
func (c *Caller) Int64sWait(ctx context.Context, op string, s *Script, keys []string, replicas int, wait time.Duration,
	args ...any) ([]int64, int64, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	type reply struct {
		v     []int64
		acked int64
		err   error
	}
	call := func() reply {
		var r reply
		r.v, r.acked, r.err = c.evalWait(ctx, s, keys, replicas, wait, args)
		return r
	}
	var r reply
	if c.honoursDeadlines {
		r = call()
	} else {
		done := make(chan reply, 1)
		go func() { done <- call() }()
		select {
		case r = <-done:
		case <-ctx.Done():
			r.err = ctx.Err()
		}
	}
	if r.err != nil {
		c.reload(ctx)
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(r.err, ctxErr) {
			return nil, 0, fmt.Errorf("redisstore: %s: %w: %w", op, ctxErr, r.err)
		}
		return nil, 0, fmt.Errorf("redisstore: %s: %w", op, r.err)
	}
	return r.v, r.acked, nil
}

// evalWait sends s and WAIT in one pipeline to the master of keys[0], by
// EVALSHA and, if Redis does not have the script, again by EVAL (a
// function by FCALL, again once its library is loaded).
func (c *Caller) evalWait(ctx context.Context, s *Script, keys []string, replicas int, wait time.Duration, args []any) ([]int64, int64, error) {
	var node *redis.Client
	switch cl := c.client.(type) {
	case *redis.Client:
		node = cl
	case *redis.ClusterClient:
		var err error
		if node, err = cl.MasterForKey(ctx, keys[0]); err != nil {
			return nil, 0, err
		}
	default:
		return nil, 0, c.CanWait()
	}
	v, n, err := pipeWait(ctx, node, s, false, keys, replicas, wait, args)
	if !s.missing(err) {
		return v, n, err
	}
	if s.lib != nil {
		if err := c.load(ctx, s); err != nil {
			return nil, 0, fmt.Errorf("loading functions: %w", err)
		}
	}
	return pipeWait(ctx, node, s, true, keys, replicas, wait, args)
}

// pipeWait sends s (by EVAL with source, else EVALSHA) and WAIT in one
// pipeline to node.
func pipeWait(ctx context.Context, node *redis.Client, s *Script, source bool, keys []string, replicas int,
	wait time.Duration, args []any) ([]int64, int64, error) {
	p := node.Pipeline()
	cmd := redis.NewIntSliceCmd(ctx, evalArgs(s, source, keys, args)...)
	ack := redis.NewIntCmd(ctx, "wait", replicas, wait.Milliseconds())
	_ = p.Process(ctx, cmd)
	_ = p.Process(ctx, ack)
	_, _ = p.Exec(ctx) // the errors are the commands'
	v, err := cmd.Result()
	if err != nil {
		return nil, 0, err
	}
	n, err := ack.Result()
	return v, n, err
}
