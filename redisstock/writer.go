package redisstock

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// WriterOptions configures a Writer. A nil *WriterOptions takes every
// default.
type WriterOptions struct {
	// Consumer names this writer in each stream's consumer group. Writers
	// running at once need names of their own. Default: random.
	Consumer string
	// BatchSize is the most events one PostgreSQL transaction applies.
	// Default: 512.
	BatchSize int
	// Poll is how long a read waits for new events before the writer looks
	// at its own unfinished entries and other writers' idle ones again.
	// Default: 100ms.
	Poll time.Duration
	// ClaimIdle is how long an entry another writer read but did not
	// acknowledge stays with it before this writer claims it (XAUTOCLAIM):
	// longer than any batch takes. Default: 30s.
	ClaimIdle time.Duration
	// MaxFailures is how many times an event may fail to apply before it is
	// moved to the bucket's dead-letter stream, with an error logged.
	// Default: 5.
	MaxFailures int
	// Linger is how long a writer that read fewer than BatchSize events of
	// a bucket waits before it reads the bucket again, so that under load
	// each transaction carries many events instead of a few: it trades up
	// to Linger of lag for much less PostgreSQL and Redis work per event.
	// Default: 10ms.
	Linger time.Duration
	// MaxWait is how long an event whose takes have not reached PostgreSQL
	// yet (they travel in another bucket's stream) waits for them before it
	// counts as failing. Default: 1m.
	MaxWait time.Duration
	// Logger receives dead letters and errors, never a record per event.
	// Default: nil, which logs nothing.
	Logger *slog.Logger
}

// Writer applies the events of the store's streams to the PostgreSQL ledger
// (the stock, reservation and reservation_line tables every PostgreSQL
// strategy shares), in batches of one transaction each, and acknowledges an
// entry only once its transaction has committed. Any number of writers, in
// any number of processes, may run at once: they share each stream through
// one consumer group, and applying an event twice, or events out of order,
// changes nothing more than applying it once, in order:
//
//   - a stock event carries the SKU's available units and version after the
//     change; the row takes it only if its version (the fence column) is
//     older;
//   - a reservation event carries the whole reservation; it is inserted if
//     new, and its state moves only from held to a final state. It is
//     applied only once PostgreSQL has the stock versions its takes left
//     (they may come through other buckets' streams), so that PostgreSQL
//     never counts a hold whose units it still counts as available.
//
// A Writer implements inventory.MetricsReporter: its lag, batches, events
// and dead letters.
type Writer struct {
	r        *Reserver
	consumer string
	batch    int
	poll     time.Duration
	idle     time.Duration
	maxFail  int
	maxWait  time.Duration
	linger   time.Duration
	log      *slog.Logger
	q        writerQueries

	lag      []atomic.Int64 // per bucket, last read
	maxLag   atomic.Int64
	batches  atomic.Int64
	events   atomic.Int64
	dead     atomic.Int64
	failed   atomic.Int64
	wentBack atomic.Int64

	// Tests only: beforeCommit runs before each batch's transaction,
	// afterCommit after its COMMIT and before its acknowledgement, and
	// ackFirst acknowledges a batch before it commits (deliberately wrong).
	beforeCommit func()
	afterCommit  func()
	ackFirst     bool

	// Per bucket: whether entries this writer read may still be
	// unacknowledged (it reads its own pending entries first then), and
	// when it last claimed other writers' idle entries (unix ns).
	ownPending []atomic.Bool
	lastClaim  []atomic.Int64

	// guard: with a retention, the writer writes no reservation, nor a
	// take, whose retention has passed and that the ledger lacks (see
	// NewWriter).
	guard bool

	// ignoreSeq makes the writer apply events without checking the
	// bucket's sequence. Tests only: the writer before it kept one
	// (deliberately wrong).
	ignoreSeq bool

	mu    sync.Mutex
	fails map[string]int       // entry ID -> failed applications
	seen  map[string]time.Time // entry ID -> first time it had to wait
}

var _ inventory.MetricsReporter = (*Writer)(nil)

type writerQueries struct {
	stock, reserve, lines, holds string
	// backorder keeps the backorder a stock event of SetStock, SetStockWith
	// or AddStock carries.
	backorder string
	// forget deletes the settled reservations a new one takes the ID of
	// (see Reserver.forgetSQL).
	forget string
	// The bucket's sequence: its row, the check that refuses a Redis that
	// went back in time, and the advance.
	seqRow, seqCheck, seqAdvance string
}

