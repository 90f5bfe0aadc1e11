package redisstock

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/rediswait"
	"github.com/oversell/inventory/internal/unreach"
)

// DB is the part of a PostgreSQL client the strategy uses. *pgxpool.Pool and
// *pgx.Conn satisfy it.
type DB = pgstore.DB

// Defaults of Options.
const (
	DefaultKeyPrefix      = "inventory:"
	DefaultPendingTimeout = 30 * time.Second
	DefaultMaxBatch       = 64
)

// Options configures a Reserver. A nil *Options takes every default.
type Options struct {
	// Schema is the PostgreSQL schema of the ledger the Writer keeps. Any
	// name of 1..63 bytes without NUL is accepted; it is always quoted.
	// Default: "inventory".
	Schema string
	// KeyPrefix starts every Redis key. Processes that share stock must
	// share it, and Buckets. It may not hold '{' or '}': the strategy sets
	// the hash tags. Default: "inventory:".
	KeyPrefix string
	// Buckets is the number of hash slots the keys are spread over. With 1
	// every key shares one slot, so every call is one script on one server;
	// on Redis Cluster, more buckets spread the SKUs over the masters, and
	// carts whose lines fall into several buckets take them one by one (see
	// the package documentation). Changing it needs a Load into an empty
	// prefix. Default: 1.
	Buckets int
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock reservation expiry is measured by. Default: time.Now.
	Now func() time.Time
	// PendingTimeout is how long a cart that spans buckets may stay half
	// taken (its process died between two buckets and nobody retried) before
	// ExpireDue gives its units back. Default: 30s.
	PendingTimeout time.Duration
	// WaitReplicas, when positive, makes every call that changes Redis wait
	// (Redis WAIT, on the connection that ran the script) until that many
	// replicas have the change, for at most WaitTimeout, before it answers.
	// A call the replicas did not confirm in time fails with an
	// *inventory.OutcomeUnknownError wrapping ErrNotReplicated: the change
	// is on the primary, and a retry with the same ID settles it. It
	// narrows what a failover loses (see the package documentation); it
	// cannot be used with a Redis Cluster client. Default: 0, answer as soon
	// as the primary has the change.
	WaitReplicas int
	// WaitTimeout bounds the wait of WaitReplicas. Default: 1s.
	WaitTimeout time.Duration
	// MaxBatch is the most operations one script call carries. Operations
	// that callers make on one bucket at the same time are coalesced: while
	// one script call is in flight the next queue, and the next call takes
	// them all (see the package documentation). 1 sends every operation on
	// its own. Default: 64.
	MaxBatch int
	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves its expiry past it. Zero or negative
	// means the default. Default: 1h.
	MaxHold time.Duration
	// Retention is how long a settled reservation (Committed, Released,
	// Expired, or a tombstone of Cancel) is kept after it settled, in
	// Redis and in the ledger; then its ID is unknown, and a Reserve with
	// it is a new reservation: idempotency on an ID lasts as long as the
	// retention, as in the PostgreSQL strategies. In Redis, the script that
	// finishes a reservation (its units sold or given back, out of the due
	// set) sets the expiry of its record and hold keys in the same step
	// (PEXPIRE), on Redis's clock, not Now: Redis frees them with no
	// sweeper, and the retention counts from the moment the script ran as
	// Redis's clock has it. In PostgreSQL, Purge (which a Sweeper calls)
	// deletes them by Now, as pgstore's Purge does. Held reservations never
	// expire. Keep it far above the longest a client may retry a request
	// or settle its reservation, and above the writer's lag. Every process
	// that shares the key prefix must share it. Zero or negative keeps
	// every reservation, in Redis and in the ledger, as the PostgreSQL
	// strategies do by default. Default: 0.
	Retention time.Duration
	// SKUDefaults are the settings SetStock gives a SKU it creates; a SKU
	// that exists keeps its own, and SetStockWith sets them for one SKU.
	// With Buckets > 1 every new SKU is split into that many stock buckets
	// (see inventory.StockOptions and the package documentation); Buckets
	// above 1 with a Limit or a Backorder fails with
	// inventory.ErrUnsupported. Default: the zero value, every SKU kept
	// whole.
	SKUDefaults inventory.StockOptions
}

// DefaultWaitTimeout is the default of Options.WaitTimeout.
const DefaultWaitTimeout = time.Second

// ErrNotReplicated reports a change the primary made that fewer replicas
// than Options.WaitReplicas confirmed within Options.WaitTimeout. It comes
// wrapped in an *inventory.OutcomeUnknownError.
var ErrNotReplicated = errors.New("redisstock: change not confirmed by enough replicas")

