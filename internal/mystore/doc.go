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
// is safe. InnoDB tables stock (sku, available), reservation (id, state,
// expires_at, created_at) and reservation_line (reservation_id, sku, qty),
// and the procedure sqlcond_reserve. SKUs and IDs are VARBINARY: the server
// orders them byte by byte, as Go does, so rows locked "in SKU order" from Go
// or by the server are locked in the same order. Times are microseconds
// since the Unix epoch in BIGINTs, so the time zones of server and client do
// not matter and no DSN option (parseTime) is needed.
//
// # Reserve
//
// Every transaction runs at READ COMMITTED, set per transaction (the server
// default is REPEATABLE READ, whose gap locks the strategies do not need:
// every row they lock is found by its primary key). Two ways:
//
//   - ReserveConditional (sqlcond): one CALL of sqlcond_reserve, which
//     inserts the ledger rows, runs the conditional UPDATE of each line in
//     SKU order and commits, all in the server. A hot row is locked from
//     its UPDATE to the COMMIT that follows it in the same procedure, never
//     across a client round trip. One round trip per reservation (the
//     statement is prepared once per connection).
//   - Reserve with a Step (pessimistic): BEGIN, the ledger rows, the step's
//     statements, COMMIT, each a round trip on one connection.
//
// A taken ID fails the ledger insert with a duplicate key (1062) before any
// stock row is touched; an insert of an ID another transaction is inserting
// waits for it. A deadlock victim (1213) or lock wait timeout (1205) is
// tried again, a few times, then inventory.ErrContended.
//
// # Failures
//
// The server's answer to a statement means it did not commit; a connection
// lost, killed (1927) or interrupted after the commit was sent, or a context
// that ended while its answer was awaited (go-sql-driver then closes the
// connection), gives an *inventory.OutcomeUnknownError: every operation is
// idempotent, so the caller retries with the same ID.
package mystore
