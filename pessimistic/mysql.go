package pessimistic

import (
	"context"
	"database/sql"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
)

// MySQLReserver keeps stock in MySQL or MariaDB (InnoDB) and takes units
// under row locks: one CALL of a procedure that records the reservation,
// then locks the stock row of each line with SELECT ... FOR UPDATE in SKU
// order, checks it and updates it, and commits, in one READ COMMITTED
// transaction in the server. It is safe for concurrent use.
//
// It offers limits per buyer, partial carts, backorders (SetStockWith),
// stock levels (Levels) and longer holds (Extend), each checked under the
// row locks of the transaction that takes the units; stock buckets it
// refuses with inventory.ErrUnsupported (see the package documentation).
//
// Reserve is its own; the other methods of inventory.Strategy, Migrate,
// Purge, SetStockWith, Levels and Extend come from the ledger every MySQL
// strategy shares.
type MySQLReserver struct {
	mystore.Ledger // Commit, Release, ExpireDue, Purge, Lookup, Available, SetStock, AddStock, Migrate
	store          *mystore.Store
	call           *mystore.Call
}

var (
	_ inventory.Strategy        = (*MySQLReserver)(nil)
	_ inventory.Purger          = (*MySQLReserver)(nil)
	_ inventory.StockConfigurer = (*MySQLReserver)(nil)
	_ inventory.Leveler         = (*MySQLReserver)(nil)
	_ inventory.Extender        = (*MySQLReserver)(nil)
)

// NewMySQL returns a MySQLReserver on db, a pool of github.com/go-sql-driver/mysql
// connections; opts.Schema names the database (MySQL's schema) that holds
// the tables. NoWait adds NOWAIT to the locking read; LockTimeout sets the
// session's innodb_lock_wait_timeout while the call runs, in whole seconds
// (rounded up), and puts the session's back before it returns. Both fail
// with inventory.ErrContended and change nothing. It fails with an error
// that errors.Is inventory.ErrInvalidRequest when opts names an unusable
// database or a negative LockTimeout. It does not touch the database: call
// Migrate, or run DDLMySQL with your own migration tool, before use.
func NewMySQL(db *sql.DB, opts *Options) (*MySQLReserver, error) {
	var o mystore.Options
	var noWait bool
	var wait int64
	if opts != nil {
		o = mystore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now, Retention: opts.Retention, MaxHold: opts.MaxHold}
		if opts.LockTimeout < 0 {
			return nil, &inventory.ValidationError{Field: "LockTimeout", Reason: "negative"}
		}
		if opts.LockTimeout > 0 && !opts.NoWait {
			wait = int64((opts.LockTimeout + time.Second - 1) / time.Second)
		}
		noWait = opts.NoWait
	}
	o.Name = "pessimistic"
	store, err := mystore.New(db, &o)
	if err != nil {
		return nil, err
	}
	return &MySQLReserver{Ledger: store.Ledger(), store: store, call: store.LockingCall(noWait, wait)}, nil
}

// DDLMySQL returns the SQL that creates the database named schema and its
// tables and procedures, as the mysql client reads it, for users who run
// their own migration tool. It is idempotent.
func DDLMySQL(schema string) (string, error) { return mystore.DDL(schema) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). See
// the package documentation for how, what it costs and how it fails.
func (r *MySQLReserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.Reserve(ctx, req, r.call)
}
