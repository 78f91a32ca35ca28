// Command crashtest settles budget spend and completes idempotent requests
// in a durable.Store as fast as it can, printing each one as soon as it is
// acknowledged, until it is killed or told to stop. It is the process that
// the durable package's crash test kills with SIGKILL at a random moment,
// to check what the store kept against what it acknowledged.
//
// Usage:
//
//	crashtest -dir DIR [-flush 100ms]
//
// It prints one line per event, each written at once:
//
//	ready                    the store is open
//	s UNIXNANO TOTAL         a settlement returned; TOTAL is the sum of all
//	                         of them so far, in micros
//	r UNIXNANO N             Complete of record N returned
//	f UNIXNANO N             Flush returned: records 0 to N are written
//	closed TOTAL N           after SIGTERM or SIGINT: Close returned, after
//	                         settlements summing TOTAL and records 0 to N
//
// Every settlement is charged to the budgets Scopes returns; record N is kept
// under the key RecordKey(N) with the body RecordBody(N).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/durable"
	"github.com/gatekit/gatekit/durable/internal/crashtest/spec"
	"github.com/gatekit/gatekit/idempotency"
)

func main() {
	dir := flag.String("dir", "", "the store's directory")
	flush := flag.Duration("flush", durable.DefaultFlushInterval, "the store's FlushInterval; negative: every settle")
	flag.Parse()
	if err := run(*dir, *flush); err != nil {
		fmt.Fprintln(os.Stderr, "crashtest:", err)
		os.Exit(1)
	}
}

func run(dir string, flush time.Duration) error {
	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		stop.Store(true)
	}()

	s, err := durable.Open(dir, &durable.Config{FlushInterval: flush})
	if err != nil {
		return err
	}
	ctx := context.Background()
	scopes := spec.Scopes()
	var total budget.Micros
	records := -1
	line := make([]byte, 0, 64)
	emit := func(kind byte, n int64) {
		line = append(line[:0], kind, ' ')
		line = strconv.AppendInt(line, time.Now().UnixNano(), 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, n, 10)
		line = append(line, '\n')
		os.Stdout.Write(line)
	}
	os.Stdout.WriteString("ready\n")
	for i := 0; !stop.Load(); i++ {
		amount := spec.Amount(i)
		h, err := s.Ledger().Hold(ctx, scopes, amount)
		if err != nil || !h.Allowed {
			return fmt.Errorf("hold %d: %+v, %v", i, h, err)
		}
		if _, err := s.Ledger().Settle(ctx, h.ID, amount); err != nil {
			return fmt.Errorf("settle %d: %v", i, err)
		}
		total += amount
		emit('s', int64(total))

		if i%spec.SettlesPerRecord == 0 {
			n := records + 1
			key := spec.RecordKey(n)
			b, err := s.Idempotency().Begin(ctx, key, spec.Fingerprint, time.Minute)
			if err != nil || b.State != idempotency.Started {
				return fmt.Errorf("begin %s: %v, %v", key, b.State, err)
			}
			rec := idempotency.Record{Status: 200, Body: spec.RecordBody(n)}
			if err := s.Idempotency().Complete(ctx, key, b.Token, rec, time.Hour); err != nil {
				return fmt.Errorf("complete %s: %v", key, err)
			}
			records = n
			emit('r', int64(n))
		}
		if i%spec.SettlesPerFlush == spec.SettlesPerFlush-1 {
			if err := s.Flush(); err != nil {
				return err
			}
			emit('f', int64(records))
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Printf("closed %d %d\n", total, records)
	return nil
}
