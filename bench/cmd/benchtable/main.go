// Command benchtable runs every bench scenario in one process with
// testing.Benchmark and prints a markdown report: the cost of each
// contestant over bare Echo, the Redis throughput and round trips, and the
// verdict on gatekit's performance targets.
//
//	cd bench && go run ./cmd/benchtable
//
// Flags: -benchtime (per run of an in-process scenario at one key count,
// default 300ms), -redis-benchtime (the same for a Redis scenario, default
// 1s), -count (runs of each, interleaved across scenarios; default 5),
// -stat (which run is kept, by ns/op: min, the default, since noise from a
// shared machine only ever adds time; or median), -keys, -run (a regexp on
// scenario names), -redis=false to leave out the Redis scenarios,
// -fresh-headers to give every response a new header map as net/http does. A run with -count 3
// takes two and a half to three minutes on two shared cores. Progress goes to stderr, the report to stdout.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatekit/gatekit/bench"
)

func main() {
	testing.Init()
	benchtime := flag.Duration("benchtime", 300*time.Millisecond, "time each in-process scenario runs for, per key count and run")
	redisBenchtime := flag.Duration("redis-benchtime", time.Second, "time each Redis scenario runs for, per key count and run (a shorter run mostly measures its connections warming up)")
	count := flag.Int("count", 5, "runs of each scenario, interleaved with the others")
	stat := flag.String("stat", "min", "which run of each scenario the report keeps: min or median, by ns/op")
	keysFlag := flag.String("keys", "1024,100000", "comma-separated key counts")
	run := flag.String("run", "", "regexp selecting scenarios by name (default: all)")
	withRedis := flag.Bool("redis", true, "include the Redis scenarios (skipped anyway when redis-server is missing outside CI)")
	flag.BoolVar(&bench.FreshHeaderMaps, "fresh-headers", false, "give every response a new, empty header map, as net/http does, instead of a cleared one with room for 16")
	flag.Parse()

	if *stat != "min" && *stat != "median" {
		fatal(fmt.Errorf("-stat: want min or median, not %q", *stat))
	}
	var keyCounts []int
	for _, f := range strings.Split(*keysFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-keys: %q is not a positive integer", f))
		}
		keyCounts = append(keyCounts, n)
	}
	var filter *regexp.Regexp
	if *run != "" {
		var err error
		if filter, err = regexp.Compile(*run); err != nil {
			fatal(fmt.Errorf("-run: %w", err))
		}
	}

	suite := bench.NewSuite()
	defer suite.Close()
	started := time.Now()
	var rows []row
	var redisNote string
	for _, n := range keyCounts {
		var live []*row
		for _, sc := range bench.Scenarios() {
			if (sc.Redis && !*withRedis) || (filter != nil && !filter.MatchString(sc.Name)) {
				continue
			}
			live = append(live, &row{sc: sc, keys: n, rt: -1, evals: -1})
		}
		// Run the rounds interleaved, so that a burst of noise on the
		// machine lands on one run of several scenarios rather than on
		// every run of one. Each run sets its scenario up afresh (and
		// primes it) and releases it after, so that only one scenario's
		// state is on the heap while it runs.
		results := make([][]testing.BenchmarkResult, len(live))
		for round := range *count {
			for i, r := range live {
				if r.err != nil || (r.sc.Redis && redisNote != "") {
					continue
				}
				fmt.Fprintf(os.Stderr, "run %d/%d %-24s keys=%-7d ", round+1, *count, r.sc.Name, n)
				env, err := suite.Setup(r.sc, n)
				if errors.Is(err, bench.ErrNoRedis) {
					redisNote = err.Error()
					fmt.Fprintln(os.Stderr, "skipped:", err)
					continue
				}
				if err != nil {
					r.err = err
					fmt.Fprintln(os.Stderr, "FAILED:", err)
					continue
				}
				bt := *benchtime
				if r.sc.Redis {
					bt = *redisBenchtime
				}
				if err := flag.Set("test.benchtime", bt.String()); err != nil {
					fatal(err)
				}
				res := testing.Benchmark(func(b *testing.B) { bench.Run(b, env) })
				env.Release()
				if res.N == 0 {
					msg := env.Failure()
					if msg == "" {
						msg = "the benchmark failed"
					}
					r.err = errors.New(msg)
					fmt.Fprintln(os.Stderr, "FAILED:", msg)
					continue
				}
				fmt.Fprintf(os.Stderr, "%10.0f ns/op %4d allocs/op\n", float64(res.T.Nanoseconds())/float64(res.N), res.AllocsPerOp())
				results[i] = append(results[i], res)
			}
		}
		for i, r := range live {
			if r.sc.Redis && redisNote != "" {
				continue
			}
			if r.err == nil {
				r.summarize(results[i], *stat)
			}
			rows = append(rows, *r)
		}
	}
	report(os.Stdout, rows, reportInfo{
		benchtime: *benchtime, redisBenchtime: *redisBenchtime, count: *count, stat: *stat, elapsed: time.Since(started), redisNote: redisNote,
	})
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchtable:", err)
	os.Exit(2)
}

