package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
)

// DB is the part of a PostgreSQL client the strategy uses. *pgxpool.Pool
// satisfies it. Flushes run concurrently (Options.Flushers), so a single
// *pgx.Conn, which serves one call at a time, does not.
type DB = pgstore.DB

// Defaults of Options.
const (
	DefaultMaxBatch     = 512
	DefaultMaxPending   = 8192
	DefaultFlushers     = 2
	DefaultFlushTimeout = 30 * time.Second
)

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
	// Retention is how long a settled reservation (Committed, Released,
	// Expired, or cancelled) is kept after it settled; then Purge (which a
	// Sweeper calls) deletes it, and its ID is unknown: idempotency on an ID
	// lasts as long as the retention. Held reservations are never purged.
	// Zero or negative keeps every reservation. Default: 0.
	Retention time.Duration

	// MaxBatch is the most calls one flush carries. Default: 512.
	MaxBatch int
	// MaxPending is the most calls that may wait for a flush; beyond it
	// Reserve, Commit, Release and ExpireDue fail at once with an error that
	// errors.Is inventory.ErrContended, changing nothing. Default: 8192.
	MaxPending int
	// Flushers is the most flushes in flight at once, each on a connection
	// of its own. A flush beside one in flight starts only once 16 calls
	// (or MaxBatch, if fewer) are queued; fewer wait for the next flush.
	// Default: 2.
	Flushers int
	// MaxWait is how long a caller that is to flush waits for more calls to
	// join its batch before it sends it, when the batch is not full. Calls
	// that arrive while a flush is in flight join the next one anyway; the
	// wait only helps when too few arrive meanwhile. Default: 0, no wait.
	MaxWait time.Duration
	// FlushTimeout bounds one flush, which carries the calls of many callers
	// and so runs on a context of its own, not any caller's. Default: 30s.
	FlushTimeout time.Duration

	// SKUDefaults are the settings SetStock gives a SKU it creates; a SKU
	// that exists keeps its own, and SetStockWith sets them for one SKU.
	// With Buckets > 1 every new SKU is split into that many stock buckets
	// (see inventory.StockOptions), which the flushes take from the
	// Reserver's home bucket first (see Home and the package
	// documentation). With a Limit every new SKU sells at most that many
	// units per buyer: the flushes decide the limit for the requests of
	// buyers on SKUs kept whole, and leave the others to be taken on their
	// own. Default: the zero value, every SKU kept whole.
	SKUDefaults inventory.StockOptions

	// Home picks the Reserver's home bucket: its flushes take the lines of
	// a SKU split into K stock buckets from bucket Home mod K first, and
	// wait only for that bucket's row, so that the flushes of processes
	// with other home buckets run at once. Give the processes that share a
	// schema different values 1..K (a replica's ordinal, say) to keep them
	// on different buckets; with values picked at random two of them may
	// share one, and then their flushes take turns on it. Zero or negative
	// picks one at random when New runs. Default: 0.
	Home int

	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves its expiry past it. Zero or negative
	// means the default. Default: 1h.
	MaxHold time.Duration
}

// Reserver keeps stock in PostgreSQL and coalesces concurrent calls into one
// transaction per flush. It is safe for concurrent use, and starts no
// goroutine: the first caller that finds a flusher slot free flushes for
// every caller queued behind it (see the package documentation).
//
// Reserve, Commit, Release and ExpireDue are batched; Cancel, Purge, Lookup,
// Available, SetStock, AddStock and Migrate come from the ledger every PostgreSQL
// strategy shares, and keep the contract documented on inventory.Reserver.
// It offers limits per buyer and partial carts: a Reserve with a Buyer is
// batched, the limit decided in the flush for SKUs kept whole; one with
// Partial is taken on its own by the shared ledger, and so are a release
// and an expiry that take units off a buyer's usage (see the package
// documentation).
type Reserver struct {
	pgstore.Ledger // Cancel, Purge, Lookup, Available, SetStock, AddStock, Migrate
	store          *pgstore.Store
	flushSQL       string
	ttl            time.Duration
	alone          pgstore.Step // a reservation a flush leaves out: a line of a SKU in buckets none has in full
	home           int32        // the flush function's p_home: the home bucket

	maxBatch, maxPending, flushers int
	splitAt                        int // queued calls that start a flush beside one in flight: min(minSplit, maxBatch)
	maxWait, flushTimeout          time.Duration

	mu       sync.Mutex
	queue    []*call
	flushing int // flusher slots taken: leaders flushing or told to

	stats counters

	lifo bool // tests only: decide a batch last call first
}