// NewWriter returns a Writer of the store r. Run it, in as many processes
// as wanted.
func (r *Reserver) NewWriter(opts *WriterOptions) *Writer {
	w := &Writer{r: r, batch: 512, poll: 100 * time.Millisecond, idle: 30 * time.Second, maxFail: 5, maxWait: time.Minute, linger: 10 * time.Millisecond,
		log: slog.New(slog.DiscardHandler), fails: map[string]int{}, seen: map[string]time.Time{}, lag: make([]atomic.Int64, r.buckets),
		ownPending: make([]atomic.Bool, r.buckets), lastClaim: make([]atomic.Int64, r.buckets)}
	for b := range w.ownPending {
		w.ownPending[b].Store(true) // what an earlier writer of the same name left
	}
	if opts != nil {
		w.consumer = opts.Consumer
		if opts.BatchSize > 0 {
			w.batch = opts.BatchSize
		}
		if opts.Poll > 0 {
			w.poll = opts.Poll
		}
		if opts.ClaimIdle > 0 {
			w.idle = opts.ClaimIdle
		}
		if opts.MaxFailures > 0 {
			w.maxFail = opts.MaxFailures
		}
		if opts.MaxWait > 0 {
			w.maxWait = opts.MaxWait
		}
		if opts.Linger > 0 {
			w.linger = opts.Linger
		}
		if opts.Logger != nil {
			w.log = opts.Logger
		}
	}
	if w.consumer == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		w.consumer = "w-" + hex.EncodeToString(b)
	}
	stock, res, lines, holds := r.store.Table("stock"), r.store.Table("reservation"), r.store.Table("reservation_line"), r.store.Table("redisstock_hold")
	seqs := r.store.Table("redisstock_bucket")
	w.q = writerQueries{
		stock: `INSERT INTO ` + stock + ` AS s (sku, available, fence)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, fence = EXCLUDED.fence WHERE s.fence < EXCLUDED.fence`,
		// A reservation carries its buyer (NULL for none) and Partial, as
		// the PostgreSQL strategies record them.
		reserve: `INSERT INTO ` + res + ` AS r (id, state, expires_at, created_at, buyer, partial)
SELECT u.id, u.st, u.exp, u.cr, nullif(u.y, ''), u.p FROM unnest($1::text[], $2::smallint[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::bool[]) AS u (id, st, exp, cr, y, p)
ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, expires_at = greatest(r.expires_at, EXCLUDED.expires_at)
WHERE r.state = 1 AND (EXCLUDED.state <> 1 OR EXCLUDED.expires_at > r.expires_at)`,
		// A stock event of SetStock, SetStockWith or AddStock carries the
		// SKU's settings, its backorder and its limit per buyer; they
		// replace older ones, by the version of the event that set them
		// (backorder_fence, 0014_redisstock_backorder.sql, fences both), so
		// that events applied twice or out of order leave the newest.
		backorder: `UPDATE ` + stock + ` s SET backorder = u.b, buyer_limit = u.l, backorder_fence = u.v
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u (sku, b, v, l) WHERE s.sku = u.sku AND s.backorder_fence < u.v`,
		// counted marks the lines whose units count against the buyer's
		// usage (reservation_line.counted, 0008_levels_limits.sql), from
		// which Load rebuilds the usage.
		lines: `INSERT INTO ` + lines + ` (reservation_id, sku, qty, counted)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[]) ON CONFLICT DO NOTHING`,
		// A take of a newer attempt replaces the row; a return replaces the
		// take of its attempt; nothing else changes it, so that events
		// applied twice or out of order leave the row as in order.
		holds: `INSERT INTO ` + holds + ` AS h (reservation_id, sku, attempt, qty, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
ON CONFLICT (reservation_id, sku) DO UPDATE SET attempt = EXCLUDED.attempt, qty = EXCLUDED.qty, state = EXCLUDED.state
WHERE h.attempt < EXCLUDED.attempt OR (h.attempt = EXCLUDED.attempt AND h.state = 'T' AND EXCLUDED.state <> 'T')`,
		forget: r.forgetSQL(`SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS u (id, cr, before)`),
		seqRow: `INSERT INTO ` + seqs + ` (bucket, seq, entry_ms, entry_n) VALUES ($1, 0, 0, 0) ON CONFLICT (bucket) DO NOTHING`,
		// Within one Redis history an event's sequence number and its
		// stream entry ID grow together, and so do the bucket's sequence and
		// its stream's last entry ID read before the batch ($2, $3): a pair
		// that does not grow with the one applied last comes from another
		// history. The row is locked, so that writers of the bucket check
		// and advance one at a time.
		// The Redis must also follow the Load PostgreSQL follows ($5, the
		// epoch of its marker): another server that answers as a master
		// keeps an older Load's epoch, and its events may fit the sequence
		// as old ones of this history would.
		seqCheck: `WITH cur AS (SELECT seq, entry_ms AS ms, entry_n AS n, epoch FROM ` + seqs + ` WHERE bucket = $1 FOR UPDATE)
SELECT ` + r.store.Table("reserve_abort") + `('` + divergedCode + `') FROM cur WHERE (cur.epoch <> '' AND $5 <> '' AND cur.epoch <> $5) OR EXISTS (
	SELECT 1 FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS e (seq, ms, n)
	WHERE (e.seq <= cur.seq AND (e.ms, e.n) > (cur.ms, cur.n)) OR (e.seq >= cur.seq AND (e.ms, e.n) < (cur.ms, cur.n)))`,
		seqAdvance: `UPDATE ` + seqs + ` b SET seq = e.seq, entry_ms = e.ms, entry_n = e.n, epoch = CASE WHEN b.epoch = '' THEN $5 ELSE b.epoch END
FROM (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS e (seq, ms, n) ORDER BY seq DESC LIMIT 1) e
WHERE b.bucket = $1 AND e.seq > b.seq`,
	}
	w.guard = r.keep > 0 && !r.noReplayGuard
	if w.guard {
		// With a retention, a reservation whose retention has passed since
		// it was reserved, and that the ledger does not have, is written
		// no more: it is a batch applied again (a writer died between its
		// COMMIT and its acknowledgement) after Purge deleted what that
		// batch wrote. Written again, a commit would count its sold units
		// twice, and a take would hold units for no reservation, which a
		// Load would give back though they were sold. (A return is
		// written: with no take it gives nothing back.) $7 and $6: the
		// moment the retention began, by Now.
		w.q.reserve = mustReplace(w.q.reserve, ") AS u (id, st, exp, cr, y, p)\n", ") AS u (id, st, exp, cr, y, p)\nWHERE u.cr >= $7 OR EXISTS (SELECT 1 FROM "+res+" o WHERE o.id = u.id)\n")
		w.q.lines = `INSERT INTO ` + lines + ` (reservation_id, sku, qty, counted)
SELECT u.* FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[]) AS u (id, sku, qty, counted)
WHERE EXISTS (SELECT 1 FROM ` + res + ` o WHERE o.id = u.id) ON CONFLICT DO NOTHING`
		w.q.holds = mustReplace(w.q.holds, "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])\n",
			"SELECT u.* FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) AS u (id, sku, at, qty, st)\nWHERE u.st <> 'T' OR u.at >= $6 OR EXISTS (SELECT 1 FROM "+res+" o WHERE o.id = u.id)\n")
	}
	return w
}

