// Package pgstore is the PostgreSQL layer the PostgreSQL strategies share,
// written once: the schema and its migrations, the reservation ledger, and
// every operation but the one in which the strategies differ, the step of
// Reserve that takes units from stock. A strategy embeds the Ledger that
// Store.Ledger returns (Commit, Release, ExpireDue, Lookup, Available,
// SetStock, AddStock, Migrate, Purge) and implements Reserve by calling
// Store.Reserve with its Step. The rules that are not SQL (the order of
// checks, idempotency, state transitions, which errors pass through) live in
// internal/ledger, shared with the MySQL store.
//
// # Schema
//
// One schema per installation (Options.Schema, default "inventory"), always
// quoted, so any name PostgreSQL can hold is safe. Tables:
//
//   - stock (sku, available, fence, buckets, backorder, buyer_limit,
//     received, received_before): available carries CHECK (available >= 0)
//     as a last line of defence that a correct strategy never trips. fence
//     is the fencing token of the last writer under a distributed lock; only
//     the redislock strategy uses it, the others leave it at 0. See Stock
//     buckets, and Levels, backorders and limits below, for the rest.
//   - reservation (id, state, expires_at, created_at, settled_at): id is the
//     primary key and the idempotency key; state holds inventory.State
//     values; settled_at is when it left Held (NULL while held, and on rows
//     settled by writers that do not set it). A partial index on expires_at
//     of held rows makes ExpireDue cheap; one on the moment settled rows
//     settled (settled_at, else expires_at) makes Purge cheap.
//   - reservation (buyer, partial) too: inventory.Request.Buyer (NULL for
//     none) and Partial, which a repeat of the ID must match.
//   - reservation_line (reservation_id, sku, qty, bucket, counted): qty is
//     the units held (fewer than asked with Partial); bucket is the stock
//     bucket the line was taken from, NULL for the stock row; counted marks
//     a line counted against its buyer's usage.
//   - buyer_usage (sku, buyer, used): the units each buyer of a SKU with a
//     limit holds and bought.
//   - stock_bucket (sku, bucket, available): the buckets of a SKU split
//     into stock.buckets > 1 of them (see Stock buckets below).
//   - the function reserve_abort(code), which raises an error with a given
//     SQLSTATE so that a pipelined batch rolls back whole.
//
// SKUs and IDs use COLLATE "C": PostgreSQL then orders SKUs byte by byte, as
// Go does, so every statement that locks stock rows "in SKU order" (from Go
// or with ORDER BY sku) locks them in the same order, and crossing carts do
// not deadlock.
//
// Store.Migrate applies the embedded migrations in one transaction under a
// transaction-level advisory lock, so processes may migrate at once; DDL
// returns the same SQL for users who run their own migration tool. A
// statement PostgreSQL refuses inside a transaction (CREATE INDEX
// CONCURRENTLY, which builds the purge index on an existing ledger without
// blocking writes) follows a line "-- inventory:outside-transaction" in its
// migration file, and Migrate runs it after the transaction, under a
// session-level advisory lock taken by polling (see Migrate).
//
// # Retention
//
// The ledger keeps every reservation by default, so that its ID stays
// idempotent for good. With Options.Retention, Purge deletes settled
// reservations (and their lines, by the foreign key's ON DELETE CASCADE)
// once the retention has passed since they settled, oldest first, in
// batches of its limit, one statement each; the root package's Sweeper
// calls it after each expiry. Held reservations are never purged. A purged
// ID is unknown, so idempotency on an ID lasts as long as the retention.
//
// # Reserve and its extension point
//
// Store.Reserve validates the request, then sends one pipelined batch:
//
//  1. the statement that records the reservation and its lines
//     (INSERT ... ON CONFLICT (id) DO NOTHING). It comes first so that the
//     ledger rows are written before any stock row is locked, and so that a
//     duplicate ID aborts the batch before stock is touched: the primary key
//     makes a concurrent duplicate wait for the first transaction, and
//     Reserve then returns the first reservation (or ErrConflict).
//  2. the statements of the strategy's Step, queued by Step.Queue on the same
//     batch, with the lines sorted by SKU.
//
// When Step.Queue returns no Finish, the batch is its own implicit
// transaction: one round trip, committed by the server when the batch ends,
// the stock UPDATE being the last statement, so a hot row is locked only
// while the server finishes the batch. A refusing statement must raise an
// error (RefusableSQL, QueueRefusable); the sqlcond strategy works so.
//
// When Step.Queue returns a Finish, the batch begins an explicit transaction
// (READ COMMITTED). After it has run, Finish checks in Go what it read and
// queues the writes on a second batch, which the store sends with COMMIT at
// its end: row locks taken by the first batch are held for that one round
// trip. The pessimistic strategy queues SELECT ... FOR UPDATE, and its
// Finish checks the rows and queues the UPDATE.
//
// A step for a distributed lock (redislock) takes its locks before calling
// Reserve and releases them after; its Queue reads the rows and their fence
// with a plain SELECT, and its Finish checks the stock and queues
// "SET available = read - n, fence = token" with a WHERE that holds only
// while the row's fence is older than the lock's token and available is still
// the value read (a compare-and-set: writers that take no lock, such as
// Release and ExpireDue, may have changed it), built with GuardSQL and queued
// with QueueGuarded, so that the reservation rolls back with the step's own
// error when another writer got there first. Table gives
// it the quoted table names; RefusedError or the inventory errors carry its
// refusals.
//
// # Stock buckets
//
// A SKU may be split into K stock buckets (inventory.StockOptions, set by
// SetStockWith or for every new SKU by Options.SKUDefaults), rows of
// stock_bucket, so that buyers take its units at once instead of queueing
// on one row lock; K = 1, the default, keeps it whole in its stock row as
// before. The rules are SQL functions of 0006_stock_buckets.sql,
// 0011_bucket_home.sql and 0012_give_back_free.sql, which every strategy
// calls, and TakeStep is the step
// that uses them:
//
//   - A line is taken from one bucket: the one a hash of the reservation ID
//     picks (BucketStart), by a conditional UPDATE that waits for that row
//     while another transaction holds it, as the take of a SKU kept whole
//     waits for its row; K buckets make K queues of 1/K of the buyers each,
//     however many processes they run in. When that bucket is short, the
//     first other one from there on that has the units and that no other
//     transaction holds (FOR UPDATE SKIP LOCKED, stock_bucket_more). The
//     bucket is recorded on the line, and Release, Cancel and ExpireDue
//     give the units back there when no other transaction holds it, else
//     to another bucket of the SKU that none holds (SKIP LOCKED), waiting
//     only when every bucket is held, for one of them. A sweep, which
//     expires the holds of every process, so never queues behind the
//     buyers of one bucket after another while it holds the ones before.
//   - When none does, the line is refused only if one snapshot of the stock
//     row and every bucket finds the SKU short as a whole. Otherwise the
//     stock row and every bucket are locked in order, waiting, the line is
//     refused if the SKU is short under those locks, and else just the
//     units the line lacks are moved into one bucket and the line is taken
//     from it. No buyer pauses or tries again.
//   - The groupcommit flush takes the lines of a batch from the home bucket
//     of its process (Options.Home, Store.Home), then as above, and gives
//     released and expired units back to their buckets, in its one
//     transaction; units whose bucket another transaction holds (the
//     flush of another process, whose holds this flush expired) go to the
//     flush's home bucket instead.
//   - Available sums the stock row and the buckets in one statement.
//     SetStock, SetStockWith and AddStock lock the stock row, then the
//     buckets in order, and spread the units evenly (all or nothing, never
//     below zero anywhere); Rebalance spreads them again.
//
// Lock order: SKUs in order; within one, the stock row, then the buckets in
// order. A transaction waits for a row only when every row it holds comes
// before it in that order: a buyer's conditional UPDATE of one bucket per
// SKU, in SKU order, holds nothing of that SKU before it (an UPDATE that
// finds its bucket short locks nothing), the gather holds nothing of the
// SKU when it locks the stock row and then the buckets, and a flush locks
// all it waits for in one pass in that order. The rows taken out of order
// (another bucket after the first, by a buyer or a flush) are taken with
// SKIP LOCKED, never waited for. So in any two transactions, the one that
// holds the row that comes last in the order waits for nothing the other
// holds, and none deadlock.
//
// sqlcond and groupcommit serve SKUs in buckets. pessimistic and redislock
// read and lock the stock row alone: they keep the contract on SKUs kept
// whole, and on a schema shared with a SKU in buckets they refuse its lines
// as short (never oversell them), so give such a SKU buckets only where
// the strategies that sell it take them. Every strategy's Available,
// SetStock, AddStock, Release, Cancel and ExpireDue handle buckets, since
// they are the store's.
//
// Units given back to a bucket row a SKU no longer has, or to the stock
// row of a SKU in buckets (by a process of an older version), stay the
// SKU's: Available
// counts them, and a take that gathers, Rebalance, SetStock and AddStock
// move them back into the buckets.
//
// # Levels, backorders and limits
//
// A SKU's available units are its units on hand plus its backorder
// (inventory.StockOptions.Backorder), so that the take stays the one
// conditional UPDATE "available >= n" whether a SKU has one or not;
// SetStock keeps the backorder, and Backordered is what of it is in use.
// received counts what SetStock, SetStockWith and AddStock changed the
// available units by, and nothing else changes it, so that Levels reads
// Available, Held (the lines of held reservations, found through the index
// of held ones) and Sold = received - Available - Held in one statement,
// right whatever Purge deleted. A SKU made before 0008_levels_limits.sql
// is counted once by a statement that runs after its migration, a SKU per
// transaction: received_before is what it had received by then.
//
// A SKU with a limit per buyer (inventory.StockOptions.Limit) is taken by
// the function stock_take_line, which decides every rule in one call in
// the batch of Reserve: under the stock row's lock (a SKU kept whole) it
// locks the buyer's usage row, refuses a line without a buyer or past the
// limit, sizes a partial line, takes the units and counts them; for a SKU
// in buckets it takes from one bucket and counts the units with an upsert
// that refuses when the usage grew meanwhile. Release, Cancel and expiry
// take the units of counted lines off the usage in the transaction that
// moves the reservation out of Held, so once; Purge leaves the usage
// alone, so committed units go on counting. Lock order, as every writer:
// SKUs in order; within one, the stock row, the buckets in order, then
// the usage rows in buyer order. A step that locks rows (pessimistic)
// reads a request with a buyer with LockSQL, which locks in that order,
// decides the lines in Go with Rows.Grant, and records them with
// QueueHeld; a step that is not a RequestStep refuses Buyer and Partial
// with inventory.ErrUnsupported.
//
// A request without a Buyer or Partial on a SKU kept whole without a limit
// is taken by the same conditional UPDATE as before 0008, with
// buyer_limit = 0 added to its WHERE; the same statements, round trips and
// locks. The groupcommit flush decides the lines of buyers on SKUs kept
// whole with a limit under the same locks, in the same order: the stock
// row, then the usage rows in buyer order (0016_groupcommit_buyers.sql). It
// leaves out every other request with a line of a SKU with a limit, every
// release of a reservation with a counted line and every due hold with a
// buyer, and its caller takes or settles each of them on its own through
// the store (0015_groupcommit_limits.sql); groupcommit takes a request
// with Partial through the store's TakeStep directly.
//
// Extend moves a held, active reservation's expiry in one conditional
// UPDATE, to max(expiry, min(now + ttl, created_at + Options.MaxHold)).
//
// # Cost
//
// Reserve: one round trip for a step without Finish; with one, three (the
// first batch; Finish's writes and COMMIT; and an empty statement that hands
// the connection back to the pool, after the locks are gone). Commit: one
// statement. Release: a lookup and one batch. ExpireDue: three round trips
// for up to limit holds. Purge: one statement for up to limit reservations,
// which reads the purge index and deletes by primary key. Every statement
// is prepared once per connection by pgx's statement cache. A line of a SKU
// kept whole is one conditional UPDATE; of a SKU in buckets, a function
// call whose UPDATE of one bucket row skips the rows other buyers hold,
// and, only when no bucket can serve the line alone, a read of every bucket
// and a gather; a round of Reserve that finds the units held by others
// costs a pause and a round trip more.
//
// # Failures
//
// Errors satisfy errors.Is with the inventory sentinels. lock_not_available
// (55P03) and serialization_failure (40001) become inventory.ErrContended.
// When a commit was sent but its answer lost (the connection died, or the
// context ended while waiting), the error is an *inventory.OutcomeUnknownError:
// every operation is idempotent, so the caller retries with the same ID. A
// call that fails before its commit is sent changed nothing: its transaction
// never commits. A context ending mid-call closes that connection (pgx's
// default), and an open transaction is rolled back on a fresh context.
package pgstore