// row is one scenario at one key count.
type row struct {
	sc     bench.Scenario
	keys   int
	ns     float64 // median over the runs
	allocs int64
	bytes  int64
	reqs   float64 // req/s of the median run
	rt     float64 // round trips per op, -1 when not counted
	evals  float64
	usec   float64 // Redis server time in scripts per op
	// rounds are ns/op of every run, and roundReqs their req/s, in the
	// order of the interleaved rounds, for comparisons paired by round.
	rounds, roundReqs []float64
	err               error
}

// summarize keeps the run with the lowest ns/op (stat "min") or the median
// one.
func (r *row) summarize(results []testing.BenchmarkResult, stat string) {
	nsPerOp := func(res testing.BenchmarkResult) float64 { return float64(res.T.Nanoseconds()) / float64(res.N) }
	r.rounds, r.roundReqs = r.rounds[:0], r.roundReqs[:0]
	for _, res := range results {
		r.rounds = append(r.rounds, nsPerOp(res))
		r.roundReqs = append(r.roundReqs, res.Extra["req/s"])
	}
	results = slices.Clone(results)
	slices.SortFunc(results, func(a, b testing.BenchmarkResult) int {
		return cmp.Compare(nsPerOp(a), nsPerOp(b))
	})
	m := results[0]
	if stat == "median" {
		m = results[len(results)/2]
	}
	r.ns = nsPerOp(m)
	r.allocs, r.bytes = m.AllocsPerOp(), m.AllocedBytesPerOp()
	r.reqs = m.Extra["req/s"]
	if v, ok := m.Extra["rt/op"]; ok {
		r.rt = v
	}
	if v, ok := m.Extra["evals/op"]; ok {
		r.evals = v
	}
	r.usec = m.Extra["server-µs/op"]
}

type reportInfo struct {
	benchtime      time.Duration
	redisBenchtime time.Duration
	count          int
	stat           string
	elapsed        time.Duration
	redisNote      string
}

// table finds rows by scenario name and key count.
type table []row

func (t table) get(name string, keys int) (row, bool) {
	for _, r := range t {
		if r.sc.Name == name && r.keys == keys && r.err == nil {
			return r, true
		}
	}
	return row{}, false
}

