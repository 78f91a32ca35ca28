// Package redisstore is an admission.Store on Redis, for several instances
// of a service that must share their rate limits, concurrency limits and
// budgets.
//
// Reserve is one Lua script run atomically on the Redis server, and so is
// Settle: one round trip each, no lock, and the same answers as
// admission.Memory. Every key of a Request is hash-tagged with the
// Request's Tag, so each script touches a single Redis Cluster slot; the
// store works on a single server, Sentinel and Cluster alike.
//
// # Clocks
//
// Every call takes its time from the instance's clock (Config.Now) and
// sends it to the script, and budget periods are computed in Go, in
// Config.Location, because Redis knows no time zones. Instances sharing a
// store should keep their clocks in agreement (NTP is plenty). A clock that
// lags another never makes a bucket give out more than it holds: the
// bucket arithmetic refills nothing for time
// that a bucket's state has already seen, and measures waits from the
// caller's clock. Reservations, by contrast, expire by the clock of the
// call that sees them: a lagging instance sees them expire that much later.
// Clocks must agree within a minute for Settle to find the budget period a
// reservation was made in on another instance (see Keys); beyond that, a
// Settle across a period boundary records its spend nowhere.
//
// # Keys
//
// With P = Prefix + "{" + Tag + "}:", a Request's keys are
//
//	P + "rate:" + holder + NUL + key   a token bucket: a 24-byte string, until it is full again
//	P + "slot:" + holder + NUL + key   zset: reservations holding a slot, by expiry
//	P + "budget:" + B             hash: a budget in one period (spent, held)
//	P + "holds:" + B              zset: that budget's holds, by expiry
//	P + "res:" + seq              a reservation, for Settle
//	P + "seq"                     the Tag's counter of reservations
//
// where B is Kind + ":" + ID + ":" + period + ":" + the period's start in
// Unix seconds (0 for a lifetime budget). Reserve declares every key in
// KEYS but the new reservation's record, whose name follows from the seq
// the script draws; it shares the Tag's hash slot, which Redis and Redis
// Cluster accept, and Settle declares it. Settle declares, for each
// budget, the keys of every period its reservation could have been made in
// (the periods overlapping the last TTL + SettleGrace, and a minute either
// side): with the defaults, one key pair, or two near a period boundary.
//
// A budget's held amount is a counter in its hash, raised by each hold and
// lowered by each Settle; the holds themselves are in the budget's zset,
// each as seq:amount scored by its expiry, so that a call ends the expired
// ones by reading only those (ZRANGEBYSCORE up to now) and subtracting their
// amounts. Each hold is thus added once and removed once: the work of a
// call is bounded by the holds it ends, never a scan of all of them. Slot
// sets are swept the same way (ZREMRANGEBYSCORE) before they are counted.
//
// Every key expires on its own: a bucket when it is full again, slot and
// hold sets a TTL after their latest member, a reservation and the counter
// a TTL + SettleGrace after their last use, and a budget when its period
// has ended and no reservation made in it can be settled any more; each
// plus a minute's margin for differences between clocks. The one exception
// is a lifetime budget (Period None) with money spent, which is kept for
// good. A Redis that evicts keys under memory pressure loses spend: run it
// with maxmemory-policy noeviction.
//
// # Replication and failover
//
// Redis replicates asynchronously: a master acknowledges a script before
// its replicas have the writes. When a master fails and its replica takes
// over (Redis Cluster's failover, or Sentinel's), what the replica had not
// received is gone: settles, whose spend then vanishes and can be spent
// again; reservations, whose holds vanish (for at most their TTL) and
// whose settles then return admission.ErrUnknownReservation, recording
// nothing; and units taken from buckets. On loopback a replica trails by
// well under a millisecond; behind a partition or an overloaded link, by
// as long as the link lags. TestFailoverLosesOnlyUnreplicatedSpend
// measures it, with a replica held 300ms behind.
//
// Config.SettleReplicas makes each Settle wait, in the same round trip,
// until that many replicas have it (WAIT). A Settle that returns nil is
// then on a replica and survives its master's failover; one that returns
// ErrNotReplicated was recorded by the master only, as every settle is
// without the setting. Reservations are not waited for: what a failover can
// still lose is the spend of requests reserved in the replica's lag before
// it, each at most its Cost, each reported by its Settle as an unknown
// reservation. While a master has no live replica, every Settle waits the
// whole SettleWait and returns ErrNotReplicated.
//
// During a failover, calls on the failed master's slots fail within the
// Timeout (so the middleware fails open or closed, as configured) until
// the replica has taken over; a failed call has a ClusterClient reload the
// cluster's layout, so the next calls reach the new master. Calls batched
// with them (autopipelining) can time out with them, on any master.
//
// # Exact arithmetic
//
// Lua's numbers are float64, exact for integers below 2^53. Bucket values
// stay below it by internal/bucket's MaxScaled. Amounts are at most
// budget.MaxMicros (2^50), and so is a budget's held amount (each hold fits
// a Limit when made), so spent + held + Cost stays below 2^52 while spent
// is at most 2^50. Spent passes 2^50 only through late Settles of
// reservations that had expired (their holds no longer counted), by at most
// the Costs of the reservations made in the last TTL + SettleGrace, each
// TTL's worth of them fitting one Limit: about (2 + SettleGrace/TTL) x
// 2^50, 2^53 with the defaults. Even past that, every decision is exact:
// spent is kept by HINCRBY as a 64-bit integer in Redis, and a spent that
// Lua reads rounded is still above every Limit; only the Spent a Balance
// reports could then be rounded.
package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/admission"
	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/internal/bucket"
	"github.com/gatekit/gatekit/internal/rediscall"
	"github.com/gatekit/gatekit/ratelimit"
)

