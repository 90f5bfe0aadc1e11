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
	// Schema is the PostgreSQL schema holding the tables. Any name of 1..63
	// bytes without NUL is accepted; it is always quoted. Default: "inventory".
	Schema string
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock expiry is measured by, read in Go and sent to the
	// server as a parameter. Default: time.Now.
	Now func() time.Time
}

// Reserver keeps stock in PostgreSQL and takes units with one conditional
// UPDATE per line. It is safe for concurrent use.
type Reserver struct {
	store *pgstore.Store
	step  *step
}

var _ inventory.Strategy = (*Reserver)(nil)

// New returns a Reserver on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema. It does not
// touch the database: call Migrate, or run DDL with your own migration tool,
// before use.
func New(db DB, opts *Options) (*Reserver, error) {
	var o pgstore.Options
	if opts != nil {
		o = pgstore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now}
	}
	o.Name = "sqlcond"
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	return &Reserver{
		store: store,
		step: &step{take: store.GuardSQL("UPDATE " + store.Table("stock") +
			" SET available = available - $2 WHERE sku = $1 AND available >= $2 RETURNING 1")},
	}, nil
}

// DDL returns the SQL that creates the schema named schema and its tables,
// for users who run their own migration tool. It is idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// Migrate creates or upgrades the schema and its tables. It is idempotent and
// safe to run from many processes at once (an advisory lock serializes them).
func (r *Reserver) Migrate(ctx context.Context) error { return r.store.Migrate(ctx) }

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

// Commit sells the units of a held reservation. It is idempotent; commit
// after release or expiry fails with an *inventory.StateError, an unknown ID
// with inventory.ErrNotFound.
func (r *Reserver) Commit(ctx context.Context, id string) error { return r.store.Commit(ctx, id) }

// Release returns the units of a held reservation to stock. It is
// idempotent; release after commit or expiry fails with an
// *inventory.StateError, an unknown ID with inventory.ErrNotFound.
func (r *Reserver) Release(ctx context.Context, id string) error { return r.store.Release(ctx, id) }

// ExpireDue expires at most limit held reservations whose TTL has passed and
// returns their units. Sweepers in many processes never expire one twice.
func (r *Reserver) ExpireDue(ctx context.Context, limit int) (int, error) {
	return r.store.ExpireDue(ctx, limit)
}

// Lookup returns the reservation recorded under id, or inventory.ErrNotFound.
func (r *Reserver) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return r.store.Lookup(ctx, id)
}

// Available returns the units of sku that can still be reserved.
func (r *Reserver) Available(ctx context.Context, sku string) (int64, error) {
	return r.store.Available(ctx, sku)
}

// SetStock sets the available units of sku, creating the SKU if it is new.
func (r *Reserver) SetStock(ctx context.Context, sku string, available int64) error {
	return r.store.SetStock(ctx, sku, available)
}

// AddStock adds delta units (negative to remove) to sku and returns the new
// available number; it never drives it below zero.
func (r *Reserver) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	return r.store.AddStock(ctx, sku, delta)
}