func report(w io.Writer, rows []row, info reportInfo) {
	t := table(rows)
	fmt.Fprintf(w, "# gatekit benchmarks\n\n")
	fmt.Fprintf(w, "%s, %s/%s, GOMAXPROCS=%d, %s; benchtime %v (Redis %v), %d interleaved run(s) of each, the %s kept (by ns/op), %s in all.\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), cpuName(), info.benchtime, info.redisBenchtime, info.count,
		info.stat, info.elapsed.Round(time.Second))
	if bench.FreshHeaderMaps {
		fmt.Fprintf(w, "Every response gets a new, empty header map, as in net/http's server (-fresh-headers).\n\n")
	}
	fmt.Fprintf(w, "Every contestant serves `POST %s` (a %d-byte JSON chat request, answered with a fixed %d-byte JSON body) through Echo\n", bench.Route, len(bench.ChatRequestJSON), len(bench.ChatResponseJSON))
	fmt.Fprintf(w, "to copies of prebuilt requests, one per API key, from b.RunParallel; each goroutine cycles through the keys. Δ is over bare Echo at the same key count.\n\n")

	fmt.Fprintln(w, "## In process")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | keys | ns/op | allocs/op | B/op | × bare Echo | Δ ns | Δ allocs |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		if r.sc.Redis {
			continue
		}
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %d | failed: %s | | | | | |\n", r.sc.Label, r.keys, r.err)
			continue
		}
		base, ok := t.get("bare-echo", r.keys)
		ratio, dns, dal := "", "", ""
		if ok {
			ratio = fmt.Sprintf("%.2f", r.ns/base.ns)
			dns = fmt.Sprintf("%+.0f", r.ns-base.ns)
			dal = fmt.Sprintf("%+d", r.allocs-base.allocs)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %d | %d | %s | %s | %s |\n", r.sc.Label, r.keys, r.ns, r.allocs, r.bytes, ratio, dns, dal)
	}
	for _, n := range keyCounts(rows) {
		if d, ok := rateLimitAlone(t, n); ok {
			fmt.Fprintf(w, "| *gatekit rate limiting alone = (Auth + Admission) − Auth* | %d | | | | | %+.0f | %+d |\n", n, d.ns, d.allocs)
		}
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "## Redis (one redis-server on loopback, same client options for both)")
	fmt.Fprintln(w)
	if info.redisNote != "" {
		fmt.Fprintf(w, "Skipped: %s\n\n", info.redisNote)
	} else {
		fmt.Fprintf(w, "%d requests in flight. Round trips are writes on the client's connections; EVALs are EVAL + EVALSHA + FCALL,\n", bench.RedisInFlight)
		fmt.Fprintf(w, "and server µs the time Redis spent running them, from INFO commandstats. Client and server share the machine's cores.\n\n")
		fmt.Fprintln(w, "| scenario | keys | req/s | ns/op | round trips/op | EVALs/op | server µs/op | allocs/op | B/op |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range rows {
			if !r.sc.Redis {
				continue
			}
			if r.err != nil {
				fmt.Fprintf(w, "| %s | %d | failed: %s | | | | | | |\n", r.sc.Label, r.keys, r.err)
				continue
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.3f | %.3f | %.2f | %d | %d |\n", r.sc.Label, r.keys, r.reqs, r.ns, r.rt, r.evals, r.usec, r.allocs, r.bytes)
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "## Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | keys | measured | verdict |")
	fmt.Fprintln(w, "|---|---:|---|---|")
	for _, v := range verdicts(t, info) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", v.target, v.keys, v.measured, v.verdict)
	}
}

type delta struct {
	ns     float64
	allocs int64
}

// over is r's cost over base.
func over(r, base row) delta { return delta{r.ns - base.ns, r.allocs - base.allocs} }

// roundsWhere counts the rounds, of those all of rs ran in, in which
// holds is true of their ns/op: a comparison paired by round, which the
// machine's drift from one round to the next does not move.
func roundsWhere(holds func(ns []float64) bool, rs ...row) (yes, of int) {
	n := len(rs[0].rounds)
	for _, r := range rs[1:] {
		n = min(n, len(r.rounds))
	}
	ns := make([]float64, len(rs))
	for i := range n {
		for j, r := range rs {
			ns[j] = r.rounds[i]
		}
		if holds(ns) {
			yes++
		}
	}
	return yes, n
}

// rateLimitAlone is what Admission with a requests limit adds to Auth: Auth
// is the only exported way to give a request the principal Admission keys
// on.
func rateLimitAlone(t table, n int) (delta, bool) {
	rl, ok1 := t.get("gatekit-auth-admission", n)
	auth, ok2 := t.get("gatekit-auth", n)
	if !ok1 || !ok2 {
		return delta{}, false
	}
	return over(rl, auth), true
}

func keyCounts(rows []row) []int {
	var ks []int
	for _, r := range rows {
		if !slices.Contains(ks, r.keys) {
			ks = append(ks, r.keys)
		}
	}
	return ks
}

type verdict struct{ target, keys, measured, verdict string }

func passFail(ok bool) string {
	if ok {
		return "**pass**"
	}
	return "**FAIL**"
}

// headerPeers are the memory-store peers that set rate-limit headers, as
// gatekit does; all of them run through echo.WrapMiddleware.
var headerPeers = []string{"httprate", "go-limiter", "ulule"}