// Reserver keeps stock, holds and reservations in Redis, changed only by one
// Lua script whose every change appends its event to a stream, and reads
// nothing from PostgreSQL on its hot path: a Writer carries the events to the
// PostgreSQL ledger. It is safe for concurrent use, and from many processes
// that share the key prefix and the number of buckets.
type Reserver struct {
	rdb     redis.UniversalClient
	store   *pgstore.Store
	prefix  string
	buckets int
	ttl     time.Duration
	pending time.Duration
	now     func() time.Time
	waitN   int
	waitFor time.Duration
	hold    time.Duration // Options.MaxHold
	keep    time.Duration // Options.Retention; 0: keep every reservation
	sweep   atomic.Uint32 // the bucket the next ExpireDue starts at

	maxBatch int
	flushers int    // batches in flight at once per bucket
	lanes    []lane // per bucket

	// hints remembers the lines of reservations reserved here, for a
	// Commit or Release in one call (see hints).
	hints *hints

	// splits remembers the stock buckets of the split SKUs seen here.
	splits   splits
	defaults inventory.StockOptions // Options.SKUDefaults

	// noHints makes Commit and Release settle and finish in two calls even
	// for reservations reserved here, as another process does. Tests only.
	noHints bool

	// script is the store's script: the package's, or in tests a
	// deliberately wrong variant of it.
	script *redis.Script

	// sendAbandoned, when set, leaves calls whose context ended while they
	// were queued in the queue, to be sent. Tests only: a deliberately wrong
	// batcher.
	sendAbandoned bool

	// unpinned makes Load and the writer's steps send each command over
	// whichever connection the pool hands out. Tests only: the store before
	// it pinned one (deliberately wrong).
	unpinned bool

	// ignoreEpoch makes the writer apply the events of a Redis whose loaded
	// marker carries another Load's epoch than the one PostgreSQL follows.
	// Tests only: the writer before it compared epochs (deliberately wrong).
	ignoreEpoch bool

	// loadNoWait makes Load commit without waiting for Options.WaitReplicas
	// replicas to have its markers. Tests only: the store before Load waited
	// (deliberately wrong).
	loadNoWait bool

	// beforeLoadStock, when set, runs in Load after the keys are wiped and
	// before the stock is written. Tests only: the client switching
	// servers there.
	beforeLoadStock func()

	// keepOrphans makes Load leave the takes PostgreSQL got without their
	// reservation as they are. Tests only: the store before redisstock_hold
	// (deliberately wrong).
	keepOrphans bool

	// noReplayGuard makes the writer write again, with a retention, a
	// reservation (and its takes) Purge deleted when a batch that wrote it
	// is applied again. Tests only: deliberately wrong.
	noReplayGuard bool

	// beforeGrant, when set, runs between the last take and the grant of a
	// cart that spans buckets. Tests only: a crash there.
	beforeGrant func(id string) error

	// noFallover makes a line refused by its stock bucket refused, however
	// many units the SKU's other buckets hold. Tests only: deliberately
	// wrong.
	noFallover bool
	// moveCut, when set, ends a move between stock buckets after the step
	// it names ("out" or "in") as a crash would; plainMove makes a move
	// two AddStocks of the buckets with no record between them, and
	// plainMoveIn adds a move's units without its token: deliberately wrong.
	moveCut     string
	plainMove   bool
	plainMoveIn bool

	// loadNoSplit makes Load leave out the k of split SKUs. Tests only:
	// deliberately wrong.
	loadNoSplit bool

	// giveToFirst makes the units given back return to bucket 0 of their
	// SKU, not to the bucket they were taken from. Tests only:
	// deliberately wrong.
	giveToFirst bool
}

var (
	_ inventory.Strategy        = (*Reserver)(nil)
	_ inventory.StockConfigurer = (*Reserver)(nil)
	_ inventory.Leveler         = (*Reserver)(nil)
	_ inventory.Extender        = (*Reserver)(nil)
	_ inventory.Rebalancer      = (*Reserver)(nil)
)

//go:embed script.lua
var scriptSrc string

var script = redis.NewScript(scriptSrc)

// New returns a Reserver on client, with its ledger in db. client may be a
// single server, Sentinel (redis.FailoverClient) or Redis Cluster
// (*redis.ClusterClient). New touches neither server: call Migrate, then
// Load, before use. It fails with an error that errors.Is
// inventory.ErrInvalidRequest for an unusable schema or key prefix, or a nil
// client.
func New(db DB, client redis.UniversalClient, opts *Options) (*Reserver, error) {
	o := pgstore.Options{Name: "redisstock"}
	if opts != nil {
		o.Retention = opts.Retention
	}
	r := &Reserver{prefix: DefaultKeyPrefix, buckets: 1, ttl: pgstore.DefaultTTL, pending: DefaultPendingTimeout, now: time.Now,
		maxBatch: DefaultMaxBatch, flushers: 2, script: script, hold: ledger.DefaultMaxHold}
	if opts != nil {
		o.Schema = opts.Schema
		if opts.KeyPrefix != "" {
			r.prefix = opts.KeyPrefix
		}
		if opts.Buckets > 0 {
			r.buckets = opts.Buckets
		}
		if opts.DefaultTTL > 0 {
			r.ttl = opts.DefaultTTL
		}
		if opts.Now != nil {
			r.now = opts.Now
		}
		if opts.PendingTimeout > 0 {
			r.pending = opts.PendingTimeout
		}
		if opts.WaitReplicas < 0 || opts.WaitTimeout < 0 {
			return nil, &inventory.ValidationError{Field: "WaitReplicas", Reason: "negative"}
		}
		r.waitN, r.waitFor = opts.WaitReplicas, cmpOr(opts.WaitTimeout, DefaultWaitTimeout)
		if opts.MaxBatch > 0 {
			r.maxBatch = opts.MaxBatch
		}
		if opts.MaxHold > 0 {
			r.hold = opts.MaxHold
		}
		r.keep = max(opts.Retention, 0)
		if opts.SKUDefaults.Buckets == 1 {
			opts.SKUDefaults.Buckets = 0
		}
		if err := inventory.ValidateStockWith("sku", 0, opts.SKUDefaults); err != nil {
			return nil, fmt.Errorf("redisstock: SKUDefaults: %w", err)
		}
		if err := refuseSplitWith(opts.SKUDefaults); err != nil {
			return nil, err
		}
		r.defaults = opts.SKUDefaults
	}
	if _, ok := client.(*redis.ClusterClient); ok && r.waitN > 0 {
		return nil, &inventory.ValidationError{Field: "WaitReplicas", Reason: "not available with a Redis Cluster client"}
	}
	r.lanes = make([]lane, r.buckets)
	if client == nil {
		return nil, &inventory.ValidationError{Field: "client", Reason: "nil"}
	}
	if err := checkPrefix(r.prefix); err != nil {
		return nil, err
	}
	store, err := pgstore.New(db, &o)
	if err != nil {
		return nil, err
	}
	r.rdb, r.store, r.hints = client, store, newHints()
	return r, nil
}

