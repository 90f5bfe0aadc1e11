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
// Reserve (without Partial), Commit, Release and ExpireDue are queued;
// Cancel, Lookup, Available, SetStock and AddStock go straight to the
// shared ledger, and so does a Reserve with Partial (see Limits per buyer
// and partial carts). Cancel is rare and must not wait behind a full
// queue: it inserts its tombstone with ON CONFLICT DO NOTHING, which waits
// for a flush that is inserting the same ID and then either finds the
// reservation (and releases it as Release does) or finds the ID free. A
// flush calls the stored function groupcommit_flush_buyers once, with every
// queued call as arrays.
// Inside it, in one transaction:
//
//   - commits, releases and an expiry sweep (the limits of the ExpireDue
//     calls in the batch, summed) lock their reservation rows in ID order
//     (expiry with SKIP LOCKED) and change their state, a commit or release
//     finding its row by primary key alone, so that a flush reads no other
//     hold whatever the ledger's statistics said when the server planned it
//     (0020_groupcommit_settle_by_key.sql); the units released
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
//   - the stock rows are locked last, in SKU order (COLLATE "C"; for a SKU
//     in buckets, its home bucket and the buckets units go back to, in
//     bucket order), and changed with one UPDATE per row, so a hot row is
//     locked only while the server decides the batch and commits it, never
//     across a round trip, and batches of several processes (and the other
//     strategies on the same tables) never deadlock: a further bucket taken
//     after that pass is taken with SKIP LOCKED, never waited for.
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
// finds no flush in flight, or one of the Flushers slots free and 16 calls
// queued (see Knobs), becomes the leader: it flushes the queue, batch after
// batch, until its own call is decided, then hands its slot to the first
// caller still waiting, which leads from there. So a
// user who never calls it pays nothing, and once the last call has returned
// no goroutine of the strategy is left (a goleak check needs no Close). A
// goroutine owned by the Reserver would have cost a Close that every user
// must remember, and a wake-up per batch besides; a leader is already awake.
//
// # What a batch costs
//
// One round trip and one commit (one WAL flush) per flush, whatever it
// carries. In the server: a lookup of the batch's IDs, one read of its SKUs
// without a lock, an INSERT of its candidates' reservation rows and lines
// (with the foreign-key check of each line), a SELECT ... FOR UPDATE of its
// SKUs, one UPDATE per changed SKU, and a DELETE of the candidates refused
// under the lock. When no ID was seen before and every SKU can serve the
// whole batch, the requests are granted by one comparison per SKU; other
// batches go through the plpgsql loop that decides them one by one. Commits
// and releases find their reservations by primary key, so their cost does
// not grow with the number of reservations made before. The first flush on
// a connection also compiles the function and prepares the statement: 41 to
// 130 ms against 3 to 28 ms for the next ones, at load 22.
//
// Measured on the 2-core machine of BENCHMARKS.md, with one connection
// sending flushes one after another (synchronous commit on): about 60, 32
// and 22 microseconds of server CPU per call in batches of 16, 64 and 256
// reservations, each followed by a flush settling them. The WAL flush
// (fdatasync, 0.8 ms there) is paid with the hot row locked, so one SKU
// commits at most about 1,250 flushes a second whatever the number of
// flushers: a second flush in flight waits at that row's lock (in a 2s run
// at 64 workers, 161 flushes waited there over a millisecond, 0.9 s in all).
// Its work before the lock (lookups, inserts) overlaps the first one's.
//
// A call waits for the flush in flight (if no slot is free) and then for
// its own: about two flush times. On one hot SKU at 64 workers this gave
// 5.0 times the bare conditional UPDATE in the run of BENCHMARKS.md (load
// average 19 to 26 on 2 cores, batches of 27 calls), 7.2 at 128 and 6.7 at
// 512 workers, and 8.3 at 64 workers in a second run at load 20; at one
// worker a flush costs more than a bare UPDATE (0.37 and 0.43 of it). Over
// 100 SKUs, 0.48 and 1.27 at 64 workers. What bounds it
// there is CPU: 20 times the bare UPDATE of a quiet run (1,575 carts/s at 64
// workers) is some 31,000 carts/s, 53,000 calls/s with their commits and
// releases, for which PostgreSQL alone would need 1.1 to 1.6 of the 2 cores,
// before the Go side's.
//
// # Retention
//
// The ledger keeps every reservation unless Options.Retention is set. With
// it, Purge deletes settled reservations (committed, released, expired,
// and the tombstones of Cancel) once the retention has passed since they
// settled, at most limit per call, oldest first, in one statement; a
// Sweeper calls it after each expiry, from as many processes as you like
// (candidates are locked with FOR UPDATE SKIP LOCKED, so none is purged
// twice and purgers never wait for one another). Held reservations are never
// purged, and Purge takes no stock row lock: buyers never wait for it.
// Idempotency on an ID lasts as long as the retention: a purged ID is
// unknown, Lookup, Commit and Release fail with inventory.ErrNotFound, and a
// Reserve with it is a new reservation. Keep the retention well above the
// longest time a client may retry a request or settle its reservation.
// A flush records no moment for the commits and releases it settles:
// Purge counts those as settled at the hold's ExpiresAt, which comes after
// them, so they are kept up to a TTL longer than the retention. Purge is not
// batched: it runs on a connection of the pool, beside the flushes.
//
// # Stock buckets
//
// A SKU may be split into stock buckets (SetStockWith, or Options.SKUDefaults
// for every new SKU; see inventory.StockOptions), rows of their own, with
// the rules the PostgreSQL strategies share (internal/pgstore, the SQL
// functions of its migrations 0006, 0011 and 0012). Each Reserver has a home
// bucket (Options.Home, else one picked at random), and its flushes take
// the lines of a SKU in K buckets from bucket Home mod K: a flush locks
// that bucket's row, not the SKU's stock row, so the flushes of processes
// with other home buckets run at once, each batching its own calls. A line
// the home bucket cannot serve is taken, in the same flush, from another
// bucket the flush holds or from the first that no other transaction holds
// (SKIP LOCKED); when none has the units, the request is refused if the SKU
// as a whole is short, else left out of the flush and taken by its caller
// on its own with the shared step of the conditional UPDATE, which gathers
// the units into one bucket. Releases and expiry in a flush give units
// back to the bucket each line was taken from when no other transaction
// holds it, else to the flush's home bucket: expiry claims the due holds
// of every process, and a flush that waited for the home buckets of the
// others, held by their flushes, while it held its own would queue the
// processes' flushes behind one another again. Rebalance spreads a SKU's
// units evenly over its buckets again, safely while buyers reserve. So
// buckets let several processes sell one hot SKU at once, each keeping its
// batches, instead of taking turns on one row. In one process a SKU in
// buckets is sold from the home bucket alone, as a SKU kept whole is from
// its row; give each process a home of its own (1..K) for the buckets to
// pay: two processes on one home take turns on it. For measurements see
// BENCHMARKS.md, "Stock buckets over four processes".
//
// # Levels, longer holds and backorders
//
// The Reserver offers backorders (inventory.StockOptions.Backorder, set
// with SetStockWith or Options.SKUDefaults): available counts the units
// that may be sold beyond the stock on hand, so the flush's check is
// unchanged. It is an inventory.Leveler (Levels reads the SKU's available,
// held and sold units in one statement, right with buckets and after
// Purge) and an inventory.Extender (Extend moves a hold up to
// Options.MaxHold, default 1h, after it was reserved); both are statements
// of their own, not batched.
//
// # Limits per buyer and partial carts
//
// The Reserver offers limits per buyer (inventory.StockOptions.Limit, set
// with SetStockWith or Options.SKUDefaults, with inventory.Request.Buyer)
// and partial carts (inventory.Request.Partial) with the contract of the
// root package, by the rules and on the tables the PostgreSQL strategies
// share, so a schema may mix them with sqlcond and pessimistic:
//
//   - a Reserve with a Buyer is batched: on a SKU kept whole with a limit,
//     the flush locks, right after the SKU's stock row (the lock order of
//     every writer), the usage row of each buyer of the batch, decides each
//     line FIFO against the limit read under the row lock and the usage as
//     decided so far (before the stock, as sqlcond does), counts it, and
//     updates each usage row it changed once (0016_groupcommit_buyers.sql);
//     a buyer's line past the limit, or of a SKU in buckets with a limit,
//     is left out of the flush and taken on its own, as below;
//   - a Reserve with Partial is never queued: it is taken on its own, as
//     sqlcond takes it (one round trip, one transaction, the limit and the
//     buyer's usage decided under the row locks, partial lines sized there;
//     see internal/pgstore), so it costs one commit of the SKU's row, not a
//     share of a flush's;
//   - a plain request that the flush finds a line of a SKU with a limit in
//     (read without a lock, then again under the SKU's row lock, or for a
//     SKU in buckets once it holds the home bucket) is left out of the
//     flush, and its caller takes it on its own, which refuses it with a
//     *inventory.LimitError naming no buyer, as sqlcond does: a flush and
//     a round trip more for a request that is refused, as for a buyer's
//     request past the limit;
//   - a Commit of a buyer's hold is batched (committed units go on
//     counting); a Release of one with a line counted against the buyer is
//     queued, left held by its flush, and then settled on its own, which
//     takes the units off the usage in the same transaction; Cancel is
//     never batched;
//   - the expiry of a flush claims due holds oldest first as before, and
//     expires those without a buyer; those with one stay held, the flush
//     says how many, and each ExpireDue call of that flush that has not
//     reached its limit expires up to the rest of it on its own, through
//     the shared ledger, which takes their units off the usage: one
//     transaction (three round trips) more for a sweep that finds them.
//
// So each settlement takes a buyer's units off the usage exactly once,
// whichever path it takes. Requests and settlements without a buyer, on
// SKUs without a limit, are batched as before, and the flush costs them one
// more column read per SKU. On the hot SKU at 64 workers, with a limit far
// above what any buyer takes and every cart one of 10,000 buyers (invbench
// -limit 1000000), three runs alternated with runs without -limit (load
// 4.8 to 5.3) gave 1,707, 2,120 and 1,533 carts/s (0.95 to 1.23 times the bare
// UPDATE) against 4,660, 5,826 and 3,916 (2.2 to 2.7 times) without: the
// releases and expiry of the buyers' holds, each a transaction of its own
// on the hot row, cost the rest. Before the buyers' requests were batched,
// taken on their own as sqlcond takes them, the same runs gave 1,000, 740
// and 705 carts/s (0.42 to 0.50 times, load 9.1 to 12.1). See BENCHMARKS.md.
//
// # Failures
//
// Errors satisfy errors.Is with the inventory sentinels:
//
//   - inventory.ErrInvalidRequest, checked first, before anything is queued.
//   - inventory.ErrContended when MaxPending calls are already waiting: the
//     call is turned away at once and nothing changed; retry later.
//   - a context that ends while its call is queued removes the call, and the
//     context's error comes back: nothing changed. A leader takes a
//     connection of the pool before it takes a batch from the queue, so a
//     call stays queued while the leader waits for one, and a leader whose
//     own context ends meanwhile leaves as a queued call does.
//   - inventory.ErrUnavailable when the pool could not open a connection
//     (the server is down, refuses, or is full): every call the leader then
//     takes from the queue gets it, nothing sent.
//   - *inventory.OutcomeUnknownError once the call's flush is sent: its
//     context ending before the answer, or a connection lost after the flush
//     was sent (the server may have committed it) gives every call of that
//     flush this error. Reserve, Commit and Release are idempotent: retry
//     with the same ID to learn which, applied exactly once.
//   - a flush the server refuses whole with a deadlock or serialization
//     failure (possible only between flushes that settle the same IDs) is
//     sent again, up to three more times; any other error the server answers
//     with changed nothing, and every call of the flush gets it.
//
// A flush runs on a context of its own, bounded by FlushTimeout, not on the
// leader's: it carries other callers' requests. A leader whose context ends
// once it has sent the flush waits for it. A process that crashes with calls queued
// or in flight loses no units: a flush either committed whole or not at all,
// and its holds expire as any other.
//
// # Knobs
//
//   - MaxBatch (default 512): the most calls per flush. Batches on a hot SKU
//     stayed below it in every run measured (27 calls at 64 workers, 176 at
//     512, 155 with MaxWait 1ms), so it bounds only a burst.
//   - MaxPending (default 8192): the bounded queue; beyond it calls fail
//     fast with ErrContended instead of waiting.
//   - Flushers (default 2): flushes in flight at once, each on a connection
//     of its own. With one, the server idles during each round trip; with
//     two, one batch is decided and committed while the next is sent and
//     recorded (only the stock UPDATE and the commit hold the hot row's
//     lock). On the hot SKU at 64 workers, in three invbench runs with 1, 2
//     and 4 alternated (load 16 to 22), the ratios to the bare UPDATE were
//     7.1, 2.3, 1.3; 6.7, 4.7, 3.4; 5.9, 3.8, 3.7 (batches of 33, 17 and 10
//     calls), but over 100 SKUs 0.07, 0.20, 0.33; 0.44, 0.58, 0.39; 0.64,
//     0.51, 0.44. Once leaders gathered their batches (below), one flusher
//     won five of nine alternated pairs against two on the hot SKU at 64
//     workers, with batches of about 52 calls against 27 and a third less
//     server CPU per cart (152 to 164 against 231 to 264 microseconds), and
//     the pairs at 512 workers and over 100 SKUs split either way: no clear
//     winner at this load, so the default stays at two. A flush beside one
//     in flight starts only once 16 calls (MaxBatch, if fewer) are queued;
//     fewer wait for the next flush of the slot in flight, which takes
//     them all. Two flushes of one process lock the same row (the hot SKU's,
//     or its home bucket's), so the second waits there for the first's
//     commit, and a batch split in two pays a flush's fixed cost twice. With
//     64 buyers in one process both slots stay in use (batches of 29 to 30
//     calls against 26 to 27 before; carts/s 1.00 and 1.22 times before,
//     medians of five and four alternated rounds at load 7 to 11); four
//     processes of 16 buyers each send one flush at a time, of 12 to 13
//     calls against 7, and sold 1.42 times as many carts (median of five
//     rounds), none of their flushes waiting for another of its own process
//     at its home bucket. At load 10 to 18, with other suites running, the
//     single-process rounds went the other way (0.53 and 0.65): with the
//     cores that short, a second flush that waits for 16 calls starts late.
//     Four processes still sold only 0.55 of one (0.8 was the aim): a
//     process of 16 buyers never has more than 16 calls for a flush. See
//     BENCHMARKS.md, "groupcommit over four processes".
//   - Gathering, always on when MaxWait is 0: before it takes a batch, a
//     leader yields the processor while calls keep joining the queue (at
//     most eight times, never sleeping), so that the callers the last flush
//     answered join the next batch. At 64 workers on the hot SKU it raised
//     the mean batch from 18 to 26-28 calls with two flushers and from 34 to
//     52 with one, and carts/s in four of five alternated pairs.
//   - MaxWait (default 0): how long a leader waits for a full batch before
//     it flushes. Calls arriving during a flush join the next one anyway.
//     1ms doubled the Go benchmark (1600 carts/s) and raised the invbench
//     ratio in two alternated pairs (64 workers: 1.76 to 2.24, 2.24 to 2.77;
//     512: 3.97 to 4.78, 2.48 to 4.16), but 200us with one flusher gave
//     batches of 59 calls and ratios below one flusher without it in all
//     three runs (3.5 against 7.1, 5.3 against 6.7, 4.0 against 5.9): on
//     one SKU every flush waits on the hot row's path, and the bigger batch
//     did not repay it. It stays off by default because a lone caller pays
//     the whole wait on every call.
//   - FlushTimeout (default 30s): bounds one flush.
package groupcommit
