// Package memory is the in-process inventory strategy: the reference every
// other strategy is measured against, an embedded store for a single
// process, and a fake for users' own tests.
//
// A Reserver keeps SKUs and reservations in memory. Nothing survives the
// process; several processes never share one.
//
// # Guarantees
//
// Reserver keeps the whole contract of inventory.Reserver, inventory.Stocker
// and inventory.Expirer under any concurrency:
//
//   - A cart is held whole or not at all. The stocks of a cart are locked in
//     sorted SKU order, so crossing carts never deadlock, and the first line
//     refused in that order decides the error.
//   - A request ID names one reservation for as long as the Reserver keeps
//     it: forever by default, or until Options.Retention after it settled.
//     Concurrent calls with one ID are serialised on it and take stock once;
//     a later call with the same lines returns the reservation as it is then,
//     with other lines it fails with inventory.ErrConflict.
//   - A hold is active while Options.Now is before its ExpiresAt. Commit and
//     Release of an overdue hold expire it on the spot; ExpireDue expires due
//     holds in order of ExpiresAt within each shard, and no hold is expired
//     twice.
//   - Per SKU, available + held + sold = stock set + units added + the
//     backorder allowance, and available never drops below zero.
//   - Reservations handed out share no memory with the store.
//
// # Features
//
// Reserver offers every optional feature of package inventory:
//
//   - Limits per buyer (inventory.StockOptions.Limit, Request.Buyer): each
//     SKU with a limit keeps, under its mutex, the units each buyer holds
//     and has bought while it has one, checked and changed together with
//     the take. Released, cancelled and expired units leave the count;
//     changing the limit keeps it. A SKU without a limit, and a request
//     without a buyer, cost nothing more.
//   - Partial carts (Request.Partial): each line holds what its SKU has,
//     down to its Min, in the same pass that takes all-or-nothing carts.
//   - Extend (inventory.Extender), up to Options.MaxHold after the hold was
//     reserved (default 1h).
//   - Levels (inventory.Leveler), read under the SKU's mutex.
//   - Backorders (inventory.StockOptions.Backorder): available counts the
//     allowance, so the take stays one comparison.
//
// Stock buckets are accepted and change nothing (see SetStockWith).
//
// # Cost
//
// There is no global lock on the hot path. Reservations live in 64 shards by
// a hash of their ID, each with its own mutex and its own expiry heap; every
// SKU has its own mutex. Reserve takes the shard of its ID, a read lock on the
// SKU table, and the mutexes of its SKUs; Commit takes only the shard, and
// moves its units from held to sold with one atomic add per line; Release
// and expiry take the shard and the SKUs. Buyers of different SKUs therefore
// run in parallel, and buyers of one SKU queue only on that SKU.
//
// Besides those of inventory.Request.Validate, a one-line Reserve makes two
// allocations (the record and the lines it returns) and a cart of several
// lines one more; Commit and Release make none. ExpireDue costs a lock per
// shard plus O(log n) per hold it expires; it never scans settled
// reservations.
//
// By default every reservation, settled or not, is kept for the life of the
// Reserver, so that its ID stays idempotent: memory grows with every
// reservation and never shrinks. Options.Retention bounds it: a Committed,
// Released or Expired reservation is forgotten once Retention has passed
// since it settled (never sooner, perhaps a little later), and its ID then
// names nothing, so Lookup, Commit and Release fail with
// inventory.ErrNotFound and a Reserve with it takes stock anew. Idempotency
// on an ID then lasts only as long as the retention: keep Retention well
// above the longest time your clients retry a request. Held reservations are
// never forgotten, and forgetting returns no units. Memory then follows the
// reservations held or settled within the retention, though the maps and
// queues of the shards keep the room of their peak.
//
// Forgetting needs no goroutine and no global lock. Each settle also pushes
// the reservation onto a second heap of its shard, by the time to forget it:
// O(log n), and no allocation beyond that heap's amortised growth, so the
// counts above hold. Reserve, Commit, Release and Lookup first forget up to
// four reservations due in their shard, reading the clock if any are queued;
// ExpireDue forgets up to its limit in each shard it visits. With Retention 0
// none of this runs.
//
// On the machine of BENCHMARKS.md, with 64 workers, it decided 540947 carts/s
// on one hot SKU and 602978 carts/s over 100 SKUs, two to three orders of
// magnitude above the PostgreSQL strategies. That is the ceiling of the
// benchmark's own bookkeeping, not of the strategy: the suite's go test -bench
// puts a Reserve plus a Release at half a microsecond to a microsecond.
//
// # Failures
//
// Calls fail only on invalid input (inventory.ErrInvalidRequest), a refused
// cart (inventory.ErrInsufficientStock, inventory.ErrUnknownSKU), an unknown
// or forgotten ID (inventory.ErrNotFound), a reused ID
// (inventory.ErrConflict), a settled reservation (inventory.ErrNotHeld), or a
// context already done at the call, which changes nothing. Every change is
// made whole under its locks, so there is no partial state and never
// inventory.ErrOutcomeUnknown or inventory.ErrContended: every error but the
// context's is a final answer (see package inventory for what to do on each).
//
// Nothing survives the process: a crash loses every hold and every sale it
// recorded. Use it for one process, for tests and for demos; a shop with
// several servers or restarts needs a PostgreSQL strategy.
package memory