// Migrate creates or upgrades the ledger's schema in PostgreSQL (the tables
// every PostgreSQL strategy shares). It is idempotent.
func (r *Reserver) Migrate(ctx context.Context) error { return r.store.Migrate(ctx) }

// DDL returns the SQL that creates the ledger's schema, for users who run
// their own migration tool.
func DDL(schema string) (string, error) { return pgstore.DDL(schema) }

func (r *Reserver) clock() time.Time { return r.now().Truncate(time.Microsecond).UTC() }

func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

func cmpOr(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// reads are the operations that change nothing: they never wait for
// replicas.
var reads = map[string]bool{"lookup": true, "avail": true, "due": true, "mvread": true}

// exec runs one operation of the script, on its own, and returns its reply
// as strings.
func (r *Reserver) exec(ctx context.Context, keys []string, args ...any) ([]string, error) {
	return r.execOn(ctx, r.rdb, keys, args...)
}

// execOn is exec on the client c (a pinned connection, see pin).
func (r *Reserver) execOn(ctx context.Context, c redis.Cmdable, keys []string, args ...any) ([]string, error) {
	op, _ := args[0].(string)
	v, err := r.evalOn(ctx, c, !reads[op], keys, args)
	if err != nil {
		return nil, err
	}
	return strs(v, keys[0])
}

// eval runs the script once; a call that may change Redis waits for
// Options.WaitReplicas replicas.
func (r *Reserver) eval(ctx context.Context, writes bool, keys []string, args []any) (any, error) {
	return r.evalOn(ctx, r.rdb, writes, keys, args)
}

func (r *Reserver) evalOn(ctx context.Context, c redis.Cmdable, writes bool, keys []string, args []any) (any, error) {
	if writes && r.waitN > 0 {
		return r.runReplicated(ctx, c, keys, args)
	}
	return r.script.Run(ctx, c, keys, args...).Result()
}

// pin returns a client whose every command goes over one connection, and
// its release. Load and each step of a writer run on one, so that all they
// read and write is on one server: a failover client that follows a switch
// of masters may hold connections to the old master and the new one at
// once (both answer as masters until Sentinel turns the old one into a
// replica), and a Load or a step whose commands were spread over both
// would rebuild half of one and mark the other, or check the events of one
// history against the position of another. A Cluster client routes each
// command by slot, and one bucket's keys share a slot: it is returned as
// it is, as is any client without Conn.
func (r *Reserver) pin() (redis.Cmdable, func()) {
	c, ok := r.rdb.(interface{ Conn() *redis.Conn }) // *redis.Client, of one server or a failover one
	if !ok || r.unpinned {
		return r.rdb, func() {}
	}
	conn := c.Conn()
	return conn, func() { _ = conn.Close() }
}

// strs turns the reply of one operation into strings; the reply of a
// bucket without its loaded marker (mk) into a *NotLoadedError.
func strs(v any, mk string) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		if err, ok := v.(error); ok {
			return nil, err
		}
		return nil, fmt.Errorf("redisstock: unexpected script reply %T", v)
	}
	out := make([]string, len(list))
	for i, x := range list {
		switch x := x.(type) {
		case string:
			out[i] = x
		case int64:
			out[i] = strconv.FormatInt(x, 10)
		case nil:
		default:
			return nil, fmt.Errorf("redisstock: unexpected script reply element %T", x)
		}
	}
	if len(out) > 0 && out[0] == "nl" {
		return nil, &NotLoadedError{Key: mk}
	}
	return out, nil
}

// runReplicated runs the script and WAIT in one pipeline, so that both go
// over one connection and WAIT counts the replicas that have the script's
// change.
func (r *Reserver) runReplicated(ctx context.Context, c redis.Cmdable, keys []string, args []any) (any, error) {
	run, n, err := rediswait.Run(ctx, c, r.script, keys, args, r.waitN, r.waitFor)
	if err != nil {
		return nil, err
	}
	if n < int64(r.waitN) {
		return nil, fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, n, r.waitN, r.waitFor)
	}
	return run.Val(), nil
}

// fail classifies the error of a call that may have changed something. A
// refused dial or a server's error reply changed nothing; a connection that
// failed after the script was sent leaves the outcome unknown.
func fail(op, id string, err error) error {
	var nl *NotLoadedError
	var re redis.Error
	var ns *notSentError
	switch {
	case errors.As(err, &ns):
		return ns.err
	case errors.As(err, &nl):
		return err
	case unreachable(err):
		return &inventory.UnavailableError{Op: op, Server: "redis", Err: err}
	case errors.As(err, &re) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("redisstock: %s %q: %w", op, id, err)
	}
	return &inventory.OutcomeUnknownError{Op: op, ID: id, Err: err}
}

// failRead classifies the error of a call that changes nothing.
func failRead(op, name string, err error) error {
	var nl *NotLoadedError
	var ns *notSentError
	switch {
	case errors.As(err, &ns):
		return ns.err
	case errors.As(err, &nl):
		return err
	case unreachable(err):
		return &inventory.UnavailableError{Op: op, Server: "redis", Err: err}
	}
	err = fmt.Errorf("redisstock: %s %q: %w", op, name, err)
	if u := unreach.Lost(op, unreach.Redis, err); u != nil {
		return u // a read whose connection broke: nothing changed
	}
	return err
}

