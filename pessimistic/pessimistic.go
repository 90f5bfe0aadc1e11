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
	// Schema is the PostgreSQL schema holding the tables. Any name of 1..63
	// bytes without NUL is accepted; it is always quoted. Default: "inventory".
	Schema string
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock expiry is measured by, read in Go and sent to the
	// server as a parameter. Default: time.Now.
	Now func() time.Time
	// LockTimeout bounds the wait of a Reserve for its row locks (SET LOCAL
	// lock_timeout); past it, Reserve fails with inventory.ErrContended and
	// changes nothing. It is rounded up to the millisecond. Default: 0, the
	// server's lock_timeout (by default, wait as long as it takes).
	LockTimeout time.Duration
	// NoWait makes a Reserve fail at once with inventory.ErrContended,
	// changing nothing, when any of its rows is locked (FOR UPDATE NOWAIT).
	// It takes precedence over LockTimeout. Default: false.
	NoWait bool
}

// Reserver keeps stock in PostgreSQL and takes units under row locks: it
// locks the rows of a request with SELECT ... FOR UPDATE in SKU order, checks
// them in Go, and updates them, in one transaction. It is safe for
// concurrent use.
type Reserver struct {
	store *pgstore.Store
	step  *step
}

var _ inventory.Strategy = (*Reserver)(nil)

// New returns a Reserver on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema or a
// negative LockTimeout. It does not touch the database: call Migrate, or run
// DDL with your own migration tool, before use.
func New(db DB, opts *Options) (*Reserver, error) {
	var o pgstore.Options
	st := &step{}
	if opts != nil {
		o = pgstore.Options{Schema: opts.Schema, DefaultTTL: opts.DefaultTTL, Now: opts.Now}
		if opts.LockTimeout < 0 {
			return nil, &inventory.ValidationError{Field: "LockTimeout", Reason: "negative"}
		}
		if opts.LockTimeout > 0 && !opts.NoWait {
			ms := (opts.LockTimeout + time.Millisecond - 1) / time.Millisecond
			st.lockTimeout = strconv.FormatInt(int64(ms), 10) + "ms"
		}
		st.noWait = opts.NoWait
	}
	o.Name = "pessimistic"
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	stock := store.Table("stock")
	st.lock = "SELECT sku, available FROM " + stock + " WHERE sku = ANY ($1::text[]) ORDER BY sku FOR UPDATE"
	if st.noWait {
		st.lock += " NOWAIT"
	}
	st.take = "UPDATE " + stock + " SET available = available - $2 WHERE sku = $1"
	st.takeMany = "UPDATE " + stock + " AS s SET available = s.available - u.qty " +
		"FROM unnest($1::text[], $2::bigint[]) AS u (sku, qty) WHERE s.sku = u.sku"
	return &Reserver{store: store, step: st}, nil
}

// DDL returns the SQL that creates the schema named schema and its tables,
// for users who run their own migration tool. It is idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// Migrate creates or upgrades the schema and its tables. It is idempotent and
// safe to run from many processes at once (an advisory lock serializes them).
func (r *Reserver) Migrate(ctx context.Context) error { return r.store.Migrate(ctx) }

// Reserve holds every line of req, or none, for req.TTL (0: the default). See
// the package documentation for how, what it costs and how it fails.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.store.Reserve(ctx, req, r.step)
}

// step takes the units of a reservation under row locks.
type step struct {
	lockTimeout string // "250ms", or empty
	noWait      bool
	lock        string // SELECT ... FOR UPDATE [NOWAIT]
	take        string // UPDATE of one line
	takeMany    string // UPDATE of many lines
}

// Queue queues the lock timeout and the locking read after the ledger insert;
// the returned Finish checks the rows in Go and queues their UPDATE, which
// the store sends with COMMIT.
func (s *step) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	if s.lockTimeout != "" {
		b.Queue("SELECT set_config('lock_timeout', $1, true)", s.lockTimeout)
	}
	avail := make(map[string]int64, len(lines))
	b.Queue(s.lock, skus).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var sku string
			var n int64
			if err := rows.Scan(&sku, &n); err != nil {
				return err
			}
			avail[sku] = n
		}
		return rows.Err()
	})
	return func(b *pgx.Batch) error {
		for _, l := range lines {
			n, ok := avail[l.SKU]
			switch {
			case !ok:
				return &inventory.UnknownSKUError{SKU: l.SKU}
			case n < l.Qty:
				return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
			}
		}
		if len(lines) == 1 {
			b.Queue(s.take, lines[0].SKU, lines[0].Qty)
			return nil
		}
		qtys := make([]int64, len(lines))
		for i, l := range lines {
			qtys[i] = l.Qty
		}
		b.Queue(s.takeMany, skus, qtys)
		return nil
	}
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