// mustReplace replaces the one old in s with new; an s without it is a
// statement of this file edited without its variant, which no input can
// cause: it comes back as it is, and the tests of the variant fail.
func mustReplace(s, old, new string) string {
	if strings.Count(s, old) != 1 {
		return s
	}
	return strings.Replace(s, old, new, 1)
}

// Run applies events until ctx ends, one loop per bucket, and returns nil
// then. Errors (Redis or PostgreSQL away) are logged and retried.
func (w *Writer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for b := range w.r.buckets {
		wg.Go(func() {
			for ctx.Err() == nil {
				n, err := w.step(ctx, b, true)
				wait := time.Duration(0)
				switch {
				case err != nil && ctx.Err() == nil:
					w.log.Warn("redisstock: writer step failed; retrying", "bucket", b, "err", err)
					wait = w.poll
				case n > 0 && n < w.batch:
					wait = w.linger
				}
				if wait > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(wait):
					}
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// Drain applies events until every stream is empty (each applied event is
// deleted from its stream), or ctx ends. Events that wait for another
// bucket's are retried until they can go. It is meant for tests, tools and
// shutdown; Run is the service.
func (w *Writer) Drain(ctx context.Context) error {
	for {
		total := int64(0)
		for b := range w.r.buckets {
			if err := w.drainStep(ctx, b); err != nil {
				return err
			}
			total += w.lag[b].Load()
		}
		if total == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// drainRetries is how many times Drain runs a step again whose connection
// failed under it (a failover client closes its connections to a master it
// no longer follows): a step holds one connection, and what the pool would
// retry on another connection fails the step instead.
const drainRetries = 3

func (w *Writer) drainStep(ctx context.Context, b int) error {
	for try := 0; ; try++ {
		_, err := w.step(ctx, b, false)
		var re redis.Error
		if err == nil || try == drainRetries || ctx.Err() != nil || errors.As(err, &re) ||
			errors.Is(err, ErrWentBack) || errors.Is(err, ErrNotLoaded) || refused(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.poll):
		}
	}
}

// Lag returns the number of events not yet applied, over every stream.
func (w *Writer) Lag(ctx context.Context) (int64, error) {
	var n int64
	for b := range w.r.buckets {
		l, err := w.r.rdb.XLen(ctx, w.r.stream(b)).Result()
		if err != nil {
			return 0, err
		}
		n += l
	}
	return n, nil
}

// Metrics reports the writer's lag (events in the streams, as last read),
// the largest lag seen, and counts of batches, events applied, failed
// applications and dead letters.
func (w *Writer) Metrics() []inventory.Metric {
	var lag int64
	for b := range w.lag {
		lag += w.lag[b].Load()
	}
	return []inventory.Metric{
		{Name: "writer.lag", Unit: "{event}", Description: "Events in the streams not yet applied to PostgreSQL.", Kind: inventory.Gauge, Value: float64(lag)},
		{Name: "writer.lag.max", Unit: "{event}", Description: "The largest lag this writer has seen.", Kind: inventory.Gauge, Value: float64(w.maxLag.Load())},
		{Name: "writer.batches", Unit: "{batch}", Description: "Transactions committed.", Kind: inventory.Counter, Value: float64(w.batches.Load())},
		{Name: "writer.events", Unit: "{event}", Description: "Events applied and acknowledged.", Kind: inventory.Counter, Value: float64(w.events.Load())},
		{Name: "writer.failures", Unit: "{event}", Description: "Failed applications of an event, retried.", Kind: inventory.Counter, Value: float64(w.failed.Load())},
		{Name: "writer.dead_letters", Unit: "{event}", Description: "Events moved to a dead-letter stream after repeated failures.", Kind: inventory.Counter, Value: float64(w.dead.Load())},
		{Name: "writer.went_back", Unit: "{bucket}", Description: "Buckets unloaded because Redis lacked changes PostgreSQL had applied.", Kind: inventory.Counter, Value: float64(w.wentBack.Load())},
	}
}

// MaxLag returns the largest lag, in events, this writer has seen.
func (w *Writer) MaxLag() int64 { return w.maxLag.Load() }

// DeadLetterCount returns how many events this writer moved to a
// dead-letter stream.
func (w *Writer) DeadLetterCount() int64 { return w.dead.Load() }

// DeadLetters returns the number of entries in the dead-letter streams.
func (w *Writer) DeadLetters(ctx context.Context) (int64, error) {
	var n int64
	for b := range w.r.buckets {
		l, err := w.r.rdb.XLen(ctx, w.r.deadStream(b)).Result()
		if err != nil {
			return 0, err
		}
		n += l
	}
	return n, nil
}

// step reads what bucket b has for this writer (its own unfinished entries,
// entries idle with other writers, new ones), applies them, and records the
// stream's length as the lag. It returns how many entries it read. A
// blocking step (Run's) waits up to Poll for new entries, and looks for
// other writers' idle entries once per Poll; Drain's looks every time.
func (w *Writer) step(ctx context.Context, b int, block bool) (int, error) {
	r := w.r
	st := r.stream(b)
	// One connection for the whole step: the events, the position they are
	// checked against and the acknowledgements all of one server.
	c, release := r.pin()
	defer release()
	var msgs []redis.XMessage
	if w.ownPending[b].Load() {
		own, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: consumerGroup, Consumer: w.consumer, Streams: []string{st, "0"}, Count: int64(w.batch)}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, w.noGroup(ctx, c, b, err)
		}
		for _, s := range own {
			msgs = append(msgs, s.Messages...)
		}
	}
	if len(msgs) < w.batch && (!block || time.Since(time.Unix(0, w.lastClaim[b].Load())) >= w.poll) {
		claimed, _, err := c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: st, Group: consumerGroup, Consumer: w.consumer, MinIdle: w.idle, Start: "0-0", Count: int64(w.batch - len(msgs))}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, w.noGroup(ctx, c, b, err)
		}
		w.lastClaim[b].Store(time.Now().UnixNano())
		msgs = append(msgs, claimed...)
	}
	if len(msgs) < w.batch {
		args := &redis.XReadGroupArgs{Group: consumerGroup, Consumer: w.consumer, Streams: []string{st, ">"}, Count: int64(w.batch - len(msgs)), Block: -1}
		if block && len(msgs) == 0 {
			args.Block = w.poll
		}
		fresh, err := c.XReadGroup(ctx, args).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, w.noGroup(ctx, c, b, err)
		}
		for _, s := range fresh {
			msgs = append(msgs, s.Messages...)
		}
	}
	// Until this step has acknowledged all it read, read its own pending
	// entries first.
	w.ownPending[b].Store(true)
	read := len(msgs)
	if len(msgs) > 0 {
		slices.SortFunc(msgs, func(a, b redis.XMessage) int { return compareIDs(a.ID, b.ID) })
		msgs = slices.CompactFunc(msgs, func(a, b redis.XMessage) bool { return a.ID == b.ID })
		var at *seqAt
		if !w.ignoreSeq {
			var err error
			if at, err = w.position(ctx, c, b); err != nil {
				return read, err
			}
		}
		n, err := w.apply(ctx, c, b, msgs, at)
		if err != nil {
			return read, err
		}
		// Entries that wait, or went to the dead letters, count as left:
		// the next step reads its own pending entries once more.
		w.ownPending[b].Store(n < len(msgs))
	} else {
		w.ownPending[b].Store(false)
	}
	l, err := c.XLen(ctx, st).Result()
	if err != nil {
		return read, err
	}
	w.lag[b].Store(l)
	var total int64
	for i := range w.lag {
		total += w.lag[i].Load()
	}
	for {
		m := w.maxLag.Load()
		if total <= m || w.maxLag.CompareAndSwap(m, total) {
			break
		}
	}
	return read, nil
}