// unreachable reports an error of a connection that could not be made, so
// nothing was sent.
func unreachable(err error) bool { return unreach.RedisErr(err) }

// parseRecord reads a record reply: kind, state, attempt, exp, created, n,
// then sku, qty pairs, then the buyer and partial ("1").
func parseRecord(id string, rep []string) (inventory.Reservation, int64, error) {
	if len(rep) < 6 {
		return inventory.Reservation{}, 0, fmt.Errorf("redisstock: short record reply %q", rep)
	}
	st, _ := strconv.Atoi(rep[1])
	at, _ := strconv.ParseInt(rep[2], 10, 64)
	exp, _ := strconv.ParseInt(rep[3], 10, 64)
	n, _ := strconv.Atoi(rep[5])
	if len(rep) < 6+2*n {
		return inventory.Reservation{}, 0, fmt.Errorf("redisstock: short record reply %q", rep)
	}
	res := inventory.Reservation{ID: id, State: inventory.State(st), ExpiresAt: time.UnixMicro(exp).UTC()}
	for i := range n {
		q, _ := strconv.ParseInt(rep[7+2*i], 10, 64)
		res.Lines = append(res.Lines, inventory.Line{SKU: rep[6+2*i], Qty: q})
	}
	if len(rep) >= 8+2*n {
		res.Buyer, res.Partial = rep[6+2*n], rep[7+2*n] == "1"
	}
	return res, at, nil
}

// lineArgs appends n and the sku, qty pairs of lines to args.
func lineArgs(args []any, lines []inventory.Line) []any {
	args = append(args, len(lines))
	for _, l := range lines {
		args = append(args, l.SKU, l.Qty)
	}
	return args
}

// askArgs appends to args what req asks beyond its lines, as the script's
// ask reads it: nothing for a request without a buyer or Partial (the hot
// path pays nothing for them), else the buyer, the partial flag and, with
// Partial, each line's Min.
func askArgs(args []any, req inventory.Request, lines []inventory.Line) []any {
	if req.Buyer == "" && !req.Partial {
		return args
	}
	if !req.Partial {
		return append(args, req.Buyer, "0")
	}
	args = append(args, req.Buyer, "1")
	for _, l := range lines {
		args = append(args, l.Min)
	}
	return args
}

// usageKeys appends, for a reservation of a buyer, the usage keys of lines
// to keys: the script counts the buyer's units of a SKU with a limit there,
// in the SKU's bucket.
func (r *Reserver) usageKeys(keys []string, buyer string, lines []inventory.Line) []string {
	if buyer == "" {
		return keys
	}
	for _, l := range lines {
		keys = append(keys, r.usageKey(l.SKU))
	}
	return keys
}

// refusal turns a refused line ({'short', k, available}, {'unknown', k}
// or {'limit', k, limit, usage}) into the inventory error, or returns nil
// for any other reply. buyer is the request's.
func refusal(rep []string, lines []inventory.Line, buyer string) error {
	if len(rep) < 2 || (rep[0] != "short" && rep[0] != "unknown" && rep[0] != "limit") {
		return nil
	}
	k, _ := strconv.Atoi(rep[1])
	if k < 1 || k > len(lines) {
		return fmt.Errorf("redisstock: refusal of line %d of %d", k, len(lines))
	}
	l := lines[k-1]
	switch {
	case rep[0] == "unknown":
		return &inventory.UnknownSKUError{SKU: l.SKU}
	case rep[0] == "limit" && len(rep) >= 4:
		lim, _ := strconv.ParseInt(rep[2], 10, 64)
		had, _ := strconv.ParseInt(rep[3], 10, 64)
		return &inventory.LimitError{SKU: l.SKU, Buyer: buyer, Limit: lim, Had: had}
	}
	avail, _ := strconv.ParseInt(rep[2], 10, 64)
	return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: avail}
}

// maxRounds bounds the attempts of a Reserve that meets another submission
// of the same ID half way.
const maxRounds = 4

// Reserve holds every line of req, or none, for req.TTL (0: the default).
// A cart whose lines and reservation record share one bucket is one script
// call; any other takes its buckets one by one (see the package
// documentation), and nobody sees it before the last step grants it. A
// line of a SKU with a limit per buyer is checked against the buyer's
// usage in the script that takes it (*inventory.LimitError); with
// req.Partial each line holds what it can, down to its Min, and the
// reservation's lines say what was held. It fails with a *NotLoadedError
// while Redis lacks the store's data.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = r.ttl
	}
	now := r.clock()
	exp := now.Add(ttl)
	lines := r.place(req.ID, inventory.SortLines(req.Lines))
	for range maxFallovers {
		res, err := r.reserveLines(ctx, req, lines, now, exp)
		if err == nil {
			res.Lines = externalLines(res.Lines)
			return res, nil
		}
		if lines, err = r.fallover(ctx, req, lines, err); err != nil {
			return inventory.Reservation{}, err
		}
	}
	return inventory.Reservation{}, fmt.Errorf("redisstock: reserve %q: %w: buyers keep emptying the stock buckets it falls over to", req.ID, inventory.ErrContended)
}

// reserveLines reserves lines, each naming the stock (a SKU, or one of its
// buckets) it is taken from.
func (r *Reserver) reserveLines(ctx context.Context, req inventory.Request, lines []inventory.Line, now, exp time.Time) (inventory.Reservation, error) {
	gs := r.groups(lines)
	rb := r.bucket(req.ID)
	if len(gs) == 1 && gs[0].bucket == rb {
		return r.reserveOne(ctx, req, lines, now, exp)
	}
	for range maxRounds {
		res, again, err := r.reserveMany(ctx, req, lines, gs, now, exp)
		if !again {
			return res, err
		}
	}
	return inventory.Reservation{}, fmt.Errorf("redisstock: reserve %q: %w: another submission of the id is half way", req.ID, inventory.ErrContended)
}