func verdicts(t table, info reportInfo) []verdict {
	var vs []verdict
	for _, n := range keyCounts(t) {
		k := strconv.Itoa(n)
		bare, okBare := t.get("bare-echo", n)
		if full, ok := t.get("gatekit-full", n); ok && okBare {
			d := over(full, bare)
			vs = append(vs, verdict{"full stack, allowed: ≤ 8 allocs over bare Echo", k,
				fmt.Sprintf("%+d allocs (%+.0f ns, %.2f× bare Echo)", d.allocs, d.ns, full.ns/bare.ns), passFail(d.allocs <= 8)})
		}
		if v, ok := rateLimitVerdict(t, n); ok {
			vs = append(vs, v)
		}
		if info.redisNote == "" {
			for _, pair := range [][2]string{{"redis-gatekit", "redis-redis_rate"}, {"redis-store-gatekit", "redis-store-redis_rate"}} {
				g, ok1 := t.get(pair[0], n)
				p, ok2 := t.get(pair[1], n)
				if ok1 {
					vs = append(vs, verdict{fmt.Sprintf("Redis store: one script or function call per request for a requests limit (nothing to settle), at most one round trip, concurrent calls sharing theirs (%s)", pair[0]), k,
						fmt.Sprintf("%.3f round trips/op, %.3f EVALs/op", g.rt, g.evals), passFail(g.rt <= 1 && g.evals == 1)})
				}
				if ok1 && ok2 {
					yes, of := 0, min(len(g.roundReqs), len(p.roundReqs))
					for i := range of {
						if g.roundReqs[i] >= p.roundReqs[i] {
							yes++
						}
					}
					vs = append(vs, verdict{fmt.Sprintf("Redis: at least redis_rate's req/s (%s vs %s)", pair[0], pair[1]), k,
						fmt.Sprintf("%.0f vs %.0f req/s (%+.1f%%; at least in %d of %d rounds)", g.reqs, p.reqs, 100*(g.reqs/p.reqs-1), yes, of), passFail(g.reqs >= p.reqs)})
				}
			}
		}
	}
	return vs
}

// rateLimitVerdict sets gatekit's rate limiting alone ((Auth + Admission)
// − Auth) against the cheapest peer's that sets headers: the peer's time
// over the pass-through WrapMiddleware (echo-wrap-noop) it runs through, or
// over bare Echo when that row is missing. The cheapest peer is the one
// with the least of it in the kept runs; the rounds are counted against
// that peer.
func rateLimitVerdict(t table, n int) (verdict, bool) {
	rl, ok := rateLimitAlone(t, n)
	if !ok {
		return verdict{}, false
	}
	base, okWrap := t.get("echo-wrap-noop", n)
	glue := "echo-wrap-noop"
	if !okWrap {
		if base, ok = t.get("bare-echo", n); !ok {
			return verdict{}, false
		}
		glue = "bare Echo, WrapMiddleware included"
	}
	var peer row
	best, bestName := 0.0, ""
	for _, name := range headerPeers {
		if p, ok := t.get(name, n); ok {
			if d := over(p, base); bestName == "" || d.ns < best {
				peer, best, bestName = p, d.ns, name
			}
		}
	}
	if bestName == "" {
		return verdict{}, false
	}
	authAdm, _ := t.get("gatekit-auth-admission", n)
	auth, _ := t.get("gatekit-auth", n)
	yes, of := roundsWhere(func(ns []float64) bool { return ns[0]-ns[1] <= ns[2]-ns[3] }, authAdm, auth, peer, base)
	return verdict{"gatekit's rate limiting alone costs no more than the cheapest peer's that sets headers", strconv.Itoa(n),
		fmt.Sprintf("%+.0f ns, %+d allocs vs %s's %+.0f ns, %+d allocs over %s (%.2f×; no more in %d of %d rounds)",
			rl.ns, rl.allocs, bestName, best, peer.allocs-base.allocs, glue, rl.ns/best, yes, of),
		passFail(rl.ns <= best)}, true
}

// cpuName is the CPU's model name from /proc/cpuinfo, or GOARCH.
func cpuName() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
			}
		}
	}
	return runtime.GOARCH
}
