// Package groupcommit is the inventory strategy that coalesces concurrent
// calls into one PostgreSQL transaction per flush, on the schema and ledger
// the other PostgreSQL strategies share.
//
// A hot SKU is capped by commits, not by reservations: every strategy that
// commits once per cart admits one cart per commit of the SKU's row (one WAL
// flush, plus the wait for the row lock). groupcommit queues the calls that
// arrive while a flush is in flight, and the next flush takes them all, up to
// MaxBatch, in one statement: one round trip, one transaction, one commit
// for the whole batch.
//
// Open it on a *pgxpool.Pool, create its tables and its flush function once
// with Migrate (or the SQL of DDL), and use it as an inventory.Strategy.
//
// # Guarantees
//
// Reserve, Commit, Release and ExpireDue are queued; Cancel, Lookup,
// Available, SetStock and AddStock go straight to the shared ledger. Cancel
// is rare and must not wait behind a full queue: it inserts its tombstone
// with ON CONFLICT DO NOTHING, which waits for a flush that is inserting the
// same ID and then either finds the reservation (and releases it as Release
// does) or finds the ID free. A flush calls the
// stored function groupcommit_flush once, with every queued call as arrays.
// Inside it, in one transaction:
//
//   - commits, releases and an expiry sweep (the limits of the ExpireDue
//     calls in the batch, summed) lock their reservation rows in ID order
//     (expiry with SKIP LOCKED) and change their state; the units released
//     or expired go back to stock in the same transaction, so a release
//     costs the hot row no commit of its own;
//   - reservations are decided one by one in arrival order (FIFO), each all
//     or nothing across its lines, each with its own outcome: held,
//     *inventory.InsufficientStockError (naming the short SKU and what was
//     left), *inventory.UnknownSKUError, the first reservation for a
//     repeated ID, or inventory.ErrConflict. One refused request never fails
//     the others. A request that cannot be served even by the stock read
//     without a lock is refused on that read and costs no write; the others
//     are recorded, in ID order, then decided again under the row locks, and
//     the rows of those refused there are deleted before the commit;
//   - the stock rows are locked last, in SKU order (COLLATE "C"), and
//     changed with one UPDATE per SKU, so a hot row is locked only while the
//     server decides the batch and commits it, never across a round trip,
//     and batches of several processes (and the other strategies on the same
//     tables) never deadlock.
//
// Each ID is decided once per flush: a call whose ID is already in the batch
// waits for the next flush, where it is answered as a repeat. A concurrent
// transaction recording the same ID (another process) makes the insert wait
// for it, as in the other strategies. The contract of inventory.Reserver holds
// whole; strategytest.RunConformance, the four-process hammer and the shared
// fault tests check it.
//
// # No goroutine of its own
//
// The Reserver starts no goroutine and has no Close. The first caller that
// finds one of the Flushers slots free becomes the leader: it flushes the
// queue, batch after batch, until its own call is decided, then hands its
// slot to the first caller still waiting, which leads from there. So a
// user who never calls it pays nothing, and once the last call has returned
// no goroutine of the strategy is left (a goleak check needs no Close). A
// goroutine owned by the Reserver would have cost a Close that every user
// must remember, and a wake-up per batch besides; a leader is already awake.
//
// # What a batch costs
//
// One round trip and one commit (one WAL flush) per flush, whatever it
// carries. In the server: a lookup of the batch's IDs, one read of its SKUs
// without a lock, an INSERT of its candidates' reservation rows and lines, a
// SELECT ... FOR UPDATE of its SKUs, one UPDATE per changed SKU, a DELETE
// of the candidates refused under the lock, and the plpgsql loop that
// decides the requests. The first flush on a connection also prepares the
// statement (pgx's statement cache). A call waits for the flush in flight
// (if any slot is taken) and then for its own: about two flush times at
// worst when the queue is shorter than MaxBatch.
//
// Measured on the machine of BENCHMARKS.md while it was heavily loaded
// (load average 33 to 48 on 2 cores), medians of three invbench runs: on one
// hot SKU, 3.7 times the bare conditional UPDATE at 64 workers (2.6 to 8.0;
// batches of 18 calls, 55 flushes/s) and 3.4 times at 512 (batches of 95),
// rising with the number of buyers where the bare UPDATE and sqlcond fall;
// p99 222 ms against the bare UPDATE's 1.5 s. At one worker a flush costs
// more than a bare UPDATE (0.3 of it): the function runs seven statements.
// Over 100 SKUs at 64 workers, 0.92 of the bare UPDATE. With pgbench and one
// client at that load, a bare UPDATE took 9.3 ms, a flush of one reservation
// 19.5 ms, a flush of 64 reservations 35.3 ms: the server's CPU per call,
// not the commits, is what limits it there.
//
// # Failures
//
// Errors satisfy errors.Is with the inventory sentinels:
//
//   - inventory.ErrInvalidRequest, checked first, before anything is queued.
//   - inventory.ErrContended when MaxPending calls are already waiting: the
//     call is turned away at once and nothing changed; retry later.
//   - a context that ends while its call is queued removes the call, and the
//     context's error comes back: nothing changed.
//   - *inventory.OutcomeUnknownError once the call's flush is sent: its
//     context ending before the answer, or a connection lost after the flush
//     was sent (the server may have committed it) gives every call of that
//     flush this error. Reserve, Commit and Release are idempotent: retry
//     with the same ID to learn which, applied exactly once.
//   - a flush the server refuses whole with a deadlock or serialization
//     failure (possible only between flushes that settle the same IDs) is
//     sent again, up to three more times; any other error the server answers
//     with, or a connection that could not be had, changed nothing, and every
//     call of the flush gets it.
//
// A flush runs on a context of its own, bounded by FlushTimeout, not on the
// leader's: it carries other callers' requests. A leader whose context ends
// waits for the flush it is sending. A process that crashes with calls queued
// or in flight loses no units: a flush either committed whole or not at all,
// and its holds expire as any other.
//
// # Knobs
//
//   - MaxBatch (default 512): the most calls per flush. Batches on a hot SKU
//     stayed below it in every run measured (18 calls at 64 workers, 95 at
//     512, 155 with MaxWait 1ms), so it bounds only a burst.
//   - MaxPending (default 8192): the bounded queue; beyond it calls fail
//     fast with ErrContended instead of waiting.
//   - Flushers (default 2): flushes in flight at once, each on a connection
//     of its own. With one, the server idles during each round trip; with
//     two, one batch is decided and committed while the next is sent and
//     recorded (only the stock UPDATE and the commit hold the hot row's
//     lock). In the Go benchmark (64 buyers reserving one hot SKU) 1, 2 and
//     4 gave 855, 779 and 744 carts/s, within that run's noise.
//   - MaxWait (default 0): how long a leader waits for a full batch before
//     it flushes. Calls arriving during a flush join the next one anyway.
//     1ms doubled the Go benchmark (1600 carts/s) and raised the invbench
//     ratio in two alternated pairs (64 workers: 1.76 to 2.24, 2.24 to 2.77;
//     512: 3.97 to 4.78, 2.48 to 4.16); it stays off by default because a
//     lone caller pays the whole wait on every call.
//   - FlushTimeout (default 30s): bounds one flush.
package groupcommit