// reserveOne reserves a cart whose keys are all in one bucket: one call.
func (r *Reserver) reserveOne(ctx context.Context, req inventory.Request, lines []inventory.Line, now, exp time.Time) (inventory.Reservation, error) {
	id := req.ID
	b := r.bucket(id)
	keys := []string{r.marker(b), r.stream(b), r.recordKey(id), r.dueKey(b), r.holdKey(b, id)}
	for _, l := range lines {
		keys = append(keys, r.stockKey(l.SKU))
	}
	keys = r.usageKeys(keys, req.Buyer, lines)
	rep, err := r.run(ctx, b, keys, askArgs(lineArgs([]any{"reserve", id, micros(now), micros(exp)}, lines), req, lines)...)
	if err != nil {
		return inventory.Reservation{}, fail("reserve", id, err)
	}
	var res inventory.Reservation
	if rep[0] == "new" && (len(rep) == 1 || req.Partial && len(rep) == 1+len(lines)) {
		// Reserved now, as asked: the reply carries nothing more, or with
		// Partial the units each line holds.
		res = inventory.Reservation{ID: id, State: inventory.Held, ExpiresAt: time.UnixMicro(exp.UnixMicro()).UTC(), Lines: heldLines(lines, rep[1:]),
			Buyer: req.Buyer, Partial: req.Partial}
	} else {
		res, err = r.reserved(req, rep, lines)
	}
	if err == nil {
		r.hints.put(id, slices.Clone(res.Lines), req.Buyer)
	}
	return res, err
}

// heldLines returns lines (without their Min) holding the units held, as
// decimal strings in line order; lines as they are when held is empty.
func heldLines(lines []inventory.Line, held []string) []inventory.Line {
	out := make([]inventory.Line, len(lines))
	for i, l := range lines {
		out[i] = inventory.Line{SKU: l.SKU, Qty: l.Qty}
		if i < len(held) && held[i] != "" {
			if q, err := strconv.ParseInt(held[i], 10, 64); err == nil {
				out[i].Qty = q
			}
		}
	}
	return out
}

// reserved turns the reply of reserve or begin into Reserve's answer: a
// record found under the ID answers a repeat of the request that made it
// (inventory.CheckRepeat).
func (r *Reserver) reserved(req inventory.Request, rep []string, lines []inventory.Line) (inventory.Reservation, error) {
	id := req.ID
	if err := refusal(rep, lines, req.Buyer); err != nil {
		return inventory.Reservation{}, err
	}
	switch rep[0] {
	case "new":
		res, _, err := parseRecord(id, rep)
		return res, err
	case "done":
		res, _, err := parseRecord(id, rep)
		if err != nil {
			return res, err
		}
		if err := inventory.CheckRepeat("redisstock", externalRes(res), req); err != nil {
			return inventory.Reservation{}, err
		}
		return res, nil
	case "conflict":
		return inventory.Reservation{}, fmt.Errorf("redisstock: reserve %q: %w", id, inventory.ErrConflict)
	case "cancelled":
		return inventory.Reservation{}, fmt.Errorf("redisstock: reserve %q: %w", id, inventory.ErrCancelled)
	case "pending", "stale", "busy":
		return inventory.Reservation{}, fmt.Errorf("redisstock: reserve %q: %w: another submission of the id is half way", id, inventory.ErrContended)
	}
	return inventory.Reservation{}, fmt.Errorf("redisstock: reserve %q: unexpected reply %q", id, rep)
}