var (
	_ inventory.Strategy        = (*Reserver)(nil)
	_ inventory.MetricsReporter = (*Reserver)(nil)
	_ inventory.Purger          = (*Reserver)(nil)
	_ inventory.StockConfigurer = (*Reserver)(nil)
	_ inventory.Rebalancer      = (*Reserver)(nil)
	_ inventory.Leveler         = (*Reserver)(nil)
	_ inventory.Extender        = (*Reserver)(nil)
)

// New returns a Reserver on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema or a
// negative knob. It does not touch the database: call Migrate, or run DDL
// with your own migration tool, before use.
func New(db DB, opts *Options) (*Reserver, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	for _, k := range []struct {
		name string
		v    int64
	}{{"MaxBatch", int64(o.MaxBatch)}, {"MaxPending", int64(o.MaxPending)}, {"Flushers", int64(o.Flushers)},
		{"MaxWait", int64(o.MaxWait)}, {"FlushTimeout", int64(o.FlushTimeout)}} {
		if k.v < 0 {
			return nil, &inventory.ValidationError{Field: k.name, Reason: "negative"}
		}
	}
	store, err := pgstore.New(db, &pgstore.Options{Schema: o.Schema, DefaultTTL: o.DefaultTTL, Now: o.Now, Name: "groupcommit", Retention: o.Retention, SKUDefaults: o.SKUDefaults,
		MaxHold: o.MaxHold, Limits: true, Backorders: true, Home: o.Home})
	if err != nil {
		return nil, err
	}
	r := &Reserver{
		Ledger:       store.Ledger(),
		store:        store,
		flushSQL:     "SELECT o_kind, o_idx, o_outcome, o_sku, o_avail FROM " + store.Table(pgstore.FlushFunction) + "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		ttl:          pgstore.DefaultTTL,
		alone:        store.TakeStep(),
		home:         int32(store.Home()),
		maxBatch:     cmpOr(o.MaxBatch, DefaultMaxBatch),
		maxPending:   cmpOr(o.MaxPending, DefaultMaxPending),
		flushers:     cmpOr(o.Flushers, DefaultFlushers),
		maxWait:      o.MaxWait,
		flushTimeout: cmpOr(o.FlushTimeout, DefaultFlushTimeout),
	}
	r.splitAt = min(minSplit, r.maxBatch)
	if o.DefaultTTL > 0 {
		r.ttl = o.DefaultTTL
	}
	return r, nil
}

// minSplit is how many queued calls start a further flush beside one in
// flight (fewer when MaxBatch is smaller: a full batch never waits for a
// slot). Fewer wait for the next flush of the slot in flight, which takes
// them all: two flushes of one process take the same rows (a hot SKU's, or
// its home bucket's), so the second waits at their lock for the first's
// commit and overlaps only its round trip, while a batch halved costs the
// server a flush's fixed work more per call. With 16 buyers a process, as
// each of four processes of 64 buyers has, a process never splits its
// batch; with 64, it does as before (see "groupcommit over four processes"
// in BENCHMARKS.md).
const minSplit = 16

