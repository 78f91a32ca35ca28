// Package redisstore is a budget.Ledger on Redis, for several instances of a
// service that must share their budgets.
//
// Each call is one Lua script run atomically on the Redis server: one round
// trip, no lock, the same answers as budget.Memory. Every key of a Tag (its
// budgets, its holds) is hash-tagged with the Tag, so that a hold across an
// account's budgets touches a single Redis Cluster slot; the store works on
// a single server, Sentinel and Cluster alike.
//
// # Clocks
//
// A budget's current period is computed in Go, from the instance's clock
// (Config.Now) in Config.Location, because Redis knows no time zones: the
// period's start is part of the budget's key. Instances whose clocks differ
// by a few milliseconds may therefore disagree, for those milliseconds
// around a boundary, on whether a request belongs to the old period or the
// new; every period still keeps its own limit exactly. Hold expiry, on the
// other hand, runs on the Redis server's clock, which every instance shares.
//
// # Keys
//
// With P = Prefix + "{" + Tag + "}:", a budget in one period lives in the
// hash P + Kind + ":" + ID + ":" + period + ":" + start (Unix seconds), a
// hold in P + "hold:" + seq, the Tag's live holds in the sorted set
// P + "holds" and its hold counter in P + "seq". Every key carries a TTL: a
// budget's lasts until its period has ended and every hold in it can no
// longer be settled; a hold's, until its grace ends. The one exception is a
// lifetime budget (Period None) with money spent, which is kept for good.
//
// Settle and Release know a hold only by its id, so their scripts reach the
// hold's budgets through the key names its record keeps, and every script
// expires the Tag's overdue holds the same way. Those keys are not
// declared in KEYS, but they always hash to the declared keys' slot, which
// Redis and Redis Cluster accept; proxies that insist on every key being
// declared (some managed cluster offerings) do not.
package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/internal/rediscall"
)

// Defaults for Config.
const (
	// DefaultPrefix starts every key when Config.Prefix is empty.
	DefaultPrefix = "gatekit:budget:"
	// DefaultTimeout bounds each call when Config.Timeout is 0.
	DefaultTimeout = rediscall.DefaultTimeout
)

// margin is how long every key outlives its last possible use, to absorb
// differences between the clocks that compute and enforce expiries.
const margin = time.Minute

var (
	//go:embed lua/common.lua
	commonLua string
	//go:embed lua/hold.lua
	holdLua string
	//go:embed lua/settle.lua
	settleLua string
	//go:embed lua/release.lua
	releaseLua string
	//go:embed lua/balance.lua
	balanceLua string
)

// Config configures a Ledger. The zero value (or a nil pointer) gives the
// defaults.
type Config struct {
	// Prefix starts every Redis key; default DefaultPrefix. It must not
	// contain '{' or '}', which would change the keys' hash slot on Redis
	// Cluster.
	Prefix string
	// Now, if set, is the clock for everything: periods and hold expiry,
	// to the millisecond. The default, nil, takes periods from time.Now
	// and expires holds on the Redis server's clock, which every instance
	// shares; set Now only in tests, or when every instance's clock is
	// closely synchronised.
	Now func() time.Time
	// Location is the time zone whose calendar periods follow; default
	// UTC. Every instance sharing budgets must use the same.
	Location *time.Location
	// HoldTTL is how long a hold reserves its amount unless settled or
	// released; default budget.DefaultHoldTTL. It is used to the
	// millisecond.
	HoldTTL time.Duration
	// SettleGrace is how long after a hold expires Settle still records
	// its cost; default budget.DefaultSettleGrace. It is used to the
	// millisecond.
	SettleGrace time.Duration
	// Timeout bounds each call, round trip included; default
	// DefaultTimeout. A call that takes longer returns an error wrapping
	// context.DeadlineExceeded rather than keep the request waiting.
	Timeout time.Duration
	// Unbatched sends each call as a command of its own. By default, calls
	// made at the same time go together through the client's asynchronous
	// autopipeliner (redis.UniversalClient.AsyncAutoPipeline, tuned by
	// redis.Options.AutoPipelineOptions): one write and one read on one
	// connection for many calls. Each call is still one script run, and
	// waits for its batch no longer than its Timeout. A redis.Ring has no
	// autopipeliner and is always unbatched.
	Unbatched bool
}