// reserveMany runs one attempt of the protocol for a cart that spans
// buckets: begin (a pending record), take each bucket's lines in SKU order,
// grant. On refusal it aborts the record first, so that no duplicate can
// grant it any more, then undoes what it took. again asks for another round.
func (r *Reserver) reserveMany(ctx context.Context, req inventory.Request, lines []inventory.Line, gs []group, now, exp time.Time) (_ inventory.Reservation, again bool, _ error) {
	id, buyer := req.ID, req.Buyer
	rb := r.bucket(id)
	args := lineArgs([]any{"begin", id, micros(now), micros(exp), micros(now.Add(r.pending))}, lines)
	if buyer != "" || req.Partial {
		args = append(args, buyer, map[bool]string{false: "0", true: "1"}[req.Partial])
	}
	rep, err := r.run(ctx, rb, []string{r.marker(rb), r.recordKey(id), r.dueKey(rb)}, args...)
	if err != nil {
		return inventory.Reservation{}, false, fail("reserve", id, err)
	}
	switch rep[0] {
	case "new", "pending":
	case "busy": // an aborted attempt not yet undone: finish it, then try again
		old, at, perr := parseRecord(id, rep)
		if perr != nil {
			return inventory.Reservation{}, false, perr
		}
		if err := r.finish(ctx, "undo", id, at, old.Lines, old.Buyer); err != nil {
			return inventory.Reservation{}, false, fail("reserve", id, err)
		}
		return inventory.Reservation{}, true, nil
	default:
		res, err := r.reserved(req, rep, lines)
		return res, false, err
	}
	res, at, err := parseRecord(id, rep)
	if err != nil {
		return inventory.Reservation{}, false, err
	}
	vs := make([]string, len(lines))
	held := make([]string, len(lines))
	counted := []byte(strings.Repeat("0", len(lines)))
	for _, g := range gs {
		keys := r.usageKeys(r.groupKeys(g.bucket, id, g.lines), buyer, g.lines)
		rep, err := r.run(ctx, g.bucket, keys, askArgs(lineArgs([]any{"take", id, at}, g.lines), req, g.lines)...)
		if err != nil {
			// The take may or may not have run: abort and undo every bucket
			// (an undo of a take that never ran leaves a tombstone).
			return r.compensate(ctx, id, at, lines, buyer, fail("reserve", id, err))
		}
		if rerr := refusal(rep, g.lines, buyer); rerr != nil {
			return r.compensate(ctx, id, at, lines, buyer, rerr)
		}
		if rep[0] == "stale" {
			res, again, err := r.compensate(ctx, id, at, lines, buyer, nil)
			return res, again || err == nil, err
		}
		if len(rep) < 2 {
			return r.compensate(ctx, id, at, lines, buyer, fmt.Errorf("redisstock: reserve %q: take replied %q", id, rep))
		}
		for i, v := range strings.Split(rep[1], ",") {
			if i < len(g.idx) {
				vs[g.idx[i]] = v
			}
		}
		if len(rep) >= 4 {
			if rep[2] != "" {
				for i, q := range strings.Split(rep[2], ",") {
					if i < len(g.idx) {
						held[g.idx[i]] = q
					}
				}
			}
			for i := 0; i < len(rep[3]) && i < len(g.lines); i++ {
				counted[g.idx[i]] = rep[3][i]
			}
		}
	}
	if r.beforeGrant != nil {
		if err := r.beforeGrant(id); err != nil {
			return inventory.Reservation{}, false, err
		}
	}
	res.Lines = heldLines(lines, held)
	heldArg := ""
	if req.Partial {
		qs := make([]string, len(res.Lines))
		for i, l := range res.Lines {
			qs[i] = strconv.FormatInt(l.Qty, 10)
		}
		heldArg = strings.Join(qs, ",")
	}
	rep, err = r.run(ctx, rb, []string{r.marker(rb), r.stream(rb), r.recordKey(id), r.dueKey(rb)}, "grant", id, at, strings.Join(vs, ","), heldArg, string(counted))
	if err != nil {
		// The grant may have run: never undo; a retry with the same ID
		// finds it granted, or still pending and completes it.
		return inventory.Reservation{}, false, fail("reserve", id, err)
	}
	if rep[0] == "gone" { // aborted meanwhile (a sweep, a duplicate's refusal)
		return inventory.Reservation{}, true, nil
	}
	if rep[0] == "ok" && len(rep) >= 6 {
		// Granted, here or by a duplicate submission: the record says what
		// is held.
		got, _, err := parseRecord(id, rep)
		return got, false, err
	}
	res.State = inventory.Held
	return res, false, nil
}

// inBucket reports whether every line's SKU lives in bucket b.
func (r *Reserver) inBucket(b int, lines []inventory.Line) bool {
	for _, l := range lines {
		if r.skuBucket(l.SKU) != b {
			return false
		}
	}
	return len(lines) > 0
}

// groupKeys returns the keys of the take, undo and give operations on one
// bucket's lines: marker, stream, hold, stock keys.
func (r *Reserver) groupKeys(b int, id string, lines []inventory.Line) []string {
	keys := []string{r.marker(b), r.stream(b), r.holdKey(b, id)}
	for _, l := range lines {
		keys = append(keys, r.stockKey(l.SKU))
	}
	return keys
}

// compensateTimeout bounds the compensation of a refused or failed attempt,
// which runs even when the caller's context has ended.
const compensateTimeout = 5 * time.Second

// compensate aborts attempt at of id and undoes its holds, then returns
// cause. When the record turns out granted (by a duplicate submission) it
// undoes nothing and returns the reservation. When the compensation itself
// fails the outcome is unknown: the record stays pending and ExpireDue
// undoes it after PendingTimeout, unless a retry completes it first.
func (r *Reserver) compensate(ctx context.Context, id string, at int64, lines []inventory.Line, buyer string, cause error) (inventory.Reservation, bool, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
	defer cancel()
	rb := r.bucket(id)
	rep, err := r.run(cctx, rb, []string{r.marker(rb), r.recordKey(id), r.dueKey(rb)}, "abort", id, at, micros(r.clock()))
	if err != nil {
		return inventory.Reservation{}, false, &inventory.OutcomeUnknownError{Op: "reserve", ID: id, Err: errors.Join(cause, err)}
	}
	if rep[0] != "nf" {
		res, rat, perr := parseRecord(id, rep)
		if perr != nil {
			return inventory.Reservation{}, false, perr
		}
		if rat == at && res.State >= inventory.Held && res.State <= inventory.Expired {
			return res, false, nil // a duplicate submission granted it
		}
		if rat != at {
			return inventory.Reservation{}, true, nil // a newer attempt owns the record
		}
	}
	if err := r.finish(cctx, "undo", id, at, lines, buyer); err != nil {
		return inventory.Reservation{}, false, &inventory.OutcomeUnknownError{Op: "reserve", ID: id, Err: errors.Join(cause, err)}
	}
	return inventory.Reservation{}, false, cause
}