// Defaults for Config.
const (
	// DefaultPrefix starts every key when Config.Prefix is empty.
	DefaultPrefix = "gatekit:adm:"
	// DefaultTimeout bounds each call when Config.Timeout is 0.
	DefaultTimeout = rediscall.DefaultTimeout
	// DefaultSettleWait is how long a Settle waits for its replicas when
	// Config.SettleReplicas is set and Config.SettleWait is 0 (or half the
	// Timeout, if that is shorter).
	DefaultSettleWait = 50 * time.Millisecond
)

// ErrNotReplicated is returned, wrapped, by a Settle that Redis recorded
// but fewer than Config.SettleReplicas replicas acknowledged within
// Config.SettleWait. The settlement stands and must not be retried (a
// retry returns admission.ErrUnknownReservation); it is lost only if its
// master fails before a replica has it. Test for it with errors.Is.
var ErrNotReplicated = errors.New("redisstore: settle not acknowledged by enough replicas in time")

// margin is how long every key outlives its last possible use, to absorb
// differences between the clocks that compute and enforce expiries.
const margin = time.Minute

var (
	//go:embed lua/common.lua
	commonLua string
	//go:embed lua/reserve.lua
	reserveLua string
	//go:embed lua/settle.lua
	settleLua string
	//go:embed lua/balance.lua
	balanceLua string
	//go:embed lua/once.lua
	onceLua string
)

// onceScript is the script of operation op ("reserve" or "settle") that
// also begins or ends an idempotency entry (see lua/once.lua).
func onceScript(op, body string) *rediscall.Script {
	return rediscall.NewScript(commonLua + "local once = '" + op + "'\nlocal function op()\n" + body + "\nend\n" + onceLua)
}

