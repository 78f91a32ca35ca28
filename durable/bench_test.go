package durable_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
	"github.com/gatekit/gatekit/idempotency"
)

// benchScopes returns the budgets of n accounts: each a key's daily budget
// and its account's monthly one.
func benchScopes(n int) [][]budget.Scope {
	scopes := make([][]budget.Scope, n)
	for i := range scopes {
		acct := fmt.Sprintf("acct_%04d", i)
		scopes[i] = []budget.Scope{
			{Tag: acct, Kind: "key", ID: "key_" + acct, Limit: budget.MaxMicros, Period: budget.Daily},
			{Tag: acct, Kind: "account", ID: acct, Limit: budget.MaxMicros, Period: budget.Monthly},
		}
	}
	return scopes
}

// benchHoldSettle measures a Hold and a Settle on budgets already in use,
// in parallel, all on one account (one lock) or spread over many. It is
// the same loop as budget's BenchmarkMemoryHoldSettle, so that the two
// ledgers compare in one run.
func benchHoldSettle(b *testing.B, accounts int, l budget.Ledger, flush func() error) {
	scopes := benchScopes(accounts)
	for _, sc := range scopes {
		r, _ := l.Hold(ctx, sc, budget.Cent)
		l.Settle(ctx, r.ID, budget.Cent)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			sc := scopes[i%accounts]
			r, err := l.Hold(ctx, sc, budget.Cent)
			if err != nil || !r.Allowed {
				b.Errorf("Hold: %+v, %v", r, err)
				return
			}
			if _, err := l.Settle(ctx, r.ID, budget.Micro); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	// Until the last settlement is on disk.
	if err := flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "settles/s")
}

// BenchmarkMemoryHoldSettle is the baseline of BenchmarkDurableHoldSettle:
// budget.Memory alone.
func BenchmarkMemoryHoldSettle(b *testing.B) {
	for _, accounts := range []int{1, 1024} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			m, err := budget.NewMemory(nil)
			if err != nil {
				b.Fatal(err)
			}
			benchHoldSettle(b, accounts, m, func() error { return nil })
		})
	}
}

// BenchmarkDurableHoldSettle measures a Hold and a Settle on a Store's
// ledger, its writer writing behind every FlushInterval (default), and
// written before each Settle returns (every settle, where concurrent
// settlements share a write: 64 goroutines per CPU).
func BenchmarkDurableHoldSettle(b *testing.B) {
	for _, mode := range []struct {
		name  string
		flush time.Duration
	}{{"", 0}, {"everySettle/", -1}} {
		for _, accounts := range []int{1, 1024} {
			b.Run(fmt.Sprintf("%saccounts=%d", mode.name, accounts), func(b *testing.B) {
				s := open(b, b.TempDir(), &durable.Config{FlushInterval: mode.flush})
				if mode.flush < 0 {
					b.SetParallelism(64)
				}
				benchHoldSettle(b, accounts, s.Ledger(), s.Flush)
			})
		}
	}
}

// BenchmarkWriterSpendWritten measures the writer alone: a write of a batch
// of settlements, each to a budget of its own (no two add up in the queue),
// to a file that already holds their budgets. spends/s is budgets' spend
// written per second.
func BenchmarkWriterSpendWritten(b *testing.B) {
	for _, batch := range []int{1, 100, 2048, 10000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := open(b, b.TempDir(), &durable.Config{FlushInterval: never})
			l := s.Ledger()
			scopes := make([][]budget.Scope, batch)
			for i := range scopes {
				scopes[i] = []budget.Scope{{Tag: fmt.Sprint("acct_", i), Kind: "key", ID: "k", Limit: budget.MaxMicros, Period: budget.Monthly}}
			}
			settleAll := func() {
				for _, sc := range scopes {
					r, _ := l.Hold(ctx, sc, budget.Cent)
					l.Settle(ctx, r.ID, budget.Cent)
				}
			}
			settleAll()
			s.Flush()
			var writing time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				settleAll()
				b.StartTimer()
				start := time.Now()
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
				writing += time.Since(start)
			}
			b.ReportMetric(float64(batch*b.N)/writing.Seconds(), "spends/s")
		})
	}
}

// BenchmarkOpen measures Open of a file holding the spend of 100,000
// budgets and 10,000 records of 1 KiB: checking it end to end and reloading
// it all.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s, err := durable.Open(dir, &durable.Config{FlushInterval: never})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100_000 {
		sc := budget.Scope{Tag: fmt.Sprint("acct_", i/2), Kind: "key", ID: fmt.Sprint("key_", i), Limit: budget.MaxMicros, Period: budget.Monthly}
		r, _ := s.Ledger().Hold(ctx, []budget.Scope{sc}, budget.Cent)
		s.Ledger().Settle(ctx, r.ID, budget.Cent)
	}
	body := make([]byte, 1024)
	for i := range 10_000 {
		key := fmt.Sprint("principal\x00key-", i)
		bg, _ := s.Idempotency().Begin(ctx, key, "fp", time.Minute)
		s.Idempotency().Complete(ctx, key, bg.Token, idempotency.Record{Status: 200, Body: body}, time.Hour)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s, err := durable.Open(dir, &durable.Config{FlushInterval: never})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// benchBeginComplete measures a Begin and a Complete of a new key, in
// parallel, with a small JSON response: the same loop as idempotency's
// BenchmarkMemoryBeginComplete.
func benchBeginComplete(b *testing.B, st idempotency.Store, flush func() error) {
	header := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_0123456789abcdef"}}
	body := []byte(`{"id":"chatcmpl-123","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"}}]}`)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 64)
		for pb.Next() {
			buf = strconv.AppendInt(append(buf[:0], "principal_42\x00key-"...), next.Add(1), 10)
			key := string(buf)
			r, err := st.Begin(ctx, key, "fp", time.Minute)
			if err != nil || r.State != idempotency.Started {
				b.Errorf("Begin: %v, %v", r.State, err)
				return
			}
			rec := idempotency.Record{Status: 200, Header: header, Body: body}
			if err := st.Complete(ctx, key, r.Token, rec, 24*time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkMemoryBeginComplete is the baseline of
// BenchmarkDurableBeginComplete: idempotency.Memory alone.
func BenchmarkMemoryBeginComplete(b *testing.B) {
	m, err := idempotency.NewMemory(&idempotency.MemoryConfig{MaxEntries: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	benchBeginComplete(b, m, func() error { return nil })
}

// BenchmarkDurableBeginComplete measures a Begin and a Complete on a
// Store's idempotency store, its writer writing the records behind, until
// the last is written.
func BenchmarkDurableBeginComplete(b *testing.B) {
	s := open(b, b.TempDir(), &durable.Config{MaxEntries: 1 << 20})
	benchBeginComplete(b, s.Idempotency(), s.Flush)
}
