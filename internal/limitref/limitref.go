// Package limitref lets the rate-limit middleware decide on the keys of a
// ratelimit.Memory through remembered positions, without hashing a key and
// comparing it byte by byte on every request. It is internal because a Ref
// is only correct when it is only ever used with one key, which the
// middleware guarantees (a route entry's keys never change) and a public
// API could not.
package limitref

import "sync/atomic"

// Ref remembers where a Memory keeps one key's bucket. The zero value
// knows nothing yet. It is safe for concurrent use, with one key.
type Ref struct {
	// Pos is the shard and the position in its table where the key was
	// last found, and Key the data of the Memory's copy of the key found
	// there. A Memory never keeps two copies of a key at once, so the entry
	// at Pos holds that copy only while it is still the key's; and the Ref
	// holding the copy keeps its address from going to another key.
	Pos atomic.Uint64
	Key atomic.Pointer[byte]
}

// MemoryDecide is set by package ratelimit to a
// func(*ratelimit.Memory, *Ref, string, ratelimit.Policy, int64, bool) (ratelimit.Decision, error)
// that decides on a key (charging when the bool is true) through a Ref.
// It is an any because this package cannot name ratelimit's types.
var MemoryDecide any