// finish gives back (op "give"), undoes (op "undo") or sells (op "sell",
// for a commit) the holds of attempt at of id in every bucket of its lines,
// then takes id out of the due set. Each is idempotent, so a sweep may
// finish what a caller started. For a reservation of a buyer, the usage
// keys of the lines go with them: a give or an undo takes the units the
// hold counted off the buyer's usage in the same script.
func (r *Reserver) finish(ctx context.Context, op, id string, at int64, lines []inventory.Line, buyer string) error {
	if r.giveToFirst && op == "give" {
		lines = externalLines(lines)
	}
	rb := r.bucket(id)
	gs := r.groups(lines)
	if len(gs) == 1 && gs[0].bucket == rb {
		// The record and the lines share a bucket: one call does both.
		keys := []string{r.marker(rb), r.stream(rb), r.holdKey(rb, id), r.dueKey(rb)}
		for _, l := range lines {
			keys = append(keys, r.stockKey(l.SKU))
		}
		keys = append(keys, r.recordKey(id)) // which may keep the hold itself
		keys = r.usageKeys(keys, buyer, lines)
		_, err := r.run(ctx, rb, keys, r.retention(lineArgs([]any{op + "+done", id, at}, lines))...)
		return err
	}
	for _, g := range gs {
		keys := r.usageKeys(r.groupKeys(g.bucket, id, g.lines), buyer, g.lines)
		if _, err := r.run(ctx, g.bucket, keys, r.retention(lineArgs([]any{op, id, at}, g.lines))...); err != nil {
			return err
		}
	}
	keys := []string{r.marker(rb), r.dueKey(rb)}
	if r.keep > 0 {
		keys = append(keys, r.recordKey(id))
	}
	_, err := r.run(ctx, rb, keys, r.retention([]any{"done", id})...)
	return err
}

// Commit sells the units of a held reservation. It is idempotent; commit
// after release or expiry fails with an *inventory.StateError, an unknown ID
// with inventory.ErrNotFound. A hold past its TTL is expired now.
func (r *Reserver) Commit(ctx context.Context, id string) error {
	return r.settle(ctx, "commit", id, inventory.Committed)
}

// Release returns the units of a held reservation to stock. It is
// idempotent; release after commit or expiry fails with an
// *inventory.StateError, an unknown ID with inventory.ErrNotFound.
func (r *Reserver) Release(ctx context.Context, id string) error {
	return r.settle(ctx, "release", id, inventory.Released)
}

func (r *Reserver) settle(ctx context.Context, op, id string, to inventory.State) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	kind, res, err := r.sweepOne(ctx, "settle", id, int(to))
	if err != nil {
		return fail(op, id, err)
	}
	switch {
	case kind == "nf":
		return fmt.Errorf("redisstock: %s %q: %w", op, id, inventory.ErrNotFound)
	case res.State != to:
		return &inventory.StateError{ID: id, Op: op, State: res.State}
	}
	return nil
}

// Cancel releases a held reservation, or records an ID never seen as
// cancelled (a tombstone, streamed to the ledger like any reservation), so
// that a later Reserve with it fails with inventory.ErrCancelled. A cart
// still being taken by another call is aborted for good and its holds
// undone first; that Reserve then fails with inventory.ErrCancelled. It is
// idempotent; cancel after commit fails with an *inventory.StateError.
func (r *Reserver) Cancel(ctx context.Context, id string) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for range maxRounds {
		kind, res, err := r.sweepOne(ctx, "cancel", id, 0)
		if err != nil {
			return fail("cancel", id, err)
		}
		switch {
		case kind == "undo":
			continue // the aborted attempt's holds are undone: write the tombstone
		case res.State == inventory.Committed:
			return &inventory.StateError{ID: id, Op: "cancel", State: res.State}
		}
		return nil
	}
	return fmt.Errorf("redisstock: cancel %q: %w: another submission of the id is half way", id, inventory.ErrContended)
}

// sweepOne runs settle (to: the state wanted), cancel or sweep (to 0) on id and
// finishes what its reply asks: give the units back, or undo the holds of
// an abandoned attempt. Once sent, it runs to the end whatever becomes of
// ctx's cancellation (bounded by compensateTimeout), so that a cancelled
// caller does not leave a settled reservation's units behind; only a
// failing server does, and then the next ExpireDue gives them back.
func (r *Reserver) sweepOne(ctx context.Context, op, id string, to int) (string, inventory.Reservation, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
	defer cancel()
	rb := r.bucket(id)
	keys := []string{r.marker(rb), r.stream(rb), r.recordKey(id), r.dueKey(rb)}
	args := []any{op, id, to, r.clock().UnixMicro()}
	if op == "settle" && !r.noHints {
		// Lines this process reserved under id, all in the record's
		// bucket: settle and finish in one call. The script checks them
		// against the record.
		if h, ok := r.hints.take(id); ok && r.inBucket(rb, h.lines) {
			keys = append(keys, r.holdKey(rb, id))
			for _, l := range h.lines {
				keys = append(keys, r.stockKey(l.SKU))
			}
			// The usage keys of a buyer's lines: the give takes the units
			// it counted off the usage in the same call.
			keys = r.usageKeys(keys, h.buyer, h.lines)
			args = lineArgs([]any{"settle1", id, to, args[3]}, h.lines)
		}
	}
	rep, err := r.run(ctx, rb, keys, r.retention(args)...)
	if err != nil {
		return "", inventory.Reservation{}, err
	}
	if rep[0] == "nf" {
		return "nf", inventory.Reservation{}, nil
	}
	res, at, err := parseRecord(id, rep)
	if err != nil {
		return "", res, err
	}
	switch rep[0] {
	case "give+", "expired+", "sell+", "undo+": // finished in the same call
		return strings.TrimSuffix(rep[0], "+"), res, nil
	case "give", "expired":
		err = r.finish(ctx, "give", id, at, res.Lines, res.Buyer)
	case "sell":
		err = r.finish(ctx, "sell", id, at, res.Lines, res.Buyer)
	case "undo":
		err = r.finish(ctx, "undo", id, at, res.Lines, res.Buyer)
	}
	return rep[0], res, err
}

