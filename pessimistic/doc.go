// Package pessimistic is the inventory strategy of row locks, on
// PostgreSQL: a reservation locks the stock rows of its lines with
//
//	SELECT sku, available, buyer_limit FROM stock WHERE sku = ANY ($1) ORDER BY sku FOR UPDATE
//
// checks every line in Go, then takes the units and records the
// reservation, all in one transaction.
//
// Open it on a *pgxpool.Pool (or anything with the methods of DB), create its
// tables once with Migrate or with the SQL of DDL, and use it as an
// inventory.Strategy. The schema and the reservation ledger are shared with
// the sqlcond strategy: both can serve the same tables.
//
// # Guarantees
//
// Nobody else can change a locked row until the transaction ends, so what
// the check in Go saw is what the UPDATE changes: nothing is oversold. Rows
// are locked in SKU order (byte order, COLLATE "C" on the server), as every
// statement of this module that locks stock rows does, so crossing carts
// never deadlock. The transaction runs under READ COMMITTED. The CHECK
// (available >= 0) on the table never fires.
//
// The reservation row is inserted before the rows are locked, with INSERT
// ... ON CONFLICT DO NOTHING on its primary key: the same ID again returns
// the first reservation, as it is now, and changes nothing; a concurrent
// duplicate waits for the first transaction and then returns its result.
// Commit, Release and ExpireDue are those of the shared store (see sqlcond).
//
// # Cost
//
// Three round trips per Reserve: one batch that begins the transaction,
// records the reservation and locks the rows; one with the UPDATE and
// COMMIT; and an empty statement that hands the connection back to the pool.
// The locks are held from the first answer to the COMMIT, one round trip
// plus the check in Go, so on a hot SKU every buyer waits for the one ahead
// to make that round trip, where sqlcond holds its lock only while the
// server finishes its batch. A refused line costs nothing more: the locked
// rows already say why.
//
// On the machine of BENCHMARKS.md, with 64 workers, it decided 1189 carts/s
// on one hot SKU, 0.59 of the bare conditional UPDATE without a ledger
// (raw-postgres, 2021/s), and 3024 carts/s over 100 SKUs, 0.28 of it
// (10917/s): 27 to 36% less than sqlcond at 64 workers on every workload
// of that run. Over many SKUs the lock waits vanish but the three round
// trips remain, and it levels off near 3000 carts/s from 8 workers on.
// Choose it when the check is more than a comparison SQL can make, or with
// NoWait or LockTimeout to turn contention away instead of queueing it;
// otherwise sqlcond is faster.
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
// # Limits per buyer, partial carts, longer holds, levels and backorders
//
// On PostgreSQL the Reserver offers limits per buyer
// (inventory.StockOptions.Limit with Request.Buyer), partial carts
// (Request.Partial), backorders (StockOptions.Backorder) through
// SetStockWith, and is an inventory.Leveler and an inventory.Extender.
// Every rule is decided in Go under the row locks, in the same transaction
// as the units: the locking read also returns each SKU's limit; for a
// request with a Buyer it is a function that locks, SKU by SKU in order,
// the stock row and then the buyer's usage row of a SKU with a limit, so
// that the usage is decided under the same locks as the stock, across
// processes. A line past the limit, or of a SKU with a limit in a request
// without a Buyer, is an *inventory.LimitError; a partial line holds what
// the row and the limit leave, from max(Min, 1) up to Qty. What was held
// and counted goes with the UPDATE and COMMIT, in the same round trip.
// Release, Cancel and expiry take the units off the usage once; Purge does
// not. Backorders, Levels and Extend are the shared store's (see sqlcond):
// available counts the backorder, so the check in Go is unchanged; Levels
// reads one snapshot that Purge does not change; Extend moves a hold up
// to Options.MaxHold (default 1h) after it was reserved.
//
// A request without a Buyer or Partial costs what it did: the same locking
// read (returning the limit as well) and the same UPDATE. Stock buckets
// stay the other strategies': a SKU in buckets is refused as short here.
// NewMySQL offers them all too (see MySQL and MariaDB below).
//
// # Failures
//
// Errors satisfy errors.Is with the inventory sentinels:
//
//   - inventory.ErrInvalidRequest, checked first, before any I/O: fix the
//     request.
//   - *inventory.InsufficientStockError (with the units the locked row held)
//     or *inventory.UnknownSKUError for the first refused line in SKU order:
//     nothing was recorded; show it to the buyer.
//   - inventory.ErrConflict for an ID reused with other lines: use a new ID.
//   - inventory.ErrContended when a lock cannot be had in time, which only
//     happens with Options.LockTimeout (SET LOCAL lock_timeout),
//     Options.NoWait (FOR UPDATE NOWAIT) or a lock_timeout set on the
//     server: the transaction rolls back and nothing changes, so the same
//     request may be sent again, or the buyer told to come back.
//   - *inventory.OutcomeUnknownError, see below: send the same request again.
//
// A failure before COMMIT is sent changes nothing: the transaction rolls
// back. When the connection fails, or the context ends, after COMMIT was
// sent and before its answer arrives, the error is an
// *inventory.OutcomeUnknownError, and calling Reserve again with the same
// request returns the first reservation if it was applied, or applies it
// once. A context ending mid-call closes that connection (pgx's default);
// the pool replaces it, and the server rolls back what it held.
//
// # MySQL and MariaDB
//
// NewMySQL keeps the same contract on MySQL 8 or MariaDB 10.6 and later
// (InnoDB), through database/sql and github.com/go-sql-driver/mysql, with
// the same Options (Schema names the database). Migrate (or DDLMySQL)
// creates a procedure that runs the whole reservation in the server, in one
// READ COMMITTED transaction (set for it; the server default is REPEATABLE
// READ): the reservation rows, then for each line in SKU order SELECT ...
// FOR UPDATE of its stock row, the check and the UPDATE, then COMMIT.
// Reserve is one CALL, one round trip, and the row locks are held only
// while the server finishes it, never across a client round trip. NoWait
// and LockTimeout set the session's innodb_lock_wait_timeout for the call
// (NoWait: 0, since MariaDB refuses NOWAIT inside a procedure; MySQL 8
// raises 0 to its minimum of 1 s; LockTimeout: whole seconds rounded up) and
// put the session's own back before the call returns. Both fail with
// inventory.ErrContended and change nothing. Without them a lock waits for
// the server's innodb_lock_wait_timeout (50 s by default), then
// inventory.ErrContended. A deadlock victim (1213) is retried inside, a few
// times, then inventory.ErrContended. Unknown outcomes as above.
//
// The features above are NewMySQL's too, on the MySQL ledger shared with
// sqlcond (see its package documentation): a request without a Buyer or
// Partial is still the one CALL, whose locking read also reads the SKU's
// limit and refuses a SKU with one as an *inventory.LimitError; a request
// with a Buyer or Partial is taken in a READ COMMITTED transaction of the
// store's own, which locks the stock rows in SKU order and then the
// buyer's usage rows, decides each line in Go under those locks, and takes
// and counts the units before its COMMIT. NoWait adds NOWAIT to its locking
// read; LockTimeout sets the session's innodb_lock_wait_timeout for the
// call and puts it back after (a connection where that fails is
// discarded, never returned to the pool); both fail with
// inventory.ErrContended and change nothing.
//
// A cart of one line calls a procedure of its own, and the ledger has one
// secondary index (see sqlcond): the server's CPU per cart is 11% less
// than with the procedure's one-line path and two indexes.
//
// Cost on MariaDB: see BENCHMARKS.md. On the 2-core machine there, with
// only the benchmark running, it decided 0.59 of the carts of raw-mysql
// (the bare conditional UPDATE, no ledger) on one hot SKU at 64 workers
// (median of three runs); with other work on the machine (load 10 to 12),
// 0.47. The server's CPU per cart, not the round trips, bounds it.
package pessimistic
