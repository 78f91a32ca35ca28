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
// bucket arithmetic refills nothing for time that a bucket's state has
// already seen, and measures waits from the caller's clock. Reservations,
// by contrast, expire by the clock of the call that sees them: a lagging
// instance sees them expire that much later. A budget's period is the
// caller's: an instance whose clock is still in the period before another's
// reserves in that period, which the budget keeps; one further behind
// holds nothing in the budget, and its Settle records nothing.
//
// # Keys
//
// With P = Prefix + "{" + Tag + "}:", a Tag's state is two keys:
//
//	P + "state"   hash: every bucket, slot count, budget and live reservation of the Tag
//	P + "due"     zset: the Tag's reservations, by the time their sweep is due
//
// and, for idempotent requests, P + "idem:" + a digest of the key (see
// ReserveOnce). The state's fields are
//
//	"r" + holder + NUL + key     a token bucket, 24 bytes
//	"c" + holder + NUL + key     slots in use
//	"b" + Kind:ID:period         a budget: spent and held in its current period and the one before
//	"q" + seq                    a reservation: when it was made and expires, its Cost, and the fields it holds
//	"_q", "_n", "_x"             the last seq, the earliest expiry, and the keys' expiry
//
// so that a Reserve reads everything it decides on with one HMGET and
// writes it with one HSET, a Settle likewise, whatever the request claims:
// on a Redis of this kind of machine, seven commands for a Reserve and its
// Settle, a handful more for an idempotent request. Both keys of a Tag
// share its hash slot, which Redis Cluster requires of a script.
//
// A reservation nobody settles is swept when it expires: its slots and
// budget holds are given back by the first call on its Tag after its
// expiry, which finds it in the "due" zset ("_n" tells a call whether any
// is due, so a call sweeps nothing most of the time), and its record is
// deleted at the end of its settle grace. A call sweeps at most 256; a
// larger backlog (an instance that stopped with more requests open) is
// swept by the calls that follow, which until then count what is left as
// still held: a refusal too many, never one too few.
//
// A budget keeps two periods, so a Settle records its spend in the period
// its reservation was made in even after the next has begun; New refuses a
// TTL and SettleGrace so long that a reservation could be settled two
// periods later.
//
// The keys expire together: at the latest instant anything in them is
// needed (the end of the longest budget period plus the SettleGrace, the
// refill of a bucket, the grace of a reservation; each plus a minute's
// margin for differences between clocks), extended by a TTL so that a busy
// Tag extends them once a TTL, not on every call. A lifetime budget (Period
// None) with money spent keeps them for good. Fields of holders and
// periods no longer used stay until the keys expire: a Tag's state grows
// with the keys and routes it has used since. A Redis that evicts keys
// under memory pressure loses spend: run it with maxmemory-policy
// noeviction.
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
// reservations that had expired (their holds no longer counted), and
// saturates at 2^53 (about 9 billion USD), still above every Limit.
package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha1"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
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

// MaxSettleWindow bounds Config.TTL + Config.SettleGrace: a reservation
// is settled at most one budget period after the one it was made in (the
// shortest period is a day, 23 hours when clocks go forward), which is
// what a budget keeps (see Keys).
const MaxSettleWindow = 22 * time.Hour

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

// The library of Redis functions every Store calls, and its functions.
var (
	reserveFn, settleFn, balanceFn, reserveOnceFn, settleOnceFn *rediscall.Script
)

func init() {
	ops := []struct {
		name, body string
		fn         **rediscall.Script
	}{
		{"reserve", reserveLua, &reserveFn},
		{"settle", settleLua, &settleFn},
		{"balance", balanceLua, &balanceFn},
		// Reserve or settle that also begins or ends an idempotency entry
		// (see lua/once.lua).
		{"reserve_once", "local once = 'reserve'\nlocal function op()\n" + reserveLua + "\nend\n" + onceLua, &reserveOnceFn},
		{"settle_once", "local once = 'settle'\nlocal function op()\n" + settleLua + "\nend\n" + onceLua, &settleOnceFn},
	}
	// The library's name is its content's: instances of different
	// versions sharing a Redis each load and call their own.
	h := sha1.New()
	for _, src := range []string{commonLua, reserveLua, settleLua, balanceLua, onceLua} {
		h.Write([]byte(src))
	}
	name := "gatekit_adm_" + hex.EncodeToString(h.Sum(nil))[:12]
	var b strings.Builder
	b.WriteString("#!lua name=" + name + "\n" + commonLua)
	for _, op := range ops {
		b.WriteString("\nredis.register_function('" + name + "_" + op.name + "', function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n" + op.body + "\nend)\n")
	}
	lib := rediscall.NewLibrary(b.String())
	for _, op := range ops {
		*op.fn = lib.Function(name + "_" + op.name)
	}
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
	// millisecond. TTL + SettleGrace must not exceed MaxSettleWindow.
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
	call rediscall.Caller
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
	if c.TTL+c.SettleGrace > MaxSettleWindow {
		return nil, fmt.Errorf("redisstore: TTL %v + SettleGrace %v is longer than %v", c.TTL, c.SettleGrace, MaxSettleWindow)
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Store{
		call:        call,
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

// stateKeys returns the keys of tag's state: its hash and its zset of
// reservations by the time their sweep is due.
func (s *Store) stateKeys(tag string, extra int) []string {
	tp := s.tagPrefix(tag)
	return append(make([]string, 0, 2+extra), tp+"state", tp+"due")
}

// slotField returns the state field of r's slot sl.
func slotField(r *admission.Request, sl admission.Slot) string {
	return "c" + r.Holder + "\x00" + sl.Key
}

// heldFields returns the fields of r's slots and budgets as its
// reservation's record keeps them (see lua/common.lua, packRes): their
// number, then each one's length and bytes, in 32-bit little-endian.
func heldFields(r *admission.Request) string {
	fields := make([]string, 0, len(r.Slots)+len(r.Budgets))
	for _, sl := range r.Slots {
		fields = append(fields, slotField(r, sl))
	}
	for _, sc := range r.Budgets {
		fields = append(fields, budgetField(sc))
	}
	n := 4
	for _, f := range fields {
		n += 4 + len(f)
	}
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, n), uint32(len(fields)))
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return string(b)
}

// nums returns vs as the script reads them with struct.unpack('<d...'):
// little-endian float64s, each exact (every value is below 2^53).
func nums(vs ...int64) string {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
	}
	return string(b)
}

