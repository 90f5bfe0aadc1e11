package pessimistic

import (
	"context"
	"strconv"
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
	// Zero or negative keeps every reservation. Default: 0. NewMySQL keeps
	// it too (see the package documentation's Retention).
	Retention time.Duration
	// LockTimeout bounds the wait of a Reserve for its row locks (SET LOCAL
	// lock_timeout); past it, Reserve fails with inventory.ErrContended and
	// changes nothing. It is rounded up to the millisecond. Default: 0, the
	// server's lock_timeout (by default, wait as long as it takes).
	LockTimeout time.Duration
	// NoWait makes a Reserve fail at once with inventory.ErrContended,
	// changing nothing, when any of its rows is locked (FOR UPDATE NOWAIT).
	// It takes precedence over LockTimeout. Default: false.
	NoWait bool
	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves its expiry past it. Zero or negative
	// means the default. Default: 1h.
	MaxHold time.Duration
}

// Reserver keeps stock in PostgreSQL and takes units under row locks: it
// locks the rows of a request with SELECT ... FOR UPDATE in SKU order, checks
// them in Go, and updates them, in one transaction. It is safe for
// concurrent use.
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
	_ inventory.Strategy        = (*Reserver)(nil)
	_ inventory.Purger          = (*Reserver)(nil)
	_ inventory.StockConfigurer = (*Reserver)(nil)
	_ inventory.Leveler         = (*Reserver)(nil)
	_ inventory.Extender        = (*Reserver)(nil)
)

// New returns a Reserver on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema or a
// negative LockTimeout. It does not touch the database: call Migrate, or run
// DDL with your own migration tool, before use.
func New(db DB, opts *Options) (*Reserver, error) {
	var o pgstore.Options
	st := &step{}
	if opts != nil {
		o = pgstore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now, Retention: opts.Retention, MaxHold: opts.MaxHold}
		if opts.LockTimeout < 0 {
			return nil, &inventory.ValidationError{Field: "LockTimeout", Reason: "negative"}
		}
		if opts.LockTimeout > 0 && !opts.NoWait {
			ms := (opts.LockTimeout + time.Millisecond - 1) / time.Millisecond
			st.lockTimeout = strconv.FormatInt(int64(ms), 10) + "ms"
		}
		st.noWait = opts.NoWait
	}
	o.Name, o.Limits, o.Backorders = "pessimistic", true, true
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	stock := store.Table("stock")
	st.lockAs = store.LockSQL()
	st.lock = "SELECT sku, available, buyer_limit, NULL::bigint FROM " + stock + " WHERE sku = ANY ($1::text[]) ORDER BY sku FOR UPDATE"
	if st.noWait {
		st.lock += " NOWAIT"
	}
	st.take = "UPDATE " + stock + " SET available = available - $2 WHERE sku = $1"
	st.takeMany = "UPDATE " + stock + " AS s SET available = s.available - u.qty " +
		"FROM unnest($1::text[], $2::bigint[]) AS u (sku, qty) WHERE s.sku = u.sku"
	st.store = store
	return &Reserver{Ledger: store.Ledger(), store: store, step: st}, nil
}

// DDL returns the SQL that creates the schema named schema and its tables,
// for users who run their own migration tool. It is idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). See
// the package documentation for how, what it costs and how it fails.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.Reserve(ctx, req, r.step)
}

// SetStockWith sets the units on hand of sku and its settings: opts.Limit
// caps the units one buyer may hold and buy; opts.Backorder lets that many
// units be sold beyond the stock on hand (see inventory.StockOptions).
// Stock buckets are the other strategies' (see the package documentation):
// this one reads and locks the stock row alone.
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	return r.store.SetStockWith(ctx, sku, available, opts)
}

// Levels returns the units of sku available, held, sold and backordered,
// read in one snapshot (see inventory.Leveler).
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	return r.store.Levels(ctx, sku)
}

// Extend keeps the held reservation id for ttl from now, at most
// Options.MaxHold after it was reserved (see inventory.Extender).
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	return r.store.Extend(ctx, id, ttl)
}

// step takes the units of a reservation under row locks.
type step struct {
	store       *pgstore.Store
	lockTimeout string // "250ms", or empty
	noWait      bool
	lock        string // SELECT ... FOR UPDATE [NOWAIT]
	lockAs      string // the stock rows and the buyer's usage rows, in the lock order (pgstore.Store.LockSQL)
	take        string // UPDATE of one line
	takeMany    string // UPDATE of many lines
}

var _ pgstore.RequestStep = (*step)(nil)

// Queue is QueueTake for lines alone: the store calls QueueTake.
func (s *step) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	held := make([]int64, len(lines))
	for i, l := range lines {
		held[i] = l.Qty
	}
	return s.QueueTake(b, &pgstore.Take{Lines: lines, Held: held})
}

// QueueTake queues the lock timeout and the locking read after the ledger
// insert: the stock rows alone for a request without a Buyer, with the
// buyer's usage rows (in the lock order) for one with; the returned Finish
// decides the lines in Go under those locks (stock, limit per buyer,
// Partial) and queues their UPDATE, and what was held and counted, which
// the store sends with COMMIT.
func (s *step) QueueTake(b *pgx.Batch, t *pgstore.Take) pgstore.Finish {
	if s.lockTimeout != "" {
		b.Queue("SELECT set_config('lock_timeout', $1, true)", s.lockTimeout)
	}
	skus := make([]string, len(t.Lines))
	for i, l := range t.Lines {
		skus[i] = l.SKU
	}
	var read pgstore.Rows
	if t.Buyer == "" {
		read = pgstore.QueueRows(b, s.lock, skus)
	} else {
		read = pgstore.QueueRows(b, s.lockAs, skus, t.Buyer, s.noWait)
	}
	return func(b *pgx.Batch) error {
		counted, err := read.Grant(t)
		if err != nil {
			return err
		}
		if len(t.Lines) == 1 {
			b.Queue(s.take, skus[0], t.Held[0])
		} else {
			b.Queue(s.takeMany, skus, t.Held)
		}
		s.store.QueueHeld(b, t, counted)
		return nil
	}
}