// noGroup turns a missing consumer group (the stream is gone: Redis lost
// its data) into ErrNotLoaded.
func (w *Writer) noGroup(ctx context.Context, c redis.Cmdable, b int, err error) error {
	if strings.Contains(err.Error(), "NOGROUP") {
		if ok, lerr := w.r.loadedOn(ctx, c); lerr == nil && !ok {
			return &NotLoadedError{Key: w.r.marker(b)}
		}
	}
	return err
}

// entryPos is a stream entry ID as two numbers.
type entryPos struct{ ms, n int64 }

func parseEntryID(id string) entryPos {
	m, n, _ := strings.Cut(id, "-")
	var p entryPos
	p.ms, _ = strconv.ParseInt(m, 10, 64)
	p.n, _ = strconv.ParseInt(n, 10, 64)
	return p
}

// divergedCode is the SQLSTATE of the writer's sequence check.
const divergedCode = "IV004"

// ErrWentBack reports a Redis that lost changes PostgreSQL already has (a
// failover promoted a replica that missed them), or one whose loaded marker
// is of another Load than the one PostgreSQL follows (an old master that
// still answers as one). The writer applies nothing more of the bucket from
// it, deletes its loaded marker, so that every call to it refuses with a
// *NotLoadedError, and Load rebuilds Redis from PostgreSQL.
var ErrWentBack = errors.New("redisstock: redis went back in time: it lacks changes PostgreSQL applied; the bucket is unloaded until Load")

