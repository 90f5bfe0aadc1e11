package sqlcond

import (
	"context"
	"database/sql"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
)

// MySQLReserver keeps stock in MySQL or MariaDB (InnoDB) and takes units with
// one conditional UPDATE per line, all in one server-side procedure call. It
// is safe for concurrent use.
//
// It offers limits per buyer, partial carts, backorders (SetStockWith),
// stock levels (Levels) and longer holds (Extend), each checked in the
// transaction that takes the units; stock buckets it refuses with
// inventory.ErrUnsupported (see the package documentation).
//
// Reserve is its own; the other methods of inventory.Strategy, Migrate,
// Purge, SetStockWith, Levels and Extend come from the ledger every MySQL
// strategy shares, and keep the contract documented on inventory.Reserver.
type MySQLReserver struct {
	mystore.Ledger // Commit, Release, ExpireDue, Purge, Lookup, Available, SetStock, AddStock, Migrate
	store          *mystore.Store
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
// the tables. It fails with an error that errors.Is inventory.ErrInvalidRequest
// when opts names an unusable database. It does not touch the database: call
// Migrate, or run DDLMySQL with your own migration tool, before use.
func NewMySQL(db *sql.DB, opts *Options) (*MySQLReserver, error) {
	var o mystore.Options
	if opts != nil {
		o = mystore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now, Retention: opts.Retention,
			SKUDefaults: opts.SKUDefaults, MaxHold: opts.MaxHold}
	}
	o.Name = "sqlcond"
	store, err := mystore.New(db, &o)
	if err != nil {
		return nil, err
	}
	return &MySQLReserver{Ledger: store.Ledger(), store: store}, nil
}

// DDLMySQL returns the SQL that creates the database named schema and its
// tables and procedure, as the mysql client reads it, for users who run their
// own migration tool. It is idempotent.
func DDLMySQL(schema string) (string, error) { return mystore.DDL(schema) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). One
// CALL runs the whole transaction in the server: the reservation rows, the
// conditional UPDATE of each line in SKU order, COMMIT. A request with a
// Buyer or Partial is taken in a transaction of its own that decides each
// line under the lock of its stock row (see the package documentation for
// errors and costs).
func (r *MySQLReserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.ReserveConditional(ctx, req)
}
