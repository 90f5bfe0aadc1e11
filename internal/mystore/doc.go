// Package mystore is the MySQL and MariaDB layer the MySQL strategies share,
// written once beside internal/pgstore, with which it shares the rules that
// are not SQL (internal/ledger): the schema and its migrations, the
// reservation ledger, and every operation but the step of Reserve in which
// the strategies differ.
//
// # Schema
//
// One database (MySQL's schema) per installation (Options.Schema, default
// "inventory"), always quoted in backticks, so any name the server can hold
// is safe. InnoDB tables stock (sku, available, backorder, buyer_limit,
// received, received_before), reservation (id, state, expires_at,
// created_at, settled_at), reservation_line (reservation_id, sku, qty,
// buyer, partial, counted) and buyer_usage (sku, buyer, used), and the
// procedures sqlcond_reserve, pessimistic_reserve and return_units. SKUs and IDs are VARBINARY: the server
// orders them byte by byte, as Go does, so rows locked "in SKU order" from Go
// or by the server are locked in the same order. Times are microseconds
// since the Unix epoch in BIGINTs, so the time zones of server and client do
// not matter and no DSN option (parseTime) is needed.
//
// # Reserve
//
// Every reservation is one CALL of a procedure that runs the whole
// transaction in the server, at READ COMMITTED set for it (the server
// default is REPEATABLE READ, whose gap locks the strategies do not need:
// every row they lock is found by its primary key): the ledger rows first,
// then the stock row of each line in SKU order, then COMMIT. A stock row is
// locked only while the server finishes the call, never across a client
// round trip; the statement is prepared once per connection, so a
// reservation is one round trip. A cart of one line, the common case, is
// a CALL of a procedure of its own (sqlcond_reserve_one,
// pessimistic_reserve_one) that takes the line's SKU and quantity, without
// the loop that parses the lines of a larger cart or any variable to set
// (each statement a procedure runs costs the server about what a small
// query does). Two kinds of procedure:
//
//   - sqlcond_reserve (ReserveConditional, sqlcond): the conditional
//     UPDATE of each line.
//   - pessimistic_reserve (Reserve with LockingCall, pessimistic): SELECT
//     ... FOR UPDATE of each line's row, the check, the UPDATE. A lock
//     timeout or NOWAIT is the session's innodb_lock_wait_timeout for the
//     call (0 for NOWAIT, which MariaDB refuses inside a procedure), put
//     back before the call returns; a lock not had in time is
//     inventory.ErrContended at once.
//
// Release, Cancel and expiry are one CALL of return_units per hold, which
// moves the hold and gives its units back in the same way (Release calls it
// first, and looks the reservation up only when it was not held and
// active); ExpireDue reads
// the due holds without a lock and expires each with such a call, which
// expires it only if it is still held and due, so that sweepers in many
// processes expire each hold once.
//
// A taken ID fails the ledger insert with a duplicate key (1062) before any
// stock row is touched; an insert of an ID another transaction is inserting
// waits for it. A deadlock victim (1213), or a lock wait timeout (1205) of
// sqlcond_reserve, is tried again, a few times, then inventory.ErrContended.
//
// # Limits per buyer, partial carts, longer holds, levels and backorders
//
// The rules are internal/ledger's, as for PostgreSQL: the order of checks,
// ledger.Grant for a line against its row, ledger.Extend, the errors. The
// stock row holds the SKU's backorder (its available units are the units on
// hand plus it, so the take stays "available >= n"), its limit per buyer
// (buyer_limit, 0: none) and received, what SetStock, SetStockWith and
// AddStock changed the available units by, so that Levels reads Available,
// Held (the lines of held reservations, through the index of held ones)
// and Sold = received - Available - Held in one SELECT, right whatever
// Purge deleted. Each line of a reservation carries its Buyer and Partial
// (the migration levels_limits says why) and whether it counts against the
// buyer's usage, a row of buyer_usage (sku, buyer, used).
//
// A request without a Buyer or Partial is the one CALL above; its take
// also asks buyer_limit = 0, so a SKU with a limit refuses it, and the store
// reports an *inventory.LimitError. A request with a Buyer or Partial runs
// in a READ COMMITTED transaction of the store's own, on one connection:
// the reservation row, then SELECT ... FOR UPDATE of the stock rows in SKU
// order (NOWAIT, or the session's lock wait timeout set for the call, as
// the Call asks), then of the buyer's usage rows; each line is decided in
// Go by ledger.Grant under those locks; then the lines are recorded with
// the units held, the units taken, the counted units added to the usage,
// and COMMIT. A usage row is read and written only by a transaction that
// holds its SKU's stock row, so it adds nothing to the lock order: SKUs in
// order, within one the stock row, then its usage rows. return_units takes
// a counted line's units off the usage under the same stock row lock, in
// the transaction that moves the reservation out of Held, so once; Purge
// leaves the usage alone, so committed units go on counting. Extend is one
// conditional UPDATE of the expiry, to max(expiry, min(now + ttl,
// created_at + Options.MaxHold)). Stock buckets are not offered.
//
// # Retention
//
// With Options.Retention, Purge deletes settled reservations (and the
// tombstones of Cancel) once the retention has passed since they settled:
// Commit, Release, Cancel and expiry record the moment in settled_at. The
// one secondary index of reservation is on the virtual column sweep_key:
// the expiry of a held reservation, and minus the moment a settled one
// settled (settled_at, else expires_at for a row a writer before the
// migration retention settled), so that a Reserve writes one index entry
// besides the primary key and a settle moves one. ExpireDue reads the due
// holds in its range of non-negative keys; Purge reads the oldest
// candidates in its range of negative ones, backwards, a range that never
// holds a held reservation, locks them FOR UPDATE SKIP LOCKED,
// deletes them by primary key (their lines by ON DELETE CASCADE) and
// commits, at most 1000 in one call. Held reservations are never purged,
// and no stock row is locked. A purged ID is unknown, so idempotency on an
// ID lasts as long as the retention.
//
// # Upgrades
//
// Migrate adds what a newer version needs to a ledger in place, and the
// processes of an older version go on working beside a newer one while the
// shop rolls the upgrade out, with two costs until every process runs the
// new version: a process from before migration 6 (levels_limits) changes a
// SKU's stock without moving received, so Levels reports Sold wrong (by
// what it set or added) for the SKUs such a process stocked; and one from
// before migration 7 reads due holds and purge candidates through an index
// that no longer exists, scanning reservation. Upgrade every process
// before the stock of a SKU whose Levels matter changes.
//
// # Failures
//
// The server's answer to a statement means it did not commit; a connection
// lost, killed (1927) or interrupted after the commit was sent, or a context
// that ended while its answer was awaited (go-sql-driver then closes the
// connection), gives an *inventory.OutcomeUnknownError: every operation is
// idempotent, so the caller retries with the same ID.
package mystore
