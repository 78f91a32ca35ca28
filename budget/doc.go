// Package budget keeps spending within budgets: so many US dollars per key or
// per account, per day, week, month or lifetime.
//
// Money is counted in Micros, integer millionths of a dollar, never in
// floating point. A Scope is one budget (its kind and id, its Limit, its
// Period); a request belongs to several at once, typically its API key's and
// its account's, and must fit all of them.
//
// A Ledger accounts for spending in two steps. Before the work, Hold reserves
// the most the request may cost in every scope, all or nothing, and answers
// which scope refused when one has no room; concurrent requests can therefore
// never spend more than a budget between them. After the work, Settle
// replaces the hold by the actual cost; Release drops it when the work failed
// before costing anything. A hold that is never settled expires on its own
// after a TTL, so a crashed process leaks nothing.
//
// Periods are calendar-aligned in a configured time zone (a day in
// America/New_York lasts 23 or 25 hours when the clocks change) and need no
// reset job: each period is stored under its own start, so a new one starts
// at zero.
//
// Two implementations pass the same conformance suite (package budgettest):
// Memory, in this package, for a single process, and redisstore.Ledger for
// several instances sharing Redis. The package knows nothing of HTTP;
// gatekit's middleware package turns refusals into 402 responses.
package budget