// position reads bucket b's sequence and its stream's last entry ID, after
// the entries this step read; with Options.WaitReplicas it waits until the
// replicas have everything up to them, so that PostgreSQL never gets an
// event a failover could take back from Redis.
func (w *Writer) position(ctx context.Context, c redis.Cmdable, b int) (*seqAt, error) {
	rep, err := w.r.execOn(ctx, c, []string{w.r.marker(b), w.r.stream(b)}, "seq")
	if err != nil {
		return nil, err
	}
	if len(rep) < 4 {
		return nil, fmt.Errorf("redisstock: short sequence reply %q", rep)
	}
	q, _ := strconv.ParseInt(rep[1], 10, 64)
	return &seqAt{seq: q, pos: parseEntryID(rep[2]), epoch: rep[3]}, nil
}

// wentBackAt answers an event batch of bucket b that the sequence check
// refused. If the bucket's marker is the one the batch was read under,
// Redis went back in time (a failover to a replica that missed writes), or
// the server is one PostgreSQL no longer follows (its marker is of an older
// Load than PostgreSQL's epoch): the marker is deleted, so that every call
// to that server refuses until Load. Otherwise a Load rebuilt Redis since
// the batch was read (from the Redis it replaced): the batch is dropped,
// and the bucket stays as it is. The comparison and the delete are one
// script call, so that a Load in between is never undone.
func (w *Writer) wentBackAt(ctx context.Context, c redis.Cmdable, b int, at *seqAt, cause error) error {
	rep, err := w.r.execOn(context.WithoutCancel(ctx), c, []string{w.r.marker(b)}, "unload", at.epoch)
	if err != nil {
		return err
	}
	if len(rep) == 0 || rep[0] != "ok" {
		return fmt.Errorf("redisstock: bucket %d: a batch read before the last Load is dropped: %w", b, cause)
	}
	w.wentBack.Add(1)
	w.log.Error("redisstock: redis lacks changes PostgreSQL applied, or follows a Load PostgreSQL does not (a failover to a replica that missed them, an old master still answering?); the bucket refuses every call to this server until Load",
		"bucket", b, "marker", w.r.marker(b), "epoch", at.epoch, "err", cause)
	return fmt.Errorf("%w: bucket %d", ErrWentBack, b)
}

func compareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	x, _ := strconv.ParseUint(am, 10, 64)
	y, _ := strconv.ParseUint(bm, 10, 64)
	if x != y {
		if x < y {
			return -1
		}
		return 1
	}
	x, _ = strconv.ParseUint(as, 10, 64)
	y, _ = strconv.ParseUint(bs, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// event is one parsed stream entry.
type event struct {
	id    string // stream entry ID
	kind  string // st (stock), tk (take), ud (undo), gv (give), rs (reservation), rv (take and reservation)
	res   string // reservation ID
	at    int64  // attempt of takes, undos and gives
	seq   int64  // the bucket's sequence number; 0 in an event older than it
	pos   entryPos
	state int16
	exp   time.Time
	cr    time.Time
	buyer string // reservation events: Request.Buyer
	part  bool   // reservation events: Request.Partial
	lines []evLine
}

type evLine struct {
	sku     string
	qty     int64
	a, v    int64 // stock events: available and version after
	bo      int64 // st events: the SKU's backorder after, with hasBo
	lim     int64 // st events: the SKU's limit per buyer after, with hasBo
	hasBo   bool
	counted bool  // reservation events: the line's units count against the buyer's usage
	waitFor int64 // rs events: the stock version its take left; 0 for none
}

// holdStates maps the events that take or return a hold's units to the
// state of its redisstock_hold row.
var holdStates = map[string]string{"tk": "T", "rv": "T", "ud": "U", "gv": "G"}

// evFields are the values of one stream entry, as strings ("" for a value
// the event does not carry): the entry's fields in the format before
// events were packed, or the packed field's parts.
type evFields struct {
	t, id, at, sq, n, st, exp, cr, vs, b string
	y, p, l, c                           string // format e2: buyer, partial, limit, counted flags
	// line returns the sku, qty, available and version of line i (from 1).
	line func(i int) (sku, qty, a, v string)
}

// packedSep separates the values of a packed event: no ID or SKU holds a
// control character.
const packedSep = "\x1f"

// parseEvent parses a stream entry: one packed field p (see script.lua's
// event), or, in the streams of the store before it packed events, one
// field per value.
func parseEvent(m redis.XMessage) (event, error) {
	if p, ok := m.Values["p"]; ok {
		s, _ := p.(string)
		f := strings.Split(s, packedSep)
		head := 0
		switch {
		case len(f) >= 11 && f[0] == "e1":
			head = 11
		case len(f) >= 15 && f[0] == "e2":
			head = 15
		default:
			return event{id: m.ID}, fmt.Errorf("entry %s: not a packed event", m.ID)
		}
		ef := evFields{sq: f[1], t: f[2], id: f[3], at: f[4], st: f[5], exp: f[6], cr: f[7], vs: f[8], b: f[9], n: f[head-1]}
		if head == 15 {
			ef.y, ef.p, ef.l, ef.c = f[10], f[11], f[12], f[13]
		}
		width := 4 // sku, qty, available, version
		if ef.t == "rs" {
			width = 2 // sku, qty
		}
		n, _ := strconv.Atoi(ef.n)
		if n < 0 || len(f) != head+width*n {
			return event{id: m.ID}, fmt.Errorf("entry %s: %d values for %d lines", m.ID, len(f), n)
		}
		ef.line = func(i int) (sku, qty, a, v string) {
			l := f[head+width*(i-1):]
			if width == 4 {
				return l[0], l[1], l[2], l[3]
			}
			return l[0], l[1], "", ""
		}
		return parseFields(m.ID, ef)
	}
	get := func(k string) string { s, _ := m.Values[k].(string); return s }
	ef := evFields{t: get("t"), id: get("id"), at: get("at"), sq: get("sq"), n: get("n"), st: get("st"), exp: get("exp"), cr: get("cr"), vs: get("vs"), b: get("b")}
	ef.line = func(i int) (sku, qty, a, v string) {
		k := strconv.Itoa(i)
		return get("s" + k), get("q" + k), get("a" + k), get("v" + k)
	}
	return parseFields(m.ID, ef)
}

// parseFields parses the values of the stream entry id.
func parseFields(id string, f evFields) (event, error) {
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	e := event{id: id, kind: f.t, res: f.id, at: num(f.at), seq: num(f.sq), pos: parseEntryID(id), buyer: f.y, part: f.p == "1"}
	n := int(num(f.n))
	// A reservation event without lines is the tombstone of a Cancel.
	if n < 0 || n > inventory.MaxLines || (n == 0 && (e.kind != "rs" || num(f.st) != int64(inventory.Released))) {
		return e, fmt.Errorf("entry %s: %d lines", id, n)
	}
	var vs []string
	if f.vs != "" {
		vs = strings.Split(f.vs, ",")
	}
	for i := 1; i <= n; i++ {
		sku, qty, a, v := f.line(i)
		l := evLine{sku: sku, qty: num(qty), a: num(a), v: num(v)}
		if e.kind == "st" && f.b != "" {
			l.bo, l.lim, l.hasBo = num(f.b), num(f.l), true
		}
		l.counted = i <= len(f.c) && f.c[i-1] == '1'
		if i <= len(vs) {
			l.waitFor, _ = strconv.ParseInt(vs[i-1], 10, 64)
		}
		if l.sku == "" {
			return e, fmt.Errorf("entry %s: line %d has no sku", id, i)
		}
		e.lines = append(e.lines, l)
	}
	switch e.kind {
	case "st", "tk", "ud", "gv":
	case "rs", "rv":
		e.state = int16(num(f.st))
		e.exp = time.UnixMicro(num(f.exp)).UTC()
		e.cr = time.UnixMicro(num(f.cr)).UTC()
		if e.res == "" || e.state < 1 || e.state > 4 {
			return e, fmt.Errorf("entry %s: reservation event without id or with state %d", id, e.state)
		}
	default:
		return e, fmt.Errorf("entry %s: unknown event type %q", id, e.kind)
	}
	return e, nil
}

// apply applies msgs (in stream order) to PostgreSQL and acknowledges those
// that committed. An event whose stock versions PostgreSQL lacks yet waits
// for a later step. A batch that fails is retried one event at a time, so
// that one bad event is found, counted, and after MaxFailures moved to the
// dead-letter stream.
func (w *Writer) apply(ctx context.Context, c redis.Cmdable, b int, msgs []redis.XMessage, at *seqAt) (int, error) {
	var evs []event
	for _, m := range msgs {
		e, err := parseEvent(m)
		if err != nil {
			w.deadLetter(ctx, c, b, m, err)
			continue
		}
		evs = append(evs, e)
	}
	ready, stale, err := w.ready(ctx, evs)
	if err != nil {
		return 0, err
	}
	for _, e := range stale {
		for _, m := range msgs {
			if m.ID == e.id {
				w.deadLetter(ctx, c, b, m, fmt.Errorf("waited %s for stock versions that never reached PostgreSQL", w.maxWait))
			}
		}
	}
	if len(ready) == 0 {
		return 0, nil
	}
	if w.ackFirst {
		if err := w.ack(ctx, c, b, ready); err != nil {
			return 0, err
		}
	}
	if w.beforeCommit != nil {
		w.beforeCommit()
	}
	if err := w.commit(ctx, b, ready, at); err == nil {
		if w.afterCommit != nil {
			w.afterCommit()
		}
		if w.ackFirst {
			return len(ready), nil
		}
		return len(ready), w.ack(ctx, c, b, ready)
	} else if wentBack(err) {
		return 0, w.wentBackAt(ctx, c, b, at, err)
	} else if !refused(err) {
		return 0, err // PostgreSQL away or the connection cut: retry later, count nothing
	} else if len(ready) == 1 || ctx.Err() != nil {
		w.failedOnce(ctx, c, b, msgs, ready[0], err)
		return 0, ctx.Err()
	}
	n := 0
	for _, e := range ready {
		if err := w.commit(ctx, b, []event{e}, at); err != nil {
			if wentBack(err) {
				return n, w.wentBackAt(ctx, c, b, at, err)
			}
			if !refused(err) {
				return n, err
			}
			w.failedOnce(ctx, c, b, msgs, e, err)
			if ctx.Err() != nil {
				return n, err
			}
			continue
		}
		if err := w.ack(ctx, c, b, []event{e}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// wentBack reports the error of the sequence check.
func wentBack(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == divergedCode
}

// seqAt is a bucket's sequence and its stream's last entry ID, as the
// writer read them before a batch.
type seqAt struct {
	seq   int64
	pos   entryPos
	epoch string // of the Load that wrote the marker
}

// refused reports an error with which PostgreSQL answered a statement (a
// constraint, bad data): the event itself fails, and retrying it as it is
// fails again. Other errors (a cut connection, a server away) are not the
// event's fault.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57") && !strings.HasPrefix(pgErr.Code, "53")
}

// ready returns the events PostgreSQL can take now: all but the reservation
// events whose takes' stock versions it has not seen, neither in its rows
// nor in this batch. Those that waited longer than MaxWait come back as
// stale: applying them would count a hold whose units PostgreSQL still counts
// as available.
func (w *Writer) ready(ctx context.Context, evs []event) (out, stale []event, _ error) {
	need := map[string]int64{}
	for _, e := range evs {
		for _, l := range e.lines {
			if e.kind == "rs" && l.waitFor > 0 {
				need[l.sku] = max(need[l.sku], l.waitFor)
			}
		}
	}
	if len(need) == 0 {
		return evs, nil, nil
	}
	have := map[string]int64{}
	for _, e := range evs {
		if e.kind != "rs" {
			for _, l := range e.lines {
				have[l.sku] = max(have[l.sku], l.v)
			}
		}
	}
	skus := make([]string, 0, len(need))
	for s := range need {
		skus = append(skus, s)
	}
	rows, err := w.r.store.DB().Query(ctx, "SELECT sku, fence FROM "+w.r.store.Table("stock")+" WHERE sku = ANY ($1)", skus)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var s string
		var f int64
		if err := rows.Scan(&s, &f); err != nil {
			rows.Close()
			return nil, nil, err
		}
		have[s] = max(have[s], f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for _, e := range evs {
		ok := true
		for _, l := range e.lines {
			if e.kind == "rs" && l.waitFor > have[l.sku] {
				ok = false
			}
		}
		if ok {
			out = append(out, e)
			continue
		}
		w.mu.Lock()
		first, seen := w.seen[e.id]
		if !seen {
			w.seen[e.id] = time.Now()
		}
		w.mu.Unlock()
		if seen && time.Since(first) > w.maxWait {
			stale = append(stale, e) // its takes never came
		}
	}
	return out, stale, nil
}

// commit applies evs of bucket b in one implicit transaction: one batch,
// one round trip. With at (the bucket's position in Redis), it first checks
// that the events and at come from the history PostgreSQL applied so far
// and advances the bucket's sequence. Stock rows take the newest version of
// the batch; reservations their most advanced state.
func (w *Writer) commit(ctx context.Context, b int, evs []event, at *seqAt) error {
	batch := &pgx.Batch{}
	if at != nil {
		seqs, mss, ns := []int64{at.seq}, []int64{at.pos.ms}, []int64{at.pos.n}
		for _, e := range evs {
			if e.seq > 0 {
				seqs, mss, ns = append(seqs, e.seq), append(mss, e.pos.ms), append(ns, e.pos.n)
			}
		}
		epoch := at.epoch
		if w.r.ignoreEpoch {
			epoch = ""
		}
		batch.Queue(w.q.seqRow, b)
		batch.Queue(w.q.seqCheck, b, seqs, mss, ns, epoch)
		// The position read before the batch is no event: only events
		// advance the sequence.
		batch.Queue(w.q.seqAdvance, b, seqs[1:], mss[1:], ns[1:], epoch)
	}
	return w.commitBatch(ctx, batch, evs)
}

func (w *Writer) commitBatch(ctx context.Context, b *pgx.Batch, evs []event) error {
	type stockRow struct{ a, v, l int64 }
	type holdKey struct{ id, sku string }
	type holdRow struct {
		at, qty int64
		st      string
	}
	stock := map[string]stockRow{}
	backorders := map[string]stockRow{} // the backorder (a) and the version that set it
	holds := map[holdKey]holdRow{}
	res := map[string]*event{}
	var order []string
	for i := range evs {
		e := &evs[i]
		if st, ok := holdStates[e.kind]; ok && e.res != "" {
			// evs are one bucket's, in stream order: the last event of a
			// hold is its state.
			for _, l := range e.lines {
				holds[holdKey{e.res, l.sku}] = holdRow{e.at, l.qty, st}
			}
		}
		if e.kind != "rs" {
			for _, l := range e.lines {
				if cur, ok := backorders[l.sku]; l.hasBo && (!ok || l.v > cur.v) {
					backorders[l.sku] = stockRow{l.bo, l.v, l.lim}
				}
				if cur, ok := stock[l.sku]; !ok || l.v > cur.v {
					stock[l.sku] = stockRow{l.a, l.v, 0}
				}
			}
			if e.kind != "rv" {
				continue
			}
		}
		if cur, ok := res[e.res]; !ok {
			res[e.res] = e
			order = append(order, e.res)
		} else if e.state > cur.state || (e.state == cur.state && e.exp.After(cur.exp)) {
			res[e.res] = e // a later state, or an extended hold
		}
	}
	if len(stock) > 0 {
		skus := make([]string, 0, len(stock))
		for s := range stock {
			skus = append(skus, s)
		}
		slices.Sort(skus) // rows in one order across writers
		as, vs := make([]int64, len(skus)), make([]int64, len(skus))
		for i, s := range skus {
			as[i], vs[i] = stock[s].a, stock[s].v
		}
		b.Queue(w.q.stock, skus, as, vs)
	}
	if len(backorders) > 0 {
		skus := make([]string, 0, len(backorders))
		for s := range backorders {
			skus = append(skus, s)
		}
		slices.Sort(skus)
		bs, vs, ls := make([]int64, len(skus)), make([]int64, len(skus)), make([]int64, len(skus))
		for i, s := range skus {
			bs[i], vs[i], ls[i] = backorders[s].a, backorders[s].v, backorders[s].l
		}
		b.Queue(w.q.backorder, skus, bs, vs, ls)
	}
	if len(holds) > 0 {
		keys := make([]holdKey, 0, len(holds))
		for k := range holds {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b holdKey) int { return cmp.Or(strings.Compare(a.id, b.id), strings.Compare(a.sku, b.sku)) })
		ids, skus := make([]string, len(keys)), make([]string, len(keys))
		ats, qtys, sts := make([]int64, len(keys)), make([]int64, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			h := holds[k]
			ids[i], skus[i], ats[i], qtys[i], sts[i] = k.id, k.sku, h.at, h.qty, h.st
		}
		if w.guard {
			b.Queue(w.q.holds, ids, skus, ats, qtys, sts, w.r.clock().Add(-w.r.keep).UnixMicro())
		} else {
			b.Queue(w.q.holds, ids, skus, ats, qtys, sts)
		}
	}
	if len(res) > 0 {
		slices.Sort(order)
		ids, states := make([]string, len(order)), make([]int16, len(order))
		exps, crs := make([]time.Time, len(order)), make([]time.Time, len(order))
		buyers, parts := make([]string, len(order)), make([]bool, len(order))
		var lid, lsku []string
		var lqty []int64
		var lcounted []bool
		for i, id := range order {
			e := res[id]
			ids[i], states[i], exps[i], crs[i], buyers[i], parts[i] = id, e.state, e.exp, e.cr, e.buyer, e.part
			for _, l := range e.lines {
				lid, lsku, lqty, lcounted = append(lid, id), append(lsku, l.sku), append(lqty, l.qty), append(lcounted, l.counted)
			}
		}
		if w.r.keep > 0 {
			// An ID taken anew after its record expired in Redis (see
			// Options.Retention): the settled reservation the ledger still
			// has under it, created before, is forgotten first (its sold
			// units still count), and its takes with it; those of the new
			// one number their attempts from its creation on.
			befores := make([]int64, len(order))
			for i := range order {
				befores[i] = crs[i].UnixMicro()
			}
			b.Queue(w.q.forget, ids, crs, befores)
		}
		if w.guard {
			b.Queue(w.q.reserve, ids, states, exps, crs, buyers, parts, w.r.clock().Add(-w.r.keep))
		} else {
			b.Queue(w.q.reserve, ids, states, exps, crs, buyers, parts)
		}
		b.Queue(w.q.lines, lid, lsku, lqty, lcounted)
	}
	if err := w.r.store.DB().SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	w.batches.Add(1)
	return nil
}

// ack acknowledges and deletes applied entries, once their transaction has
// committed.
func (w *Writer) ack(ctx context.Context, c redis.Cmdable, b int, evs []event) error {
	r := w.r
	args := []any{"ack", consumerGroup}
	w.mu.Lock()
	for _, e := range evs {
		args = append(args, e.id)
		delete(w.fails, e.id)
		delete(w.seen, e.id)
	}
	w.mu.Unlock()
	if _, err := r.execOn(ctx, c, []string{r.marker(b), r.stream(b), r.deadStream(b)}, args...); err != nil {
		return err
	}
	w.events.Add(int64(len(evs)))
	return nil
}

// failedOnce counts a failed application of e and moves it to the
// dead-letter stream once it has failed MaxFailures times.
func (w *Writer) failedOnce(ctx context.Context, c redis.Cmdable, b int, msgs []redis.XMessage, e event, err error) {
	w.failed.Add(1)
	w.log.Warn("redisstock: writer could not apply an event; it will be retried", "bucket", b, "entry", e.id, "err", err)
	w.mu.Lock()
	w.fails[e.id]++
	n := w.fails[e.id]
	w.mu.Unlock()
	if n < w.maxFail || ctx.Err() != nil {
		return
	}
	for _, m := range msgs {
		if m.ID == e.id {
			w.deadLetter(ctx, c, b, m, err)
		}
	}
}

// deadLetter moves an entry to the bucket's dead-letter stream and
// acknowledges it, in one script call, and logs it.
func (w *Writer) deadLetter(ctx context.Context, c redis.Cmdable, b int, m redis.XMessage, cause error) {
	r := w.r
	args := []any{"dead", consumerGroup, m.ID, "error", cause.Error()}
	keys := make([]string, 0, len(m.Values))
	for k := range m.Values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, k, m.Values[k])
	}
	if _, err := r.execOn(ctx, c, []string{r.marker(b), r.stream(b), r.deadStream(b)}, args...); err != nil {
		w.log.Error("redisstock: could not move an event to the dead-letter stream", "bucket", b, "entry", m.ID, "err", err, "cause", cause)
		return
	}
	w.mu.Lock()
	delete(w.fails, m.ID)
	delete(w.seen, m.ID)
	w.mu.Unlock()
	w.dead.Add(1)
	w.log.Error("redisstock: event moved to the dead-letter stream after repeated failures; PostgreSQL misses it until it is replayed",
		"bucket", b, "entry", m.ID, "dead_letter_stream", r.deadStream(b), "err", cause)
}
