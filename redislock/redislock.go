package redislock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
)

// DB is the part of a PostgreSQL client the strategy uses. *pgxpool.Pool and
// *pgx.Conn satisfy it; a *pgx.Conn serves one call at a time.
type DB = pgstore.DB

// DefaultKeyPrefix is the Redis key prefix of Options.KeyPrefix.
const DefaultKeyPrefix = "inventory:"

// DefaultReplicaTimeout is the default of Options.ReplicaTimeout.
const DefaultReplicaTimeout = time.Second

// Options configures a Reserver. A nil *Options takes every default.
type Options struct {
	// Schema is the PostgreSQL schema holding the tables. Any name of 1..63
	// bytes without NUL is accepted; it is always quoted. Default: "inventory".
	Schema string
	// KeyPrefix starts every Redis key the strategy uses. Processes that
	// share stock must share it. It may hold a complete hash tag
	// ("shop{eu}:"), which puts every key in that one Redis Cluster slot, but
	// no '{' that it does not close. Default: "inventory:".
	KeyPrefix string
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock reservation expiry is measured by. The locks use the
	// Redis server's clock and the process's timers, not this one.
	// Default: time.Now.
	Now func() time.Time
	// Retention is how long a settled reservation (Committed, Released,
	// Expired, or cancelled) is kept after it settled; then Purge (which a
	// Sweeper calls) deletes it, and its ID is unknown: idempotency on an ID
	// lasts as long as the retention. Held reservations are never purged.
	// Zero or negative keeps every reservation. Default: 0.
	Retention time.Duration
	// LockTTL is how long a lock outlives a holder that stops renewing it
	// (a crash, a pause). A watchdog renews held locks every LockTTL/3. It
	// must be at least 3ms; zero or negative means the default. Default: 5s.
	LockTTL time.Duration
	// WaitReplicas, when positive, makes Reserve wait after taking its
	// locks (Redis WAIT, on the connection that ran the script) until that
	// many replicas have them, for at most ReplicaTimeout, before it writes
	// to PostgreSQL: a failover then forgets no lock the replicas confirmed
	// (see the package documentation for what that buys). Locks the
	// replicas did not confirm in time are given back and Reserve fails
	// with an *inventory.UnavailableError wrapping ErrNotReplicated:
	// nothing changed, and a retry is safe. It cannot be used with a Redis
	// Cluster client, whose pipeline need not keep the script and the WAIT
	// on one connection. Default: 0, write as soon as the primary has the
	// locks.
	WaitReplicas int
	// ReplicaTimeout bounds the wait of WaitReplicas. Default: 1s.
	ReplicaTimeout time.Duration
	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves its expiry past it. Zero or negative
	// means the default. Default: 1h.
	MaxHold time.Duration
	// WaitTimeout bounds the wait for locks another request holds; then
	// Reserve fails with a *ContendedError and changes nothing. Negative
	// means one try, no waiting. Default: 5s.
	WaitTimeout time.Duration
}

// Reserver keeps stock in PostgreSQL and serialises the reservations of a SKU
// with a lock per SKU in Redis, made safe by fencing tokens that PostgreSQL
// checks. It is safe for concurrent use, and from many processes that share
// the database schema and the Redis key prefix.
//
// Reserve is its own; the other methods of inventory.Strategy (Commit,
// Release, ExpireDue, Lookup, Available, SetStock, AddStock), Purge,
// Migrate, SetStockWith, Levels and Extend come from the ledger every
// PostgreSQL strategy shares, and keep the contract documented on
// inventory.Reserver.
type Reserver struct {
	pgstore.Ledger // Commit, Release, ExpireDue, Purge, Lookup, Available, SetStock, AddStock, Migrate
	store          *pgstore.Store
	locks          *locker
	q              stepQueries
	// unfenced writes stock with a plain UPDATE that checks neither the fence
	// nor the stock it read: the lock alone. Tests only, to show that the
	// lock alone oversells.
	unfenced bool
	// beforeWrite, when set, runs inside the reservation's transaction after
	// the stock was read and checked, before its writes are queued. Tests
	// only: it stands for a holder that pauses there.
	beforeWrite func()
}

var (
	_ inventory.Strategy        = (*Reserver)(nil)
	_ inventory.Purger          = (*Reserver)(nil)
	_ inventory.StockConfigurer = (*Reserver)(nil)
	_ inventory.Leveler         = (*Reserver)(nil)
	_ inventory.Extender        = (*Reserver)(nil)
)