// Ledger is a budget.Ledger whose budgets and holds live in Redis. It is
// safe for concurrent use, and any number of Ledgers, in any number of
// processes, may share budgets through one Redis deployment, provided they
// have the same Prefix, Location, HoldTTL and SettleGrace.
//
// A call that fails with a timeout may still have been carried out by
// Redis. A Hold that timed out is unknown to its caller and expires after
// HoldTTL; a Settle that timed out and is retried returns
// budget.ErrUnknownHold if the first attempt went through.
type Ledger struct {
	call                          rediscall.Caller
	hold, settle, release, report *rediscall.Script
	prefix                        string
	now                           func() time.Time
	redisClock                    bool
	loc                           *time.Location
	ttl, grace                    int64 // ms
}

var _ budget.Ledger = (*Ledger)(nil)

// New returns a Ledger that keeps its budgets in client, configured by cfg;
// nil means the defaults.
//
// Give client ContextTimeoutEnabled: true (on redis.Options,
// redis.ClusterOptions, redis.UniversalOptions...) so that it stops waiting
// on Redis at Config.Timeout. Without it, go-redis waits out its own
// ReadTimeout, and the Ledger has to run each call on a goroutine of its own
// to return on time, leaving that goroutine to finish in the background.
func New(client redis.UniversalClient, cfg *Config) (*Ledger, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	prefix, err := rediscall.Prefix(c.Prefix, DefaultPrefix)
	if err != nil {
		return nil, err
	}
	if c.Timeout < 0 || c.HoldTTL < 0 || c.SettleGrace < 0 {
		return nil, fmt.Errorf("redisstore: negative Timeout, HoldTTL or SettleGrace (%v, %v, %v)", c.Timeout, c.HoldTTL, c.SettleGrace)
	}
	call, err := rediscall.New(client, rediscall.Options{Timeout: c.Timeout, Unbatched: c.Unbatched})
	if err != nil {
		return nil, err
	}
	if c.HoldTTL == 0 {
		c.HoldTTL = budget.DefaultHoldTTL
	}
	if c.SettleGrace == 0 {
		c.SettleGrace = budget.DefaultSettleGrace
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	l := &Ledger{
		call:       call,
		hold:       rediscall.NewScript(commonLua + holdLua),
		settle:     rediscall.NewScript(commonLua + settleLua),
		release:    rediscall.NewScript(commonLua + releaseLua),
		report:     rediscall.NewScript(commonLua + balanceLua),
		prefix:     prefix,
		now:        c.Now,
		redisClock: c.Now == nil,
		loc:        c.Location,
		ttl:        ceilMillis(c.HoldTTL),
		grace:      ceilMillis(c.SettleGrace),
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// Key returns the Redis key of budget s in its period containing t.
func (l *Ledger) Key(s budget.Scope, t time.Time) string {
	var start int64
	if s.Period != budget.None {
		start = s.Period.Start(t, l.loc).Unix()
	}
	return l.tagPrefix(s.Tag) + s.Kind + ":" + s.ID + ":" + s.Period.String() + ":" + strconv.FormatInt(start, 10)
}

// HoldKey returns the Redis key of hold id's record.
func (l *Ledger) HoldKey(id budget.HoldID) string {
	return l.tagPrefix(id.Tag) + "hold:" + strconv.FormatUint(id.Seq, 10)
}

func (l *Ledger) tagPrefix(tag string) string { return l.prefix + "{" + tag + "}:" }

// args returns the arguments every script starts with, then extra.
func (l *Ledger) args(tp string, now time.Time, extra ...any) []any {
	clock := int64(-1)
	if !l.redisClock {
		clock = now.UnixMilli()
	}
	return append([]any{clock, l.ttl, l.grace, margin.Milliseconds(), tp + "hold:"}, extra...)
}

// periodEnd returns the end of s's current period, and it in ms (0 for
// None).
func (l *Ledger) periodEnd(s budget.Scope, now time.Time) (time.Time, int64) {
	if s.Period == budget.None {
		return time.Time{}, 0
	}
	end := s.Period.End(now, l.loc)
	return end, end.UnixMilli()
}

// Hold implements budget.Ledger.Hold.
func (l *Ledger) Hold(ctx context.Context, scopes []budget.Scope, amount budget.Micros) (budget.HoldResult, error) {
	if err := budget.ValidateHold(scopes, amount); err != nil {
		return budget.HoldResult{}, err
	}
	now := l.now()
	tp := l.tagPrefix(scopes[0].Tag)
	keys := make([]string, 2, 2+len(scopes))
	keys[0], keys[1] = tp+"holds", tp+"seq"
	args := l.args(tp, now, int64(amount))
	var ends [budget.MaxScopes]time.Time
	for i, s := range scopes {
		keys = append(keys, l.Key(s, now))
		var endMs int64
		ends[i], endMs = l.periodEnd(s, now)
		args = append(args, int64(s.Limit), endMs)
	}
	res, err := l.run(ctx, "hold", l.hold, keys, args)
	if err != nil {
		return budget.HoldResult{}, err
	}
	v, err := ints(res, 5)
	if err != nil {
		return budget.HoldResult{}, fmt.Errorf("redisstore: hold: %w", err)
	}
	i := int(v[2]) - 1
	if i < 0 || i >= len(scopes) {
		return budget.HoldResult{}, fmt.Errorf("redisstore: hold: script named budget %d of %d", i+1, len(scopes))
	}
	r := budget.HoldResult{
		Allowed: v[0] == 1,
		Scope:   scopes[i],
		Balance: budget.NewBalance(scopes[i].Limit, budget.Micros(v[3]), budget.Micros(v[4]), ends[i]),
	}
	if r.Allowed {
		r.ID = budget.HoldID{Tag: scopes[0].Tag, Seq: uint64(v[1])}
	}
	return r, nil
}

// Settle implements budget.Ledger.Settle.
func (l *Ledger) Settle(ctx context.Context, id budget.HoldID, actual budget.Micros) (budget.SettleResult, error) {
	if err := budget.ValidateAmount(actual); err != nil {
		return budget.SettleResult{}, err
	}
	if !validID(id) {
		return budget.SettleResult{}, budget.ErrUnknownHold
	}
	tp := l.tagPrefix(id.Tag)
	seq := strconv.FormatUint(id.Seq, 10)
	res, err := l.run(ctx, "settle", l.settle, []string{tp + "holds", l.HoldKey(id)}, l.args(tp, l.now(), int64(actual), seq))
	if err != nil {
		return budget.SettleResult{}, err
	}
	if unknown(res) {
		return budget.SettleResult{}, budget.ErrUnknownHold
	}
	v, err := ints(res, 7)
	if err != nil {
		return budget.SettleResult{}, fmt.Errorf("redisstore: settle: %w", err)
	}
	sc, bal, err := l.describe(id.Tag, v[3:7], res[7])
	if err != nil {
		return budget.SettleResult{}, fmt.Errorf("redisstore: settle: %w", err)
	}
	return budget.SettleResult{Held: budget.Micros(v[1]), Expired: v[0] == 1, Scope: sc, Balance: bal}, nil
}

// Release implements budget.Ledger.Release.
func (l *Ledger) Release(ctx context.Context, id budget.HoldID) error {
	if !validID(id) {
		return budget.ErrUnknownHold
	}
	tp := l.tagPrefix(id.Tag)
	seq := strconv.FormatUint(id.Seq, 10)
	res, err := l.call.Run(ctx, "release", l.release, []string{tp + "holds", l.HoldKey(id)}, l.args(tp, l.now(), seq)...)
	if err != nil {
		return err
	}
	if n, ok := res.(int64); !ok || n != 1 {
		if ok && n == -1 {
			return budget.ErrUnknownHold
		}
		return fmt.Errorf("redisstore: release: script returned %v", res)
	}
	return nil
}

// Balance implements budget.Ledger.Balance.
func (l *Ledger) Balance(ctx context.Context, scope budget.Scope) (budget.Balance, error) {
	if err := scope.Valid(); err != nil {
		return budget.Balance{}, err
	}
	now := l.now()
	tp := l.tagPrefix(scope.Tag)
	res, err := l.run(ctx, "balance", l.report, []string{tp + "holds", l.Key(scope, now)}, l.args(tp, now))
	if err != nil {
		return budget.Balance{}, err
	}
	v, err := ints(res, 2)
	if err != nil {
		return budget.Balance{}, fmt.Errorf("redisstore: balance: %w", err)
	}
	end, _ := l.periodEnd(scope, now)
	return budget.NewBalance(scope.Limit, budget.Micros(v[0]), budget.Micros(v[1]), end), nil
}

// validID reports whether id could have been issued: a Tag that can be part
// of a key, and a Seq.
func validID(id budget.HoldID) bool {
	return id.Tag != "" && id.Seq != 0 && !strings.ContainsAny(id.Tag, "{}")
}

// describe rebuilds the Scope and Balance a script reported from its figures
// (spent, held, limit, period end in ms) and the budget's key.
func (l *Ledger) describe(tag string, v []int64, key any) (budget.Scope, budget.Balance, error) {
	k, ok := key.(string)
	rest, found := strings.CutPrefix(k, l.tagPrefix(tag))
	if !ok || !found {
		return budget.Scope{}, budget.Balance{}, fmt.Errorf("script returned key %v outside Tag %q", key, tag)
	}
	// Kind has no ':'; the period and its start are the last two fields.
	kind, rest, ok1 := strings.Cut(rest, ":")
	i := strings.LastIndexByte(rest, ':')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(rest[:i], ':')
	}
	if !ok1 || j < 0 {
		return budget.Scope{}, budget.Balance{}, fmt.Errorf("script returned malformed key %q", k)
	}
	period, err := budget.ParsePeriod(rest[j+1 : i])
	if err != nil {
		return budget.Scope{}, budget.Balance{}, fmt.Errorf("script returned key %q: %w", k, err)
	}
	sc := budget.Scope{Tag: tag, Kind: kind, ID: rest[:j], Limit: budget.Micros(v[2]), Period: period}
	var resets time.Time
	if v[3] != 0 {
		resets = time.UnixMilli(v[3]).In(l.loc)
	}
	return sc, budget.NewBalance(sc.Limit, budget.Micros(v[0]), budget.Micros(v[1]), resets), nil
}

// unknown reports whether a script answered {-1}: no such hold.
func unknown(res []any) bool {
	if len(res) != 1 {
		return false
	}
	n, ok := res[0].(int64)
	return ok && n == -1
}

// ints returns the first n values of res, which must be integers.
func ints(res []any, n int) ([]int64, error) {
	if len(res) < n {
		return nil, fmt.Errorf("script returned %d values, want at least %d", len(res), n)
	}
	v := make([]int64, n)
	for i := range v {
		x, ok := res[i].(int64)
		if !ok {
			return nil, fmt.Errorf("script returned %T in place %d, want an integer", res[i], i)
		}
		v[i] = x
	}
	return v, nil
}

// run runs a script that returns an array, within the Ledger's Timeout.
func (l *Ledger) run(ctx context.Context, op string, s *rediscall.Script, keys []string, args []any) ([]any, error) {
	v, err := l.call.Run(ctx, op, s, keys, args...)
	if err != nil {
		return nil, err
	}
	res, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("redisstore: %s: script returned %T, want an array", op, v)
	}
	return res, nil
}
