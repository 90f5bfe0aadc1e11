package sqlcond

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
)

// DB is the part of a PostgreSQL client the strategy uses. *pgxpool.Pool and
// *pgx.Conn satisfy it; a *pgx.Conn serves one call at a time.
type DB = pgstore.DB

// Options configures a Reserver. A nil *Options takes every default.
type Options struct {
	// Schema is the PostgreSQL schema (for NewMySQL, the database) holding
	// the tables. Any name of 1..63 bytes without NUL is accepted (MySQL:
	// 1..64 characters, not ending in a space); it is always quoted.
	// Default: "inventory".
	Schema string
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock expiry is measured by, read in Go and sent to the
	// server as a parameter. Default: time.Now.
	Now func() time.Time
	// Retention is how long a settled reservation (Committed, Released,
	// Expired, or cancelled) is kept after it settled; then Purge (which a
	// Sweeper calls) deletes it, and its ID is unknown: idempotency on an ID
	// lasts as long as the retention. Held reservations are never purged.
	// Zero or negative keeps every reservation. Default: 0. PostgreSQL only:
	// NewMySQL keeps every reservation.
	Retention time.Duration
}

// Reserver keeps stock in PostgreSQL and takes units with one conditional
// UPDATE per line. It is safe for concurrent use.
//
// Reserve is its own; the other methods of inventory.Strategy (Commit,
// Release, ExpireDue, Lookup, Available, SetStock, AddStock), Purge and
// Migrate come from the ledger every PostgreSQL strategy shares, and keep the
// contract documented on inventory.Reserver.
type Reserver struct {
	pgstore.Ledger // Commit, Release, ExpireDue, Purge, Lookup, Available, SetStock, AddStock, Migrate
	store          *pgstore.Store
	step           *step
}

var (
	_ inventory.Strategy = (*Reserver)(nil)
	_ inventory.Purger   = (*Reserver)(nil)
)

// New returns a Reserver on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema. It does not
// touch the database: call Migrate, or run DDL with your own migration tool,
// before use.
func New(db DB, opts *Options) (*Reserver, error) {
	var o pgstore.Options
	if opts != nil {
		o = pgstore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now, Retention: opts.Retention}
	}
	o.Name = "sqlcond"
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	return &Reserver{
		Ledger: store.Ledger(),
		store:  store,
		step: &step{take: store.GuardSQL("UPDATE " + store.Table("stock") +
			" SET available = available - $2 WHERE sku = $1 AND available >= $2 RETURNING 1")},
	}, nil
}

// DDL returns the SQL that creates the schema named schema and its tables,
// for users who run their own migration tool. It is idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). It
// records the reservation and runs the conditional UPDATE of each line, in
// SKU order, in one pipelined batch that is its own transaction. See the
// package documentation for errors and costs.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.Reserve(ctx, req, r.step)
}

// step takes the units of a reservation: the conditional UPDATE of each line,
// queued after the ledger insert, raising when it matches no row so that the
// batch, its own implicit transaction, rolls back whole.
type step struct {
	take string
}

func (s *step) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	for _, l := range lines {
		pgstore.QueueRefusable(b, l, s.take, l.SKU, l.Qty)
	}
	return nil
}
