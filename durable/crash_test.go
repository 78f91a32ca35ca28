//go:build linux

package durable_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
	"github.com/gatekit/gatekit/durable/internal/crashtest/spec"
	"github.com/gatekit/gatekit/idempotency"
)

// crashSlack is how much later than FlushInterval after its settlement a
// write may come: the writer's own time and a busy machine's scheduling.
const crashSlack = 150 * time.Millisecond

var (
	buildOnce sync.Once
	helperBin string
	buildErr  error
)

// helper builds the crashtest command once per test binary.
func helper(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crashtest")
		if err != nil {
			buildErr = err
			return
		}
		helperBin = filepath.Join(dir, "crashtest")
		out, err := exec.Command("go", "build", "-o", helperBin, "github.com/gatekit/gatekit/durable/internal/crashtest").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return helperBin
}

// TestMain removes the helper's build.
func TestMain(m *testing.M) {
	code := m.Run()
	if helperBin != "" {
		os.RemoveAll(filepath.Dir(helperBin))
	}
	os.Exit(code)
}

// ack is one acknowledgement the helper printed.
type ack struct {
	at time.Time
	n  int64 // the running total (s), the record number (r, f)
}

// run is one run of the helper, stopped by sig.
type run struct {
	settled, completed, flushed []ack
	closed                      string // the "closed" line, after SIGTERM
	stoppedAt                   time.Time
}

// runHelper starts the helper on dir, lets it work for a random time, then
// sends it sig and reads everything it printed.
func runHelper(t *testing.T, dir string, flush time.Duration, sig syscall.Signal, rng *rand.Rand) run {
	t.Helper()
	cmd := exec.Command(helper(t), "-dir", dir, "-flush", flush.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start: %q %v", lines.Text(), lines.Err())
	}
	var r run
	done := make(chan error, 1)
	go func() {
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			if f[0] == "closed" {
				r.closed = lines.Text()
				continue
			}
			ns, err1 := strconv.ParseInt(f[1], 10, 64)
			n, err2 := strconv.ParseInt(f[2], 10, 64)
			if len(f) != 3 || err1 != nil || err2 != nil {
				done <- fmt.Errorf("helper printed %q", lines.Text())
				return
			}
			a := ack{at: time.Unix(0, ns), n: n}
			switch f[0] {
			case "s":
				r.settled = append(r.settled, a)
			case "r":
				r.completed = append(r.completed, a)
			case "f":
				r.flushed = append(r.flushed, a)
			}
		}
		done <- lines.Err()
	}()
	time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond))))
	r.stoppedAt = time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if sig == syscall.SIGKILL {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper was not killed: %v", err)
		}
	} else if err != nil {
		t.Fatalf("helper after %v: %v", sig, err)
	}
	if len(r.settled) == 0 {
		t.Fatal("helper settled nothing")
	}
	return r
}

// kept reopens dir and returns the spend it kept, in each of spec.Scopes().
func kept(t *testing.T, dir string) budget.Micros {
	t.Helper()
	s := open(t, dir, nil)
	defer s.Close()
	var got []budget.Micros
	for _, sc := range spec.Scopes() {
		got = append(got, spent(t, s.Ledger(), sc))
	}
	for _, g := range got[1:] {
		if g != got[0] {
			t.Fatalf("the budgets of one hold kept different spend: %v", got)
		}
	}
	return got[0]
}

