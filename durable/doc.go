// Package durable keeps a single instance's books on its own disk: a budget
// ledger and an idempotency store that survive restarts without Redis.
//
// Open names a directory and returns a Store; its Ledger and Idempotency
// stand wherever a budget.Ledger and an idempotency.Store are wanted. Every
// call is answered from memory, by a budget.Memory and an
// idempotency.Memory, exactly as those answer (both pass the same
// conformance suites): a request never waits for the disk. What must
// outlive the process, the spend each settlement adds to a budget in a
// period and each completed idempotency record, is queued, and one
// background writer writes the queue to the data file (dir/gatekit.db, a
// bbolt database) in a single transaction with one sync to disk every
// Config.FlushInterval (group commit). Open reloads the spend of the
// current periods and the records not yet expired, so that Balance shows
// the spend and a retried request gets its response replayed.
//
// # What is kept
//
//   - A graceful stop loses nothing: Close writes everything queued.
//   - A crash (kill -9, or the machine losing power) loses at most the
//     settlements and completions of the last FlushInterval (100 ms by
//     default), plus the time one write takes; the budgets they would have
//     charged are that much under-counted after the restart.
//   - With a negative FlushInterval, Settle and Complete return only once
//     written: a crash loses nothing they acknowledged.
//   - Holds and in-progress idempotency markers are not kept: after a
//     crash they are gone, as they would have expired on their own.
//   - A damaged data file is never silently replaced: Open fails with an
//     error naming it, wrapping ErrCorrupt. Open reads the whole file
//     first, checking every page in use and every entry's checksum, so that
//     damage is found on start rather than while serving. The one
//     exception is bbolt's own recovery: the file has
//     two meta pages, written in turn, and when the newer one is damaged
//     (as a power failure in the middle of writing it leaves it) the older
//     one is used, so the last write is lost; Open logs a warning naming
//     the file.
//
// Spend of periods that ended and expired records are deleted from the file
// at Open and hourly after.
//
// One process at a time uses a directory. Several instances of a service
// share a redisstore.Ledger and a redisstore.Store instead.
package durable