// Config configures a Store. The zero value (or a nil pointer) gives the
// defaults. Stores sharing keys (the same Prefix on the same Redis) must
// have the same TTL, SettleGrace and Location.
type Config struct {
	// Prefix starts every Redis key; default DefaultPrefix. It must not
	// contain '{' or '}', which would change the keys' hash slot on Redis
	// Cluster.
	Prefix string
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
	// TTL is how long an unsettled reservation holds its slots and budget
	// amounts; default admission.DefaultTTL. It is used to the
	// millisecond.
	TTL time.Duration
	// SettleGrace is how long after a reservation expires Settle still
	// records its spend; default admission.DefaultSettleGrace. It is used
	// to the millisecond.
	SettleGrace time.Duration
	// Location is the time zone of the budgets' calendar periods; default
	// UTC.
	Location *time.Location
	// SettleReplicas makes every Settle wait until that many replicas
	// have its writes, by a WAIT sent right behind the script, in the same
	// round trip, on a connection of the call's own (so never batched); 0,
	// the default, waits for none. Redis replicates asynchronously: without
	// it, a settle acknowledged just before its master fails can be missing
	// from the replica that takes over, and the spend it recorded with it
	// (see the package documentation). With it, a Settle that returns nil
	// is on that many replicas; one whose replicas did not answer in time
	// returns an error wrapping ErrNotReplicated. It needs a *redis.Client
	// or a *redis.ClusterClient.
	SettleReplicas int
	// SettleWait bounds the wait of SettleReplicas, within the Timeout:
	// default DefaultSettleWait or half the Timeout, whichever is shorter.
	// It must be shorter than the Timeout, and is used to the millisecond.
	SettleWait time.Duration
	// Now is the clock, read to the millisecond; default time.Now. Its
	// time is sent to each script, so every instance sharing the store
	// should have a clock in agreement with the others' (see the package
	// documentation for what a lagging clock does).
	Now func() time.Time
}

// Store is an admission.Store whose state lives in Redis. It is safe for
// concurrent use, and any number of Stores, in any number of processes, may
// share their limits and budgets through one Redis deployment.
//
// A call that fails with a timeout may still have been carried out by
// Redis. A Reserve that timed out is unknown to its caller, and its
// reservation expires after the TTL; a Settle that timed out and is
// retried returns admission.ErrUnknownReservation if the first attempt went
// through.
type Store struct {
	call                     rediscall.Caller
	reserve, settle, balance *rediscall.Script
	reserveOnce, settleOnce  *rediscall.Script
	// Tokens of idempotency markers are this Store's random prefix and a
	// counter: unique across processes without a random draw per request.
	tokenPrefix string
	tokens      atomic.Uint64
	prefix      string
	now         func() time.Time
	loc         *time.Location
	ttl, grace  int64 // ms
	replicas    int
	settleWait  time.Duration
}

var (
	_ admission.OnceStore = (*Store)(nil)
	_ admission.Pinger    = (*Store)(nil)
)