// retention appends the retention in milliseconds to the arguments of an
// operation that may finish a reservation (see script.lua's Retention), or
// nothing without one.
func (r *Reserver) retention(args []any) []any {
	if r.keep <= 0 {
		return args
	}
	return append(args, max(r.keep.Milliseconds(), 1))
}

// maxSweepPages bounds the pages of one bucket's due set one ExpireDue reads.
const maxSweepPages = 8

// ExpireDue expires at most limit held reservations whose TTL has passed and
// gives their units back; on the way it finishes releases and expiries a
// crashed process left half done, and undoes carts left half taken for
// PendingTimeout. Sweepers in many processes never expire a hold twice.
func (r *Reserver) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := r.clock().UnixMicro()
	start := int(r.sweep.Add(1))
	n := 0
	for i := range r.buckets {
		b := (start + i) % r.buckets
		// Entries another sweeper is finishing stay in the due set until it
		// is done: read again while a full page comes back, a few times.
		for range maxSweepPages {
			ids, err := r.run(ctx, b, []string{r.marker(b), r.dueKey(b)}, "due", now, limit)
			if err != nil {
				return n, failRead("expire", "", err)
			}
			for _, id := range ids {
				if n >= limit {
					return n, nil
				}
				if err := ctx.Err(); err != nil {
					return n, err
				}
				if tok, ok := strings.CutPrefix(id, moveMember); ok {
					// A move between stock buckets cut off part way.
					if err := r.finishMove(ctx, b, tok); err != nil {
						return n, fail("expire", "", err)
					}
					continue
				}
				kind, _, err := r.sweepOne(ctx, "sweep", id, 0)
				if err != nil {
					return n, fail("expire", id, err)
				}
				if kind == "expired" {
					n++
				}
			}
			if len(ids) < limit || n >= limit {
				break
			}
		}
	}
	return n, nil
}

// Lookup returns the reservation recorded under id, or inventory.ErrNotFound.
// A cart still being taken is not found until it is granted.
func (r *Reserver) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	if err := inventory.ValidateID(id); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	x, err := r.lookup(ctx, id)
	return externalRes(x.Reservation), err
}

// lookup is Lookup, with the attempt of the reservation's takes and when
// it was created.
func (r *Reserver) lookup(ctx context.Context, id string) (redisRes, error) {
	rb := r.bucket(id)
	rep, err := r.run(ctx, rb, []string{r.marker(rb), r.recordKey(id)}, "lookup")
	if err != nil {
		return redisRes{}, failRead("lookup", id, err)
	}
	if rep[0] == "nf" {
		return redisRes{}, fmt.Errorf("redisstock: lookup %q: %w", id, inventory.ErrNotFound)
	}
	res, at, err := parseRecord(id, rep)
	cr, _ := strconv.ParseInt(rep[4], 10, 64) // parseRecord checked the length
	return redisRes{res, at, time.UnixMicro(cr).UTC()}, err
}

// Available returns the units of sku that can still be reserved.
func (r *Reserver) Available(ctx context.Context, sku string) (int64, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// A split SKU: the sum of its buckets (see bucketUnits).
	_, avail, err := r.bucketUnits(ctx, sku)
	if err != nil {
		return 0, err
	}
	return total(avail), nil
}

// SetStock sets the available units of sku, creating the SKU if it is new.
// Units held or sold are not affected. A retry of a call whose reply was
// lost sets the same number again.
func (r *Reserver) SetStock(ctx context.Context, sku string, available int64) error {
	if err := inventory.ValidateStock(sku, available); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.defaults != (inventory.StockOptions{}) {
		// A SKU it creates gets Options.SKUDefaults.
		if _, _, err := r.avail(ctx, sku); errors.Is(err, inventory.ErrUnknownSKU) {
			return r.SetStockWith(ctx, sku, available, r.defaults)
		} else if err != nil {
			return fail("set stock", sku, err)
		}
	}
	b := r.bucket(sku)
	rep, err := r.run(ctx, b, []string{r.marker(b), r.stream(b), r.stockKey(sku)}, "stock", sku, available)
	if err != nil {
		return fail("set stock", sku, err)
	}
	if rep[0] == "split" {
		return r.setSplit(ctx, sku, available, parseK(rep, 1))
	}
	return nil
}

// AddStock adds delta units (negative to remove) to sku and returns the new
// available number; it never drives it below zero. Each call carries a token
// of its own, so a retry of a call whose reply was lost adds nothing twice.
func (r *Reserver) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	if err := inventory.ValidateDelta(sku, delta); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b := r.bucket(sku)
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	keys := []string{r.marker(b), r.stream(b), r.stockKey(sku), r.key(b, "o:"+hex.EncodeToString(tok))}
	rep, err := r.run(ctx, b, keys, "add", sku, delta, int64(inventory.MaxStock))
	if err != nil {
		return 0, fail("add stock", sku, err)
	}
	switch rep[0] {
	case "unknown":
		return 0, &inventory.UnknownSKUError{SKU: sku}
	case "short":
		avail, _ := strconv.ParseInt(rep[1], 10, 64)
		return 0, &inventory.InsufficientStockError{SKU: sku, Requested: -delta, Available: avail}
	case "over":
		avail, _ := strconv.ParseInt(rep[1], 10, 64)
		return 0, &inventory.ValidationError{Field: "delta", Reason: fmt.Sprintf("available would be %d, over %d", avail+delta, int64(inventory.MaxStock))}
	case "split":
		return r.addSplit(ctx, sku, delta)
	}
	return strconv.ParseInt(rep[1], 10, 64)
}
