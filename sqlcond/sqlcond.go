package sqlcond

import (
	"context"
	"time"

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
	// Zero or negative keeps every reservation. Default: 0. NewMySQL keeps
	// it too (see the package documentation's Retention).
	Retention time.Duration
	// SKUDefaults are the settings SetStock gives a SKU it creates; a SKU
	// that exists keeps its own, and SetStockWith sets them for one SKU.
	// With Buckets > 1 every new SKU is split into that many stock buckets
	// (see inventory.StockOptions): PostgreSQL only, NewMySQL refuses
	// Buckets above 1 with inventory.ErrUnsupported. Default: the zero
	// value, every SKU kept whole.
	SKUDefaults inventory.StockOptions
	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves its expiry past it. Zero or negative
	// means the default. Default: 1h.
	MaxHold time.Duration
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
	step           pgstore.Step
}

var (
	_ inventory.Strategy        = (*Reserver)(nil)
	_ inventory.Purger          = (*Reserver)(nil)
	_ inventory.StockConfigurer = (*Reserver)(nil)
	_ inventory.Rebalancer      = (*Reserver)(nil)
	_ inventory.Leveler         = (*Reserver)(nil)
	_ inventory.Extender        = (*Reserver)(nil)
)

// New returns a Reserver on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema. It does not
// touch the database: call Migrate, or run DDL with your own migration tool,
// before use.
func New(db DB, opts *Options) (*Reserver, error) {
	var o pgstore.Options
	if opts != nil {
		o = pgstore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now, Retention: opts.Retention, SKUDefaults: opts.SKUDefaults, MaxHold: opts.MaxHold}
	}
	o.Name, o.Limits, o.Backorders = "sqlcond", true, true
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	return &Reserver{Ledger: store.Ledger(), store: store, step: store.TakeStep()}, nil
}

// DDL returns the SQL that creates the schema named schema and its tables,
// for users who run their own migration tool. It is idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). It
// records the reservation and runs the conditional UPDATE of each line, in
// SKU order, in one pipelined batch that is its own transaction; a line of
// a SKU in stock buckets is taken from one bucket, and a line of a SKU with
// a limit per buyer, or of a request with a Buyer or Partial, by a function
// that checks every rule in the same statement (see the package
// documentation). See the package documentation for errors and costs.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.Reserve(ctx, req, r.step)
}

// Levels returns the units of sku available, held, sold and backordered,
// read in one snapshot (see inventory.Leveler and the package
// documentation).
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	return r.store.Levels(ctx, sku)
}

// Extend keeps the held reservation id for ttl from now, at most
// Options.MaxHold after it was reserved (see inventory.Extender).
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	return r.store.Extend(ctx, id, ttl)
}

// SetStockWith sets the units on hand of sku and its settings: with
// opts.Buckets > 1 its units are split evenly over that many stock buckets,
// rows of their own, so that buyers take them at once; opts.Limit caps the
// units one buyer may hold and buy; opts.Backorder lets that many units be
// sold beyond the stock on hand (see inventory.StockOptions and the package
// documentation).
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	return r.store.SetStockWith(ctx, sku, available, opts)
}

// Rebalance spreads the available units of sku evenly over its stock
// buckets again, safely while buyers reserve (see inventory.Rebalancer).
func (r *Reserver) Rebalance(ctx context.Context, sku string) error {
	return r.store.Rebalance(ctx, sku)
}