// New returns a Store that keeps its state in client, configured by cfg;
// nil means the defaults.
//
// Give client ContextTimeoutEnabled: true (on redis.Options,
// redis.ClusterOptions, redis.UniversalOptions...) so that it stops waiting
// on Redis at Config.Timeout. Without it, go-redis waits out its own
// ReadTimeout, and the Store has to run each call on a goroutine of its own
// to return on time, leaving that goroutine to finish in the background.
func New(client redis.UniversalClient, cfg *Config) (*Store, error) {
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
	if c.Timeout < 0 || c.TTL < 0 || c.SettleGrace < 0 {
		return nil, fmt.Errorf("redisstore: negative Timeout, TTL or SettleGrace (%v, %v, %v)", c.Timeout, c.TTL, c.SettleGrace)
	}
	call, err := rediscall.New(client, rediscall.Options{Timeout: c.Timeout, Unbatched: c.Unbatched})
	if err != nil {
		return nil, err
	}
	if c.SettleReplicas < 0 || c.SettleWait < 0 {
		return nil, fmt.Errorf("redisstore: negative SettleReplicas or SettleWait (%d, %v)", c.SettleReplicas, c.SettleWait)
	}
	if c.SettleReplicas > 0 {
		if err := call.CanWait(); err != nil {
			return nil, err
		}
		timeout := cmp.Or(c.Timeout, DefaultTimeout)
		if c.SettleWait == 0 {
			c.SettleWait = min(DefaultSettleWait, timeout/2)
		}
		c.SettleWait = max(c.SettleWait.Round(time.Millisecond), time.Millisecond)
		if c.SettleWait >= timeout {
			return nil, fmt.Errorf("redisstore: SettleWait %v is not shorter than the Timeout %v", c.SettleWait, timeout)
		}
	}
	if c.TTL == 0 {
		c.TTL = admission.DefaultTTL
	}
	if c.SettleGrace == 0 {
		c.SettleGrace = admission.DefaultSettleGrace
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Store{
		call:    call,
		reserve: rediscall.NewScript(commonLua + reserveLua),
		settle:  rediscall.NewScript(commonLua + settleLua),
		balance: rediscall.NewScript(commonLua + balanceLua),

		reserveOnce: onceScript("reserve", reserveLua),
		settleOnce:  onceScript("settle", settleLua),
		tokenPrefix: rand.Text()[:16] + ".",
		prefix:      prefix,
		now:         c.Now,
		loc:         c.Location,
		ttl:         ceilMillis(c.TTL),
		grace:       ceilMillis(c.SettleGrace),

		replicas:   c.SettleReplicas,
		settleWait: c.SettleWait,
	}, nil
}

func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func (s *Store) tagPrefix(tag string) string { return s.prefix + "{" + tag + "}:" }

// budgetKeys returns the keys of budget sc in its period starting at start
// (the zero Time for a lifetime budget): its hash and its holds.
func budgetKeys(tp string, sc budget.Scope, start time.Time) (string, string) {
	var unix int64
	if sc.Period != budget.None {
		unix = start.Unix()
	}
	b := sc.Kind + ":" + sc.ID + ":" + sc.Period.String() + ":" + strconv.FormatInt(unix, 10)
	return tp + "budget:" + b, tp + "holds:" + b
}

// args returns the arguments every script starts with, then room for n
// more.
func (s *Store) args(now time.Time, n int) []any {
	return append(make([]any, 0, 4+n), now.UnixMilli(), s.ttl, s.grace, margin.Milliseconds())
}

// Reserve implements admission.Store.Reserve.
func (s *Store) Reserve(ctx context.Context, r *admission.Request) (admission.Result, error) {
	if err := admission.Validate(r); err != nil {
		return admission.Result{}, err
	}
	q := s.reserveCall(r, 0)
	v, err := s.call.Int64s(ctx, "reserve", s.reserve, q.keys, q.args...)
	if err != nil {
		return admission.Result{}, err
	}
	return q.result(r, v)
}

// reserveCall is the keys and arguments of a reserve script for r, and
// what reading its reply needs.
type reserveCall struct {
	keys   []string
	args   []any
	params [admission.MaxRates]bucket.Params
	ends   [admission.MaxBudgets]time.Time
}

// reserveCall returns the reserve script's call for r, with room for extra
// more keys and arguments.
func (s *Store) reserveCall(r *admission.Request, extra int) *reserveCall {
	q := &reserveCall{}
	now := s.now()
	tp := s.tagPrefix(r.Tag)
	nr, ns, nb := len(r.Rates), len(r.Slots), len(r.Budgets)
	keys := make([]string, 0, 1+nr+ns+2*nb+extra)
	keys = append(keys, tp+"seq")
	bare := 0
	if !r.Settles() {
		bare = 1
	}
	args := s.args(now, 6+4*nr+ns+2*nb+extra)
	args = append(args, tp+"res:", nr, ns, nb, int64(r.Cost), bare)
	params, ends := &q.params, &q.ends
	for i, c := range r.Rates {
		// Validate checked the policy.
		params[i], _ = bucket.New(c.Policy.Limit, c.Policy.Window, c.Policy.Burst)
		keys = append(keys, tp+"rate:"+r.Holder+"\x00"+c.Key)
		args = append(args, c.N, params[i].Unit, params[i].Rate, params[i].Burst)
	}
	for _, sl := range r.Slots {
		keys = append(keys, tp+"slot:"+r.Holder+"\x00"+sl.Key)
		args = append(args, sl.Limit)
	}
	for i, sc := range r.Budgets {
		var start time.Time
		var endMs int64
		if sc.Period != budget.None {
			start, ends[i] = sc.Period.Start(now, s.loc), sc.Period.End(now, s.loc)
			endMs = ends[i].UnixMilli()
		}
		b, z := budgetKeys(tp, sc, start)
		keys = append(keys, b, z)
		args = append(args, int64(sc.Limit), endMs)
	}
	q.keys, q.args = keys, args
	return q
}

// result reads the reserve script's reply v for r.
func (q *reserveCall) result(r *admission.Request, v []int64) (admission.Result, error) {
	var res admission.Result
	nr, ns, nb := len(r.Rates), len(r.Slots), len(r.Budgets)
	params, ends := &q.params, &q.ends
	if len(v) != 7+4*nr+ns {
		return res, fmt.Errorf("redisstore: reserve: script returned %d values, want %d", len(v), 7+4*nr+ns)
	}
	for i, c := range r.Rates {
		d := v[7+4*i:]
		res.Rates[i] = ratelimit.Decision{
			Allowed: d[0] == 1, Limit: c.Policy.Limit, Remaining: d[1],
			ResetAfter: time.Duration(d[2]) * time.Millisecond,
			RetryAfter: time.Duration(d[3]) * time.Millisecond,
		}
	}
	copy(res.InUse[:ns], v[7+4*nr:])
	if b := int(v[4]); b >= 0 {
		if b >= nb {
			return res, fmt.Errorf("redisstore: reserve: script named budget %d of %d", b, nb)
		}
		res.Budget = b
		res.Balance = budget.NewBalance(r.Budgets[b].Limit, budget.Micros(v[5]), budget.Micros(v[6]), ends[b])
	}
	if v[0] == 1 {
		res.Allowed = true
		if v[1] != 0 { // 0 when there is nothing to settle
			res.ID = admission.ID{Tag: r.Tag, Seq: uint64(v[1])}
		}
		return res, nil
	}
	res.Index = int(v[3])
	switch v[2] {
	case 1:
		if res.Index >= nr {
			return res, fmt.Errorf("redisstore: reserve: script named rate %d of %d", res.Index, nr)
		}
		res.Refused, res.Never = admission.KindRate, r.Rates[res.Index].N > params[res.Index].Burst
	case 2:
		if res.Index >= ns {
			return res, fmt.Errorf("redisstore: reserve: script named slot %d of %d", res.Index, ns)
		}
		res.Refused = admission.KindSlot
	case 3:
		b := r.Budgets[res.Budget]
		res.Refused, res.Never = admission.KindBudget, r.Cost > b.Limit || b.Limit == 0
	default:
		return res, fmt.Errorf("redisstore: reserve: script refused with kind %d", v[2])
	}
	return res, nil
}

// Settle implements admission.Store.Settle.
func (s *Store) Settle(ctx context.Context, r *admission.Request, id admission.ID, u admission.Usage) (admission.SettleResult, error) {
	var res admission.SettleResult
	if err := checkSettle(r, id, u); err != nil {
		return res, err
	}
	if id.Seq == 0 {
		return res, fmt.Errorf("%w: %v", admission.ErrUnknownReservation, id)
	}
	keys, args := s.settleCall(r, id, u, 0)
	v, acked, err := s.runSettle(ctx, "settle", s.settle, keys, args)
	if err != nil {
		return res, err
	}
	switch {
	case len(v) != 1:
		return res, fmt.Errorf("redisstore: settle: script returned %d values, want 1", len(v))
	case v[0] == -1:
		return res, fmt.Errorf("%w: %v", admission.ErrUnknownReservation, id)
	}
	res.Expired = v[0] == 1
	if acked < int64(s.replicas) {
		return res, fmt.Errorf("%w: %v: %d of %d replicas within %v", ErrNotReplicated, id, acked, s.replicas, s.settleWait)
	}
	return res, nil
}

// checkSettle returns the error of a settlement of id for r with u that
// no store could make.
func checkSettle(r *admission.Request, id admission.ID, u admission.Usage) error {
	if err := admission.Validate(r); err != nil {
		return err
	}
	if id.Tag != r.Tag {
		return fmt.Errorf("%w: %v is not of tag %q", admission.ErrUnknownReservation, id, r.Tag)
	}
	if u.Cost < 0 {
		return fmt.Errorf("%w: negative cost", admission.ErrInvalidRequest)
	}
	return nil
}

// runSettle runs a settle script, waiting for Config.SettleReplicas when
// set, and returns its reply and how many replicas acknowledged it.
func (s *Store) runSettle(ctx context.Context, op string, sc *rediscall.Script, keys []string, args []any) ([]int64, int64, error) {
	if s.replicas > 0 {
		return s.call.Int64sWait(ctx, op, sc, keys, s.replicas, s.settleWait, args...)
	}
	v, err := s.call.Int64s(ctx, op, sc, keys, args...)
	return v, 0, err
}

// settleCall returns the keys and arguments of the settle script for the
// reservation id of r with u, with room for extra more of each.
func (s *Store) settleCall(r *admission.Request, id admission.ID, u admission.Usage, extra int) ([]string, []any) {
	now := s.now()
	tp := s.tagPrefix(r.Tag)
	seq := strconv.FormatUint(id.Seq, 10)
	// The Refund claims with units to give back: their index and units.
	var refunds [admission.MaxRates][2]int64
	nr := 0
	for i, c := range r.Rates {
		if back := c.N - max(u.Used[i], 0); c.Refund && back > 0 {
			refunds[nr] = [2]int64{int64(i), back}
			nr++
		}
	}
	ns, nb := len(r.Slots), len(r.Budgets)
	keys := make([]string, 0, 1+nr+ns+4*nb+extra)
	keys = append(keys, tp+"res:"+seq)
	args := s.args(now, 5+4*nr+5*nb+extra)
	args = append(args, seq, int64(min(u.Cost, r.Cost)), nr, ns, nb)
	for _, rf := range refunds[:nr] {
		c := r.Rates[rf[0]]
		p, _ := bucket.New(c.Policy.Limit, c.Policy.Window, c.Policy.Burst)
		keys = append(keys, tp+"rate:"+r.Holder+"\x00"+c.Key)
		args = append(args, rf[1], p.Unit, p.Rate, p.Burst)
	}
	for _, sl := range r.Slots {
		keys = append(keys, tp+"slot:"+r.Holder+"\x00"+sl.Key)
	}
	// The reservation was made in one of the periods overlapping the time
	// it can still be settled in, give or take the margin.
	from, to := now.Add(-time.Duration(s.ttl+s.grace)*time.Millisecond-margin), now.Add(margin)
	for _, sc := range r.Budgets {
		if sc.Period == budget.None {
			b, z := budgetKeys(tp, sc, time.Time{})
			keys = append(keys, b, z)
			args = append(args, 1, 0, 0)
			continue
		}
		at, m := len(args), 0
		args = append(args, 0) // m, when known
		for start := sc.Period.Start(from, s.loc); !start.After(to); {
			end := sc.Period.End(start, s.loc)
			b, z := budgetKeys(tp, sc, start)
			keys = append(keys, b, z)
			args = append(args, start.UnixMilli(), end.UnixMilli())
			start = end
			m++
		}
		args[at] = m
	}
	return keys, args
}

// Ping implements admission.Pinger: it reports whether Redis (on a
// Cluster, every master) answers PING within the Timeout.
func (s *Store) Ping(ctx context.Context) error { return s.call.Ping(ctx) }

// Balance implements admission.Store.Balance.
func (s *Store) Balance(ctx context.Context, scope budget.Scope) (budget.Balance, error) {
	if err := scope.Valid(); err != nil {
		return budget.Balance{}, err
	}
	now := s.now()
	var start, end time.Time
	if scope.Period != budget.None {
		start, end = scope.Period.Start(now, s.loc), scope.Period.End(now, s.loc)
	}
	b, z := budgetKeys(s.tagPrefix(scope.Tag), scope, start)
	v, err := s.call.Int64s(ctx, "balance", s.balance, []string{b, z}, s.args(now, 0)...)
	if err != nil {
		return budget.Balance{}, err
	}
	if len(v) != 2 {
		return budget.Balance{}, fmt.Errorf("redisstore: balance: script returned %d values, want 2", len(v))
	}
	return budget.NewBalance(scope.Limit, budget.Micros(v[0]), budget.Micros(v[1]), end), nil
}