// budgetField returns the state field of budget sc.
func budgetField(sc budget.Scope) string {
	return "b" + sc.Kind + ":" + sc.ID + ":" + sc.Period.String()
}

// periodArgs returns the start, end and previous start (ms) of the period
// of sc at now; 0, 0, 0 for a lifetime budget.
func (s *Store) periodArgs(sc budget.Scope, now time.Time) (start, end time.Time, prev int64) {
	if sc.Period == budget.None {
		return time.Time{}, time.Time{}, 0
	}
	start, end = sc.Period.Start(now, s.loc), sc.Period.End(now, s.loc)
	return start, end, sc.Period.Start(start.Add(-time.Millisecond), s.loc).UnixMilli()
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
	v, err := s.call.Int64s(ctx, "reserve", reserveFn, q.keys, q.args...)
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
	nr, ns, nb := len(r.Rates), len(r.Slots), len(r.Budgets)
	bare := 0
	if !r.Settles() {
		bare = 1
	}
	args := s.args(now, 6+2*nr+2*ns+2*nb+extra)
	args = append(args, nr, ns, nb, int64(r.Cost), bare, heldFields(r))
	params, ends := &q.params, &q.ends
	for i, c := range r.Rates {
		// Validate checked the policy.
		params[i], _ = bucket.New(c.Policy.Limit, c.Policy.Window, c.Policy.Burst)
		args = append(args, "r"+r.Holder+"\x00"+c.Key, nums(c.N, params[i].Unit, params[i].Rate, params[i].Burst))
	}
	for _, sl := range r.Slots {
		args = append(args, slotField(r, sl), sl.Limit)
	}
	for i, sc := range r.Budgets {
		start, end, prev := s.periodArgs(sc, now)
		var startMs, endMs int64
		if sc.Period != budget.None {
			startMs, endMs, ends[i] = start.UnixMilli(), end.UnixMilli(), end
		}
		args = append(args, budgetField(sc), nums(int64(sc.Limit), startMs, endMs, prev))
	}
	q.keys, q.args = s.stateKeys(r.Tag, extra), args
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
	v, acked, err := s.runSettle(ctx, "settle", settleFn, keys, args)
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
	args := s.args(s.now(), 5+2*nr+ns+nb+extra)
	args = append(args, strconv.FormatUint(id.Seq, 10), int64(min(u.Cost, r.Cost)), nr, ns, nb)
	for _, rf := range refunds[:nr] {
		c := r.Rates[rf[0]]
		p, _ := bucket.New(c.Policy.Limit, c.Policy.Window, c.Policy.Burst)
		args = append(args, "r"+r.Holder+"\x00"+c.Key, nums(rf[1], p.Unit, p.Rate, p.Burst))
	}
	for _, sl := range r.Slots {
		args = append(args, slotField(r, sl))
	}
	for _, sc := range r.Budgets {
		args = append(args, budgetField(sc))
	}
	return s.stateKeys(r.Tag, extra), args
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
	var startMs int64
	start, end, _ := s.periodArgs(scope, now)
	if scope.Period != budget.None {
		startMs = start.UnixMilli()
	}
	v, err := s.call.Int64s(ctx, "balance", balanceFn, s.stateKeys(scope.Tag, 0), append(s.args(now, 2), budgetField(scope), startMs)...)
	if err != nil {
		return budget.Balance{}, err
	}
	if len(v) != 2 {
		return budget.Balance{}, fmt.Errorf("redisstore: balance: script returned %d values, want 2", len(v))
	}
	return budget.NewBalance(scope.Limit, budget.Micros(v[0]), budget.Micros(v[1]), end), nil
}
