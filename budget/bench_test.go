package budget_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatekit/gatekit/budget"
)

// BenchmarkMemoryHoldSettle measures a Hold and a Settle on budgets already
// in use, in parallel: all on one account (one lock), or spread over many.
func BenchmarkMemoryHoldSettle(b *testing.B) {
	for _, accounts := range []int{1, 1024} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			m := newMemory(b, nil)
			ctx := context.Background()
			scopes := make([][]budget.Scope, accounts)
			for i := range scopes {
				acct := fmt.Sprintf("acct_%04d", i)
				scopes[i] = []budget.Scope{
					{Tag: acct, Kind: "key", ID: "key_" + acct, Limit: budget.MaxMicros, Period: budget.Daily},
					{Tag: acct, Kind: "account", ID: acct, Limit: budget.MaxMicros, Period: budget.Monthly},
				}
				r, _ := m.Hold(ctx, scopes[i], budget.Cent)
				m.Settle(ctx, r.ID, budget.Cent)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919))
				for pb.Next() {
					sc := scopes[i%accounts]
					r, err := m.Hold(ctx, sc, budget.Cent)
					if err != nil || !r.Allowed {
						b.Errorf("Hold: %+v, %v", r, err)
						return
					}
					if _, err := m.Settle(ctx, r.ID, budget.Micro); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}
