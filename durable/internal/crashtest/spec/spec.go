// Package spec is what the crashtest command and the test that kills it
// agree on: the budgets charged, the amounts and the records kept.
package spec

import (
	"strconv"

	"github.com/gatekit/gatekit/budget"
)

// SettlesPerRecord is how many settlements the command makes per
// idempotency record it completes.
const SettlesPerRecord = 100

// SettlesPerFlush is how many settlements the command makes between two
// calls of Flush.
const SettlesPerFlush = 50000

// Fingerprint is every record's request fingerprint.
const Fingerprint = "crashtest"

// Scopes returns the budgets every settlement is charged to: a key's and its
// account's, lifetime budgets without a practical limit.
func Scopes() []budget.Scope {
	return []budget.Scope{
		{Tag: "crash", Kind: "key", ID: "k", Limit: budget.MaxMicros},
		{Tag: "crash", Kind: "account", ID: "crash", Limit: budget.MaxMicros},
	}
}

// Amount returns what settlement i costs: 1,000 to 1,999 micros.
func Amount(i int) budget.Micros { return budget.Micros(1000 + i%1000) }

// MaxAmount is the most one settlement costs.
const MaxAmount = budget.Micros(1999)

// RecordKey returns the idempotency key of record n.
func RecordKey(n int) string { return "rec-" + strconv.Itoa(n) }

// RecordBody returns the body kept in record n.
func RecordBody(n int) []byte { return []byte("response " + strconv.Itoa(n)) }
