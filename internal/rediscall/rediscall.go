// Package rediscall runs the Lua scripts of gatekit's Redis stores
// (ratelimit, budget and idempotency redisstore) within a per-call timeout,
// and checks the settings those stores share.
//
// A Caller bounds every call by its Timeout, round trip included, or by the
// caller's context when that ends sooner. When the client aborts I/O at a
// context's deadline (ContextTimeoutEnabled) the call runs in place;
// otherwise it runs on a goroutine of its own, which the Caller stops
// waiting for at the deadline and leaves to finish in the background, so
// that the Timeout holds either way.
package rediscall

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds each call when New is given a Timeout of 0.
const DefaultTimeout = 100 * time.Millisecond

// Caller runs scripts on one client, each within the same Timeout. It is
// safe for concurrent use; its zero value is not usable, use New.
type Caller struct {
	client  redis.UniversalClient
	timeout time.Duration
	// honoursDeadlines is true when the client aborts I/O at the context's
	// deadline (ContextTimeoutEnabled); otherwise each call runs on its own
	// goroutine so that the Timeout still holds.
	honoursDeadlines bool
}

// New returns a Caller of client whose calls last at most timeout, or
// DefaultTimeout when timeout is 0. It fails, with an error starting
// "redisstore: ", when client is nil or timeout is negative.
func New(client redis.UniversalClient, timeout time.Duration) (Caller, error) {
	if client == nil {
		return Caller{}, errors.New("redisstore: nil client")
	}
	if timeout < 0 {
		return Caller{}, fmt.Errorf("redisstore: negative Timeout %v", timeout)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return Caller{client: client, timeout: timeout, honoursDeadlines: honoursDeadlines(client)}, nil
}

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
func (c *Caller) Run(ctx context.Context, op string, s *redis.Script, keys []string, args ...any) (any, error) {
	return run(ctx, c, op, s, redis.NewCmd, (*redis.Cmd).Result, evalSHAArgs(s, keys, args), len(keys))
}

// Int64s is Run for a script that replies with an array of integers. The
// reply is read straight into the slice it returns.
func (c *Caller) Int64s(ctx context.Context, op string, s *redis.Script, keys []string, args ...any) ([]int64, error) {
	return run(ctx, c, op, s, redis.NewIntSliceCmd, (*redis.Cmd).Int64Slice, evalSHAArgs(s, keys, args), len(keys))
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

// evalSHAArgs returns the arguments of EVALSHA for s on keys with args. It
// copies both, so that the slices the caller passed do not outlive the call
// and can stay on its stack.
func evalSHAArgs(s *redis.Script, keys []string, args []any) []any {
	cmdArgs := make([]any, 3, 3+len(keys)+len(args))
	cmdArgs[0], cmdArgs[1], cmdArgs[2] = "evalsha", s.Hash(), len(keys)
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	return append(cmdArgs, args...)
}

// run runs s within c's Timeout: cmdArgs (from evalSHAArgs, with nkeys
// keys) as a command made by newCmd, which reads the reply as a T, and on
// NOSCRIPT an EVAL read by fallback.
func run[T any, C replyCmd[T]](ctx context.Context, c *Caller, op string, s *redis.Script,
	newCmd func(context.Context, ...any) C, fallback func(*redis.Cmd) (T, error), cmdArgs []any, nkeys int) (T, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var (
		v   T
		err error
	)
	if c.honoursDeadlines {
		v, err = evalSHA(ctx, c.client, s, newCmd, fallback, cmdArgs, nkeys)
	} else {
		done := make(chan result[T], 1)
		go func() {
			v, err := evalSHA(ctx, c.client, s, newCmd, fallback, cmdArgs, nkeys)
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

// evalSHA sends cmdArgs (from evalSHAArgs) as one command, and the script
// itself by EVAL if Redis answers NOSCRIPT (its script cache was flushed, or
// it restarted).
func evalSHA[T any, C replyCmd[T]](ctx context.Context, client redis.UniversalClient, s *redis.Script,
	newCmd func(context.Context, ...any) C, fallback func(*redis.Cmd) (T, error), cmdArgs []any, nkeys int) (T, error) {
	cmd := newCmd(ctx, cmdArgs...)
	if nkeys > 0 {
		cmd.SetFirstKeyPos(3) // for Redis Cluster, as go-redis's EvalSha does
	}
	// (HasErrorPrefix allocates even for a nil error.)
	if err := client.Process(ctx, cmd); err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return cmd.Result()
	}
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = cmdArgs[3+i].(string)
	}
	return fallback(s.Eval(ctx, client, keys, cmdArgs[3+nkeys:]...))
}