// New returns a Reserver on db and client. client may be a single server,
// Sentinel (redis.FailoverClient) or Redis Cluster (*redis.ClusterClient).
// New fails with an error that errors.Is inventory.ErrInvalidRequest when
// opts names an unusable schema, and with a plain error for a nil client or
// an unusable key prefix or lock TTL. It does not touch either server: call
// Migrate, or run DDL with your own migration tool, before use.
func New(db DB, client redis.UniversalClient, opts *Options) (*Reserver, error) {
	o := pgstore.Options{Name: "redislock"}
	prefix := DefaultKeyPrefix
	var ttl, wait time.Duration
	if opts != nil {
		o.Schema, o.DefaultTTL, o.Now, o.Retention, o.MaxHold = opts.Schema, opts.DefaultTTL, opts.Now, opts.Retention, opts.MaxHold
		if opts.KeyPrefix != "" {
			prefix = opts.KeyPrefix
		}
		ttl, wait = opts.LockTTL, opts.WaitTimeout
		if opts.WaitReplicas < 0 || opts.ReplicaTimeout < 0 {
			return nil, &inventory.ValidationError{Field: "WaitReplicas", Reason: "negative"}
		}
		if _, ok := client.(*redis.ClusterClient); ok && opts.WaitReplicas > 0 {
			return nil, &inventory.ValidationError{Field: "WaitReplicas", Reason: "not available with a Redis Cluster client"}
		}
	}
	o.Limits, o.Backorders = true, true
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	locks, err := newLocker(client, prefix, ttl, wait)
	if err != nil {
		return nil, err
	}
	if opts != nil && opts.WaitReplicas > 0 {
		locks.waitN, locks.waitFor = opts.WaitReplicas, opts.ReplicaTimeout
		if locks.waitFor == 0 {
			locks.waitFor = DefaultReplicaTimeout
		}
	}
	return &Reserver{Ledger: store.Ledger(), store: store, locks: locks, q: newStepQueries(store)}, nil
}

// DDL returns the SQL that creates the schema named schema and its tables,
// for users who run their own migration tool. It is idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// maxWriteRounds bounds the transactions one Reserve runs when the stock
// moves between its read and its write (a release, an expiry or stock
// administration, which take no lock, wrote the row in between).
const maxWriteRounds = 16

// Reserve holds every line of req, or none, for req.TTL (0: the default);
// with req.Partial, as much of each line as there is, down to its Min; a
// line of a SKU with a limit per buyer within what is left of req.Buyer's
// limit. It takes the Redis locks of the request's SKUs in one script call (one per
// slot on Redis Cluster), then in one PostgreSQL transaction records the
// reservation, reads the stock, checks it and writes it back conditional on
// the fencing tokens, commits, and releases the locks. See the package
// documentation for errors and costs.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	ls, err := r.locks.acquire(ctx, skusOf(inventory.SortLines(req.Lines)))
	if err != nil {
		return inventory.Reservation{}, err
	}
	// A failed release leaves locks that expire after LockTTL; the
	// reservation stands either way.
	defer ls.releaseOnce(ctx)
	for range maxWriteRounds {
		res, err := r.store.Reserve(ctx, req, &step{ctx: ctx, r: r, lease: ls, fences: ls.fences})
		if !errors.Is(err, errStockMoved) {
			return res, err
		}
	}
	return inventory.Reservation{}, fmt.Errorf("redislock: reserve %q: %w: the stock kept changing between read and write", req.ID, inventory.ErrContended)
}

// SetStockWith sets the units on hand of sku and its settings: opts.Limit
// caps the units one buyer may hold and buy; opts.Backorder lets that many
// units be sold beyond the stock on hand (see inventory.StockOptions).
// Stock buckets are not offered: the lock of a SKU already serialises its
// buyers, and the step reads the stock row alone, so opts.Buckets above 1
// fails with inventory.ErrUnsupported, changing nothing.
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	if err := inventory.ValidateStockWith(sku, available, opts); err != nil {
		return err
	}
	if opts.Buckets > 1 {
		return fmt.Errorf("redislock: set stock of %q: %w: stock buckets (StockOptions.Buckets %d)", sku, inventory.ErrUnsupported, opts.Buckets)
	}
	return r.store.SetStockWith(ctx, sku, available, opts)
}

// Levels returns the units of sku available, held, sold and backordered,
// read in one snapshot (see inventory.Leveler).
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	return r.store.Levels(ctx, sku)
}

// Extend keeps the held reservation id for ttl from now, at most
// Options.MaxHold after it was reserved (see inventory.Extender). It takes
// no lock: it moves the expiry alone, in one statement.
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	return r.store.Extend(ctx, id, ttl)
}