// replays reports which of records 0 to last replay from dir.
func replays(t *testing.T, dir string, last int64) []bool {
	t.Helper()
	s := open(t, dir, nil)
	defer s.Close()
	ok := make([]bool, last+1)
	for n := range ok {
		b, err := s.Idempotency().Begin(ctx, spec.RecordKey(n), spec.Fingerprint, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ok[n] = b.State == idempotency.Completed && string(b.Record.Body) == string(spec.RecordBody(n))
	}
	return ok
}

// before returns the last ack at or before t, and whether there is one.
func before(acks []ack, t time.Time) (ack, bool) {
	var last ack
	found := false
	for _, a := range acks {
		if a.at.After(t) {
			break
		}
		last, found = a, true
	}
	return last, found
}

// TestKillLosesAtMostTheLastFlushInterval kills a process settling as fast
// as it can with SIGKILL at random moments. After each kill, the spend kept
// includes every settlement acknowledged more than FlushInterval (and some
// slack) before the kill, and nothing that was not settled; the records
// completed by then, or flushed, replay.
func TestKillLosesAtMostTheLastFlushInterval(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := range 3 {
		t.Run(fmt.Sprint("kill", i), func(t *testing.T) {
			dir := t.TempDir()
			flush := durable.DefaultFlushInterval
			r := runHelper(t, dir, flush, syscall.SIGKILL, rng)
			got := kept(t, dir)
			last := r.settled[len(r.settled)-1]
			must, _ := before(r.settled, r.stoppedAt.Add(-flush-crashSlack))
			// One settlement may be written but not yet acknowledged.
			if got < budget.Micros(must.n) || got > budget.Micros(last.n)+spec.MaxAmount {
				t.Fatalf("kept %d micros; acknowledged %d up to %v before the kill and %d in all",
					got, must.n, flush+crashSlack, last.n)
			}
			var newest ack // the newest acknowledgement kept
			for _, a := range r.settled {
				if a.n <= int64(got) {
					newest = a
				}
			}
			t.Logf("%d settlements acknowledged (%d micros); kept %d micros: all acknowledged until %v before the kill",
				len(r.settled), last.n, got, r.stoppedAt.Sub(newest.at).Round(time.Millisecond))

			if len(r.completed) == 0 {
				t.Fatal("helper completed no record")
			}
			ok := replays(t, dir, r.completed[len(r.completed)-1].n)
			mustRec, found := before(r.completed, r.stoppedAt.Add(-flush-crashSlack))
			if flushed, ok := before(r.flushed, r.stoppedAt); ok && (!found || flushed.n > mustRec.n) {
				mustRec, found = flushed, true
			}
			if found {
				for n := range mustRec.n + 1 {
					if !ok[n] {
						t.Fatalf("record %d, completed before %v, does not replay after the kill", n, mustRec.at)
					}
				}
			}
			t.Logf("%d records completed; at least %d must replay; %d do", len(r.completed), mustRec.n+1, count(ok))
		})
	}
}

func count(ok []bool) int {
	n := 0
	for _, b := range ok {
		if b {
			n++
		}
	}
	return n
}

// TestKillLosesNothingWrittenEverySettle kills a process whose store writes
// every settlement before acknowledging it: everything acknowledged is kept.
func TestKillLosesNothingWrittenEverySettle(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	dir := t.TempDir()
	r := runHelper(t, dir, -1, syscall.SIGKILL, rng)
	got := kept(t, dir)
	last := r.settled[len(r.settled)-1]
	if got < budget.Micros(last.n) || got > budget.Micros(last.n)+spec.MaxAmount {
		t.Fatalf("kept %d micros; acknowledged %d", got, last.n)
	}
	t.Logf("%d settlements acknowledged (%d micros), kept %d micros", len(r.settled), last.n, got)
	ok := replays(t, dir, r.completed[len(r.completed)-1].n)
	for n, replayed := range ok {
		if !replayed {
			t.Fatalf("record %d does not replay after the kill", n)
		}
	}
}

// TestGracefulStopLosesNothing stops the process with SIGTERM, on which it
// closes its store: everything it acknowledged is kept, exactly.
func TestGracefulStopLosesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	dir := t.TempDir()
	r := runHelper(t, dir, durable.DefaultFlushInterval, syscall.SIGTERM, rng)
	last := r.settled[len(r.settled)-1]
	lastRec := r.completed[len(r.completed)-1]
	if want := fmt.Sprintf("closed %d %d", last.n, lastRec.n); r.closed != want {
		t.Fatalf("helper printed %q, want %q", r.closed, want)
	}
	if got := kept(t, dir); got != budget.Micros(last.n) {
		t.Fatalf("kept %d micros after a graceful stop; acknowledged %d", got, last.n)
	}
	ok := replays(t, dir, lastRec.n)
	for n, replayed := range ok {
		if !replayed {
			t.Fatalf("record %d does not replay after a graceful stop", n)
		}
	}
	t.Logf("%d settlements (%d micros) and %d records, all kept", len(r.settled), last.n, len(ok))
}