func cmpOr[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// DDL returns the SQL that creates the schema named schema, its tables and
// the flush function, for users who run their own migration tool. It is
// idempotent.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

// maxTakenRounds bounds the rounds of Reserve that find the ID taken and
// then do not find the reservation (its first transaction recorded it and
// deleted it again, refused).
const maxTakenRounds = 3

// Reserve holds every line of req, or none, for req.TTL (0: the default).
// It queues the request for the next flush, which decides it in arrival
// order with the others in one transaction; the flush checks the limit
// per buyer of a SKU kept whole, and counts the units against req.Buyer. A
// request with Partial, and one the flush leaves out (past the limit, a SKU
// in buckets with a limit, no Buyer on a SKU with a limit), is taken on its
// own, in one transaction, by the shared ledger's step that checks the
// limit and the buyer's usage under the row locks and sizes partial lines,
// as sqlcond takes it. See the package documentation for errors and costs.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	if req.Partial {
		return r.store.Reserve(ctx, req, r.alone)
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = r.ttl
	}
	lines := inventory.SortLines(req.Lines)
	for range maxTakenRounds {
		c := &call{kind: kindReserve, id: req.ID, lines: lines, ttl: ttl, buyer: req.Buyer}
		if err := r.submit(ctx, c); err != nil {
			return inventory.Reservation{}, err
		}
		switch c.outcome {
		case outcomeDone:
			return inventory.Reservation{ID: req.ID, Lines: lines, State: inventory.Held, ExpiresAt: c.exp, Buyer: req.Buyer}, nil
		case outcomeRefused:
			return inventory.Reservation{}, c.refusal
		case outcomeAlone:
			return r.store.Reserve(ctx, req, r.alone)
		}
		got, err := r.store.Lookup(ctx, req.ID)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		if err != nil {
			return inventory.Reservation{}, err
		}
		if err := inventory.CheckRepeat("groupcommit", got, req); err != nil {
			return inventory.Reservation{}, err
		}
		return got, nil
	}
	return inventory.Reservation{}, fmt.Errorf("groupcommit: reserve %q: the id is taken but no reservation is recorded under it", req.ID)
}

// Commit sells the units of a held reservation. A held, active reservation
// is committed in the next flush; any other (already committed, released,
// expired, overdue, unknown) is then settled on its own as the shared
// ledger does: Committed again is nil; Released or Expired an
// *inventory.StateError; an unknown ID inventory.ErrNotFound.
func (r *Reserver) Commit(ctx context.Context, id string) error {
	return r.settle(ctx, id, kindCommit, r.store.Commit)
}

// Release returns the units of a held reservation to stock, in the next
// flush; it mirrors Commit: Released again is nil; Committed or Expired an
// *inventory.StateError.
func (r *Reserver) Release(ctx context.Context, id string) error {
	return r.settle(ctx, id, kindRelease, r.store.Release)
}

func (r *Reserver) settle(ctx context.Context, id string, k kind, alone func(context.Context, string) error) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{kind: k, id: id}
	if err := r.submit(ctx, c); err != nil {
		return err
	}
	if c.outcome == outcomeDone {
		return nil
	}
	// Not held and active when the flush ran: settle it on its own, which
	// tells every other case apart.
	return alone(ctx, id)
}

// ExpireDue expires at most limit held reservations whose TTL has passed and
// returns their units, in the next flush, and reports how many it expired.
// Concurrent calls share one flush and the holds it expired. Due holds are
// claimed with FOR UPDATE SKIP LOCKED, so sweepers in many processes never
// expire one twice. The flush leaves the due holds of reservations with a
// Buyer held; a call whose flush left some, and that has expired fewer
// than limit, expires up to the rest of its limit on its own, through the
// shared ledger, which takes their units off the buyers' usage in the same
// transaction. An error then comes with the count the flush expired.
func (r *Reserver) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c := &call{kind: kindExpire, limit: limit}
	if err := r.submit(ctx, c); err != nil {
		return 0, err
	}
	if c.outcome != outcomeAlone || c.expired >= limit {
		return c.expired, nil
	}
	n, err := r.store.ExpireDue(ctx, limit-c.expired)
	return c.expired + n, err
}

