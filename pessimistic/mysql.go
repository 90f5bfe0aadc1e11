package pessimistic

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
)

// MySQLReserver keeps stock in MySQL or MariaDB (InnoDB) and takes units
// under row locks: it locks the rows of a request with SELECT ... FOR UPDATE
// in SKU order, checks them in Go, and updates them, in one READ COMMITTED
// transaction. It is safe for concurrent use.
//
// Reserve is its own; the other methods of inventory.Strategy and Migrate
// come from the ledger every MySQL strategy shares.
type MySQLReserver struct {
	mystore.Ledger // Commit, Release, ExpireDue, Lookup, Available, SetStock, AddStock, Migrate
	store          *mystore.Store
	step           *myStep
}

var _ inventory.Strategy = (*MySQLReserver)(nil)

// NewMySQL returns a MySQLReserver on db, a pool of github.com/go-sql-driver/mysql
// connections; opts.Schema names the database (MySQL's schema) that holds
// the tables. NoWait adds NOWAIT to the locking read; LockTimeout sets the
// session's innodb_lock_wait_timeout for the transaction, in whole seconds
// (rounded up), and puts the server's back after it. Both fail with
// inventory.ErrContended and change nothing. It fails with an error that
// errors.Is inventory.ErrInvalidRequest when opts names an unusable database
// or a negative LockTimeout. It does not touch the database: call Migrate, or
// run DDLMySQL with your own migration tool, before use.
func NewMySQL(db *sql.DB, opts *Options) (*MySQLReserver, error) {
	var o mystore.Options
	st := &myStep{}
	if opts != nil {
		o = mystore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now}
		if opts.LockTimeout < 0 {
			return nil, &inventory.ValidationError{Field: "LockTimeout", Reason: "negative"}
		}
		if opts.LockTimeout > 0 && !opts.NoWait {
			st.lockTimeout = int64((opts.LockTimeout + time.Second - 1) / time.Second)
		}
		st.noWait = opts.NoWait
	}
	o.Name = "pessimistic"
	store, err := mystore.New(db, &o)
	if err != nil {
		return nil, err
	}
	st.store = store
	st.take = "UPDATE " + store.Table("stock") + " SET available = available - ? WHERE sku = ?"
	return &MySQLReserver{Ledger: store.Ledger(), store: store, step: st}, nil
}

// DDLMySQL returns the SQL that creates the database named schema and its
// tables, as the mysql client reads it, for users who run their own
// migration tool. It is idempotent.
func DDLMySQL(schema string) (string, error) { return mystore.DDL(schema) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). See
// the package documentation for how, what it costs and how it fails.
func (r *MySQLReserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.Reserve(ctx, req, r.step)
}

// myStep takes the units of a reservation under row locks.
type myStep struct {
	store       *mystore.Store
	lockTimeout int64 // seconds, or 0
	noWait      bool
	take        string
}

func (s *myStep) lockSQL(n int) string {
	q := "SELECT sku, available FROM " + s.store.Table("stock") + " WHERE sku IN (" +
		mystore.Placeholders(n, "?") + ") ORDER BY sku FOR UPDATE"
	if s.noWait {
		q += " NOWAIT"
	}
	return q
}

// SQL lists the statements of Take for n lines.
func (s *myStep) SQL(n int) []string { return []string{s.lockSQL(n), s.take} }

// Begin sets the session's lock wait timeout, when one is configured.
func (s *myStep) Begin(ctx context.Context, conn *sql.Conn) error {
	if s.lockTimeout == 0 {
		return nil
	}
	_, err := conn.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = "+strconv.FormatInt(s.lockTimeout, 10))
	return err
}

// End puts the server's lock wait timeout back on the session.
func (s *myStep) End(ctx context.Context, conn *sql.Conn) error {
	if s.lockTimeout == 0 {
		return nil
	}
	_, err := conn.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = DEFAULT")
	return err
}

// Take locks the rows in SKU order, checks them in Go and updates them.
func (s *myStep) Take(ctx context.Context, tx *sql.Tx, lines []inventory.Line) error {
	if err := s.store.ReadStock(ctx, tx, s.lockSQL(len(lines)), lines); err != nil {
		return err
	}
	st, err := s.store.Stmt(ctx, s.take)
	if err != nil {
		return err
	}
	txst := tx.StmtContext(ctx, st)
	for _, l := range lines {
		if _, err := txst.ExecContext(ctx, l.Qty, []byte(l.SKU)); err != nil {
			return err
		}
	}
	return nil
}
