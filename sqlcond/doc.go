// Package sqlcond is the inventory strategy of the conditional UPDATE, on
// PostgreSQL: every line of a cart is taken with
//
//	UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2
//
// in SKU order, in one transaction with the rows that record the
// reservation. A line the statement does not match (unknown SKU or too few
// units) rolls the whole transaction back.
//
// Open it on a *pgxpool.Pool (or anything with the methods of DB), create its
// tables once with Migrate or with the SQL of DDL, and use it as an
// inventory.Strategy. The schema and the reservation ledger are shared with
// the pessimistic strategy: both can serve the same tables.
//
// # Guarantees
//
// The check and the decrement are one statement, evaluated under the row
// lock the UPDATE takes, so no two buyers can both see the same last unit.
// The reservation runs under READ COMMITTED (PostgreSQL's default): an
// UPDATE that waited for another buyer's lock re-checks its WHERE against
// the row version that buyer committed, and matches only if units are still
// there. REPEATABLE READ would add nothing here but failures: the waiting
// UPDATE would find the row changed since its snapshot and fail with a
// serialization error (40001), which a hot SKU turns into the rule rather
// than the exception. The batch runs in the server's default isolation, so
// keep default_transaction_isolation at read committed; under a stricter
// default nothing is oversold either, but buyers fail with
// inventory.ErrContended.
//
// Lines are updated in SKU order (byte order, COLLATE "C" on the server), as
// every statement of this module that locks stock rows does, so crossing
// carts never deadlock. The CHECK (available >= 0) on the table never fires.
//
// The reservation row is inserted first with INSERT ... ON CONFLICT DO
// NOTHING on its primary key: the same ID again returns the first
// reservation, as it is now, and changes nothing; a concurrent duplicate
// waits for the first transaction and then returns its result. Commit,
// Release and ExpireDue change the state with a conditional UPDATE and give
// units back in the same transaction; ExpireDue claims due holds with
// FOR UPDATE SKIP LOCKED, so sweepers in many processes never expire one
// twice.
//
// # Cost
//
// One round trip per Reserve: the ledger insert and the UPDATE of each line
// go in one pipelined batch that is its own implicit transaction, and the
// server commits it when the batch ends. The stock UPDATE comes last, so a
// hot SKU's row is locked only while the server finishes the batch (the
// commit's WAL flush included), never across a network round trip. No lock
// is held between calls. A refused line costs a second statement, which
// reads the SKU's stock to tell an unknown SKU from too few units. Commit is
// one statement; Release a lookup and one batch. Cancel of an unseen ID is
// one INSERT of a reservation row without lines (the tombstone a late
// Reserve finds as its ID taken); of a held one, what Release costs.
//
// On the machine of BENCHMARKS.md, with 64 workers, it decided 1638 carts/s
// on one hot SKU, 0.81 of the bare conditional UPDATE without a ledger
// (raw-postgres, 2021/s), and 4714 carts/s over 100 SKUs, 0.43 of it
// (10917/s): the fastest PostgreSQL strategy there on every workload and
// worker count. On a hot SKU the row is a queue, one writer at a time until
// its commit is flushed: past 8 workers more buyers add latency (p99 11.0ms
// at 8 workers, 113ms at 64) rather than throughput.
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
// NewMySQL keeps the same retention on MySQL and MariaDB: a settled
// reservation records when it settled, and Purge deletes at most 1000 of
// the oldest past the retention in one short READ COMMITTED transaction
// (read through an index that holds no held reservation, FOR UPDATE SKIP
// LOCKED, deleted by primary key with their lines), so that purgers in many
// processes never wait for one another or delete one twice, and take no
// stock row lock.
//
// # Stock buckets
//
// A hot SKU's row is a queue. SetStockWith with inventory.StockOptions
// Buckets K > 1 (or Options.SKUDefaults for every new SKU) splits its units
// evenly over K rows of their own, and a line is taken from one of them:
// the one a hash of the reservation ID picks, by the conditional UPDATE of
// that row, which waits in the row's queue as the UPDATE of a SKU kept
// whole does; buyers in one process or many spread over the K rows, so
// each queue holds 1/K of them. When that bucket is short, the line is
// taken from the first other one, from there on, that has the units and
// that no other transaction holds (FOR UPDATE SKIP LOCKED). The bucket is
// recorded with the line, and Release, Cancel and expiry give the units
// back to it. A line is never split: when no bucket can serve it alone, it
// is refused only if one snapshot of every bucket finds the SKU short as a
// whole; otherwise the SKU's row and every bucket are locked in order and
// the line is refused if the SKU is short under those locks, or else the
// units it lacks are gathered into one bucket and the line taken from it.
// No buyer pauses or sends its reservation again. Available sums the
// buckets; SetStock and AddStock spread the units evenly over them again,
// all or nothing; Rebalance does so safely while buyers reserve, never
// making or losing a unit. A buyer waits for a row only when every row it
// holds comes before it in the lock order (SKU, then its row, then its
// buckets in order), taking any other bucket with SKIP LOCKED, so crossing
// carts never deadlock. The rules are SQL functions shared with
// groupcommit (internal/pgstore). The MySQL strategy refuses buckets with
// inventory.ErrUnsupported.
//
// A line of a SKU in buckets costs one function call in the same batch,
// still one round trip, and a subtransaction in the server (so that a
// bucket found short after the wait is let go). For measurements see
// BENCHMARKS.md, "Stock buckets over four processes".
//
// # Limits per buyer, partial carts, longer holds, levels and backorders
//
// On PostgreSQL the Reserver offers every feature of inventory.StockOptions
// and inventory.Request, and is an inventory.Leveler and an
// inventory.Extender:
//
//   - StockOptions.Limit caps the units one buyer (Request.Buyer) holds and
//     bought of a SKU. A line of a SKU with a limit, or of a request with a
//     Buyer or Partial, is taken by one function call in the same batch,
//     still one round trip, that checks the limit against the buyer's
//     usage row under the SKU's row lock and counts the units in the same
//     transaction, so across processes; a line past the limit, or without
//     a buyer, is an *inventory.LimitError and nothing changes. Release,
//     Cancel and expiry (ExpireDue, the Sweeper, a Commit or Release of an
//     overdue hold) take the units off once; Purge does not, so committed
//     units go on counting after their reservations are purged.
//   - Request.Partial holds, per line, what the SKU has and the limit
//     leaves, from max(Min, 1) up to Qty; a line in stock buckets is still
//     taken from one bucket, gathered when no bucket has the units alone.
//     The Reservation's lines report the units held.
//   - StockOptions.Backorder lets that many units be sold beyond the stock
//     on hand: Available counts them, SetStock keeps them, and Levels
//     reports the units in use as Backordered.
//   - Levels reads Available, Held and Sold of a SKU in one statement:
//     Sold is what the SKU received (stock set and added, backorder
//     included) less the rest, so Purge changes none of it.
//   - Extend moves a hold's expiry up to Options.MaxHold (default 1h) after
//     it was reserved, in one statement.
//
// A request without a Buyer or Partial, on a SKU kept whole without a
// limit, costs exactly what it did: the same conditional UPDATE (its WHERE
// also asks buyer_limit = 0), the same round trip, no other lock. A limit
// costs, per line, a read of the buyer's usage row under its lock and an
// update of it; the release of a counted line, an update of that row. Give
// SKUs a limit once every process runs a version that checks it: an older
// one sells them without. NewMySQL offers them all too (see MySQL and
// MariaDB below).
//
// # Failures
//
// Errors satisfy errors.Is with the inventory sentinels:
//
//   - inventory.ErrInvalidRequest, checked first, before any I/O: fix the
//     request.
//   - *inventory.InsufficientStockError or *inventory.UnknownSKUError for the
//     first refused line in SKU order: nothing was recorded; show it to the
//     buyer.
//   - *inventory.LimitError for a line past a SKU's limit per buyer, or of
//     a SKU with a limit in a request without a Buyer: nothing was
//     recorded.
//   - inventory.ErrConflict for an ID reused with other lines, another
//     Buyer or another Partial: use a new ID.
//   - *inventory.OutcomeUnknownError: once the batch is sent the server may
//     commit it even if the client goes away, so a connection that fails, or
//     a context that ends, before the answer arrives leaves the outcome
//     unknown. Call Reserve again with the same request: it returns the first
//     reservation if it was applied, or applies it once.
//
// A context that ends before the batch is sent, or a server that cannot be
// reached, changes nothing and returns that error. A context ending mid-call
// closes that connection (pgx's default); the pool replaces it. Buyers of a
// hot SKU queue on its row lock rather than fail: with the server's defaults
// (READ COMMITTED, no lock_timeout) Reserve never returns
// inventory.ErrContended, so bound the wait with the context's deadline.
//
// # MySQL and MariaDB
//
// NewMySQL keeps the same contract on MySQL 8 or MariaDB 10.6 and later
// (InnoDB), through database/sql and github.com/go-sql-driver/mysql, with
// the same Options (Schema names the database). Migrate (or DDLMySQL)
// creates the tables and a procedure that runs the whole reservation in the
// server: the reservation rows first, then the conditional UPDATE of each
// line in SKU order, then COMMIT, at READ COMMITTED set for that transaction
// (the server default is REPEATABLE READ). Reserve is one CALL, one round
// trip, and a hot row is locked only from its UPDATE to the COMMIT right
// after it, inside the server. SKUs and IDs are VARBINARY, ordered byte by
// byte as Go orders them. A deadlock victim (1213) or lock wait timeout
// (1205) is retried inside, a few times, then inventory.ErrContended; a
// connection lost or killed after the CALL was sent, or a context ending
// before its answer, is an *inventory.OutcomeUnknownError, settled by calling
// again with the same request. Release and the expiry of each hold are one
// CALL too, so no MySQL operation holds a stock row across a round trip.
//
// The features above are NewMySQL's too, with the same rules, errors and
// Options (SKUDefaults may set a Limit and a Backorder; stock buckets are
// refused with inventory.ErrUnsupported), on the MySQL ledger shared with
// pessimistic (internal/mystore). A request without a Buyer or Partial is
// still the one CALL: its conditional UPDATE also asks buyer_limit = 0, so
// a SKU with a limit refuses it, as an *inventory.LimitError. A request
// with a Buyer or Partial is taken in a READ COMMITTED transaction of the
// store's own, a few round trips: the reservation row, then the stock rows
// of its lines locked in SKU order (SELECT ... FOR UPDATE) and the buyer's
// usage rows of the SKUs with a limit, each line decided under those locks
// by the rules the PostgreSQL strategies share (the limit against the
// usage, Partial sized by the row and the limit), then the units taken,
// the lines recorded and the usage counted, and COMMIT: the stock rows
// stay locked for those round trips, so buyers of a limited hot SKU queue
// longer than on PostgreSQL. Release, Cancel and expiry take counted units
// off the usage in their one CALL. Levels is one SELECT; Extend one
// conditional UPDATE.
//
// A cart of one line calls a procedure of its own, without the lists of a
// larger cart, and the ledger has one secondary index, on which the due
// holds and the settled reservations are two ranges (the migration
// one_line_calls_one_sweep_index): the server's CPU per cart is 8% less
// than with the procedure's one-line path and two indexes.
//
// Cost on MariaDB: see BENCHMARKS.md. On the 2-core machine there, with
// only the benchmark running, it decided 0.71 of the carts of raw-mysql
// (the bare conditional UPDATE, no ledger) on one hot SKU at 64 workers
// (median of three runs); with other work on the machine (load 10 to 12),
// 0.55. The server's CPU per cart (two inserts and the UPDATE, the commit,
// release and expiry calls), about four times raw-mysql's, bounds it.
package sqlcond