// SetStockWith sets the units on hand of sku and its settings: with
// opts.Buckets > 1 its units are split evenly over that many stock buckets;
// opts.Limit caps the units one buyer may hold and buy, which the flush
// decides for a SKU kept whole (in buckets, requests are taken on their
// own);
// opts.Backorder lets that many units be sold beyond the stock on hand (see
// inventory.StockOptions and the package documentation).
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	return r.store.SetStockWith(ctx, sku, available, opts)
}

// Levels returns the units of sku available, held, sold and backordered,
// read in one snapshot (see inventory.Leveler). It reads the tables
// directly, not through a flush.
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	return r.store.Levels(ctx, sku)
}

// Extend keeps the held reservation id for ttl from now, at most
// Options.MaxHold after it was reserved (see inventory.Extender), in one
// statement of its own, not through a flush.
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	return r.store.Extend(ctx, id, ttl)
}

// Rebalance spreads the available units of sku evenly over its stock
// buckets again, safely while buyers reserve (see inventory.Rebalancer).
func (r *Reserver) Rebalance(ctx context.Context, sku string) error {
	return r.store.Rebalance(ctx, sku)
}

// Stats is a reading of a Reserver's counters since it was made.
type Stats struct {
	Flushes   int64         // flushes sent (transactions), retries included
	Calls     int64         // calls the flushes carried
	Retries   int64         // flushes sent again after the server refused one whole (deadlock, serialization)
	Contended int64         // calls turned away because MaxPending calls were waiting
	Busy      time.Duration // flush time summed over flushes
	Pending   int           // calls waiting now
	InFlight  int           // flusher slots taken now
}

// MeanBatch returns the mean number of calls per flush.
func (s Stats) MeanBatch() float64 {
	if s.Flushes == 0 {
		return 0
	}
	return float64(s.Calls) / float64(s.Flushes)
}

type counters struct {
	flushes, calls, retries, contended, busyNs atomic.Int64
}

// Stats returns the Reserver's counters.
func (r *Reserver) Stats() Stats {
	r.mu.Lock()
	pending, inFlight := len(r.queue), r.flushing
	r.mu.Unlock()
	return Stats{
		Flushes:   r.stats.flushes.Load(),
		Calls:     r.stats.calls.Load(),
		Retries:   r.stats.retries.Load(),
		Contended: r.stats.contended.Load(),
		Busy:      time.Duration(r.stats.busyNs.Load()),
		Pending:   pending,
		InFlight:  inFlight,
	}
}

// Metrics returns the Reserver's counters as inventory metrics: flushes,
// the batch size distribution (batch.size.count is the number of flushes,
// batch.size.sum the calls they carried), retries, rejected calls, time spent
// flushing, and the queue depth and flushes in flight now.
func (r *Reserver) Metrics() []inventory.Metric {
	s := r.Stats()
	return []inventory.Metric{
		{Name: "batch.size.count", Unit: "{flush}", Description: "Flushes sent, each one transaction.", Kind: inventory.Counter, Value: float64(s.Flushes)},
		{Name: "batch.size.sum", Unit: "{call}", Description: "Calls carried by the flushes.", Kind: inventory.Counter, Value: float64(s.Calls)},
		{Name: "flush.retries", Unit: "{flush}", Description: "Flushes sent again after the server refused one whole.", Kind: inventory.Counter, Value: float64(s.Retries)},
		{Name: "flush.duration.sum", Unit: "s", Description: "Time spent flushing, summed over flushes.", Kind: inventory.Counter, Value: s.Busy.Seconds()},
		{Name: "queue.rejected", Unit: "{call}", Description: "Calls turned away because the queue was full.", Kind: inventory.Counter, Value: float64(s.Contended)},
		{Name: "queue.depth", Unit: "{call}", Description: "Calls waiting for a flush.", Kind: inventory.Gauge, Value: float64(s.Pending)},
		{Name: "flush.in_flight", Unit: "{flush}", Description: "Flusher slots taken.", Kind: inventory.Gauge, Value: float64(s.InFlight)},
	}
}
