package redisstock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// group is the name of the consumer group of every bucket's stream.
const consumerGroup = "writer"

// Loaded reports whether every bucket's loaded marker is in Redis.
func (r *Reserver) Loaded(ctx context.Context) (bool, error) { return r.loadedOn(ctx, r.rdb) }

func (r *Reserver) loadedOn(ctx context.Context, c redis.Cmdable) (bool, error) {
	cmds := make([]*redis.IntCmd, r.buckets)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range r.buckets {
			cmds[b] = p.Exists(ctx, r.marker(b))
		}
		return nil
	})
	if err != nil {
		return false, failRead("load", "", err)
	}
	for _, c := range cmds {
		if c.Val() == 0 {
			return false, nil
		}
	}
	return true, nil
}

// Load rebuilds the store's Redis data from the PostgreSQL ledger when a
// bucket's loaded marker is missing, and does nothing when every marker is
// there. It locks the table of the buckets' sequences (redisstock_bucket)
// first, which every writer's transaction writes: one process loads while
// the others wait and then find the markers set, and no writer commits
// while it reads, so that it reads the ledger whole, and what it changes
// is not undone by a batch a writer read from the Redis that was lost. It deletes every key
// under the prefix (what survived of an incomplete data set, and the event
// streams with them: run it once the writers have drained what they could),
// then writes each SKU's available units and version, each reservation's
// record, and the holds of held reservations, so that the rebuilt stock
// counts every hold and sale PostgreSQL knows of; the markers come last,
// with the new epoch that PostgreSQL then follows (see the package
// documentation's Failover section). Every Redis command of a Load goes
// over one connection, so to one server, even while a failover client
// follows a switch of masters. With Options.WaitReplicas, the markers
// count only once that many replicas have them: otherwise they are deleted
// again, nothing changes in PostgreSQL, and Load fails wrapping
// ErrNotReplicated.
// Changes acknowledged by Redis but not yet written to PostgreSQL when Redis
// lost them are gone: their units are available again, their IDs unknown.
func (r *Reserver) Load(ctx context.Context) error {
	c, release := r.pin()
	defer release()
	if ok, err := r.loadedOn(ctx, c); err != nil || ok {
		return err
	}
	// LOCK takes no snapshot: the transaction's is taken by the first
	// statement after it, once the writers in flight have committed.
	tx, err := beginTx(ctx, r.store.DB(), "LOCK TABLE "+r.store.Table("redisstock_bucket")+" IN EXCLUSIVE MODE")
	if err != nil {
		return fmt.Errorf("redisstock: load: lock: %w", err)
	}
	defer rollback(ctx, tx)
	if ok, err := r.loadedOn(ctx, c); err != nil || ok {
		return err // another process loaded it while this one waited
	}
	if err := r.wipe(ctx, c); err != nil {
		return fmt.Errorf("redisstock: load: delete what is left: %w", err)
	}
	if !r.keepOrphans {
		if err := r.settleHolds(ctx, tx); err != nil {
			return err
		}
	}
	if r.beforeLoadStock != nil {
		r.beforeLoadStock()
	}
	if err := r.loadStock(ctx, tx, c); err != nil {
		return err
	}
	if err := r.loadReservations(ctx, tx, c); err != nil {
		return err
	}
	epoch := newEpoch()
	seqs, err := r.appliedSeqs(ctx, tx, epoch)
	if err != nil {
		return err
	}
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range r.buckets {
			p.XGroupCreateMkStream(ctx, r.stream(b), consumerGroup, "0")
		}
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redisstock: load: consumer groups: %w", err)
	}
	var wait *redis.Cmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range r.buckets {
			p.HSet(ctx, r.marker(b), "e", epoch, "q", seqs[b])
		}
		if r.waitN > 0 && !r.loadNoWait {
			wait = p.Do(ctx, "WAIT", r.waitN, r.waitFor.Milliseconds())
		}
		return nil
	}); err != nil {
		return fmt.Errorf("redisstock: load: markers: %w", err)
	}
	if wait != nil {
		if n, _ := wait.Int64(); n < int64(r.waitN) {
			// A server no replica follows (an emptied old master that still
			// answers as one, until Sentinel makes it a replica): what it
			// was given is thrown away with it, so PostgreSQL must not
			// follow it.
			keys := make([]string, r.buckets)
			for b := range keys {
				keys[b] = r.marker(b)
			}
			derr := c.Del(context.WithoutCancel(ctx), keys...).Err()
			return fmt.Errorf("redisstock: load: markers: %w: %d of %d replicas within %s (markers deleted again: %v)", ErrNotReplicated, n, r.waitN, r.waitFor, derr)
		}
	}
	return tx.Commit(ctx)
}

// newEpoch returns a name for the history a Load starts: the time and
// random bytes, so that no two Loads share one.
func newEpoch() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return strconv.FormatInt(time.Now().UnixMicro(), 10) + "-" + hex.EncodeToString(b)
}

// beginTx begins a repeatable-read transaction on db with the statement
// sql, if not empty, in the same round trip.
func beginTx(ctx context.Context, db DB, sql string, args ...any) (pgx.Tx, error) {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if sql != "" {
		b.Queue(sql, args...)
	}
	br := db.SendBatch(ctx, b)
	tx := br.Tx()
	if tx == nil {
		_ = br.Close()
		return nil, errors.New("the PostgreSQL client's SendBatch does not begin transactions (pgx.Batch.BeginTx)")
	}
	if err := br.Close(); err != nil {
		rollback(ctx, tx)
		return nil, err
	}
	return tx, nil
}

// rollback ends tx whatever became of ctx; after a commit it does nothing.
func rollback(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(rctx)
}

// settleHolds makes the ledger whole before Load reads it, in Load's
// transaction. A take and its reservation travel in two streams when the
// reservation's ID and its SKU fall into different buckets (and a release
// and its give in two events even in one bucket), so the Redis that was
// lost may have left PostgreSQL with one and not the other. The
// redisstock_hold rows say which takes PostgreSQL's stock rows count:
//
//   - a held reservation one of whose holds PostgreSQL saw returned was
//     released or expired in Redis (only those give units back) and the
//     record of that never came: it becomes released (expired when past
//     its TTL);
//   - a take whose reservation PostgreSQL does not have, or has in a final
//     state, holds units for nobody: they go back to the stock row; with
//     Options.Retention, so does a take of a new reservation under the ID
//     of a committed one the ledger still has (its attempt comes the
//     retention or more after that one's creation).
//
// What remains are the takes of held and committed reservations, whose
// attempts Load writes back to Redis; the rows of everything else are
// deleted, so that a lost ID reserved again starts afresh. Lines of held or
// committed reservations without a row (written before the table existed)
// count as taken.
func (r *Reserver) settleHolds(ctx context.Context, tx pgx.Tx) error {
	res, holds, stock := r.store.Table("reservation"), r.store.Table("redisstock_hold"), r.store.Table("stock")
	b := &pgx.Batch{}
	b.Queue(`UPDATE `+res+` r SET state = CASE WHEN r.expires_at <= $1 THEN 4 ELSE 3 END
WHERE r.state = 1 AND EXISTS (SELECT 1 FROM `+holds+` h WHERE h.reservation_id = r.id AND h.state <> 'T')`, r.clock())
	// With a retention ($1, in microseconds), a take numbered the
	// retention or more past the creation of the reservation the ledger
	// has under its ID is the take of a new one under that ID, reserved
	// after Redis forgot the first (see script.lua's nextAttempt), which
	// PostgreSQL never got: its units go back too.
	b.Queue(`WITH o AS (
	DELETE FROM `+holds+` h WHERE NOT EXISTS (SELECT 1 FROM `+res+` r WHERE r.id = h.reservation_id AND r.state IN (1, 2)
		AND ($1::bigint = 0 OR h.attempt < (extract(epoch FROM r.created_at) * 1000000)::bigint + $1::bigint))
	RETURNING h.sku, h.qty, h.state
), back AS (
	SELECT sku, sum(qty)::bigint AS qty FROM o WHERE state = 'T' GROUP BY sku
)
UPDATE `+stock+` s SET available = s.available + back.qty FROM back WHERE s.sku = back.sku`, r.keep.Microseconds())
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("redisstock: load: settle holds: %w", err)
	}
	return nil
}

// loadGap is how far each Load moves every bucket's sequence on: further
// than the events a lost Redis can have held that PostgreSQL never got.
const loadGap = 1 << 32

// appliedSeqs starts a history for the rebuilt Redis: every bucket's
// sequence moves loadGap past the highest one PostgreSQL applied, and the
// stream entry that carried it is forgotten, so that the rebuilt Redis's
// events are compared with each other only, and the writer refuses an
// event of the Redis that was lost (its number is below, its entry above).
// It returns the new sequences, for the markers.
func (r *Reserver) appliedSeqs(ctx context.Context, tx pgx.Tx, epoch string) ([]int64, error) {
	seqs := make([]int64, r.buckets)
	bs := make([]int32, r.buckets)
	for b := range bs {
		bs[b] = int32(b)
	}
	t := r.store.Table("redisstock_bucket")
	rows, err := tx.Query(ctx, "INSERT INTO "+t+" AS t (bucket, seq, entry_ms, entry_n, epoch) SELECT b, $2, 0, 0, $3 FROM unnest($1::int[]) AS b"+
		" ON CONFLICT (bucket) DO UPDATE SET seq = t.seq + $2, entry_ms = 0, entry_n = 0, epoch = $3 RETURNING bucket, seq", bs, int64(loadGap), epoch)
	if err != nil {
		return nil, fmt.Errorf("redisstock: load: sequences: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b int
		var q int64
		if err := rows.Scan(&b, &q); err != nil {
			return nil, fmt.Errorf("redisstock: load: sequences: %w", err)
		}
		if b >= 0 && b < r.buckets {
			seqs[b] = q
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("redisstock: load: sequences: %w", err)
	}
	return seqs, nil
}

// loadBatch is how many keys one pipeline of Load writes.
const loadBatch = 1000

// loadStock writes each SKU's stock hash: its available units, version and
// backorder as PostgreSQL's stock row has them, and the counts Levels reads:
// sold, the units of its committed reservations and of those the ledger
// forgot (redisstock_sold: Purge, past Options.Retention), and received,
// available plus those plus the units of its held ones.
func (r *Reserver) loadStock(ctx context.Context, tx pgx.Tx, c redis.Cmdable) error {
	rows, err := tx.Query(ctx, `SELECT s.sku, s.available, s.fence, s.backorder, s.buyer_limit, coalesce(x.held, 0)::bigint, (coalesce(x.sold, 0) + coalesce(f.qty, 0))::bigint FROM `+r.store.Table("stock")+` s
LEFT JOIN (SELECT l.sku, sum(l.qty) FILTER (WHERE r.state = 1) AS held, sum(l.qty) FILTER (WHERE r.state = 2) AS sold
	FROM `+r.store.Table("reservation_line")+` l JOIN `+r.store.Table("reservation")+` r ON r.id = l.reservation_id
	WHERE r.state IN (1, 2) GROUP BY l.sku) x ON x.sku = s.sku
LEFT JOIN `+r.store.Table("redisstock_sold")+` f ON f.sku = s.sku`)
	if err != nil {
		return fmt.Errorf("redisstock: load: stock: %w", err)
	}
	defer rows.Close()
	p := c.Pipeline()
	split := map[string]int{} // the k of each split SKU: one more than its last bucket's number
	for rows.Next() {
		var sku string
		var a, v, bo, lim, held, sold int64
		if err := rows.Scan(&sku, &a, &v, &bo, &lim, &held, &sold); err != nil {
			return fmt.Errorf("redisstock: load: stock: %w", err)
		}
		if base, j := splitSKU(sku); j > 0 && !r.loadNoSplit {
			split[base] = max(split[base], j+1)
		}
		p.HSet(ctx, r.stockKey(sku), "a", a, "v", v, "b", bo, "l", lim, "r", a+held+sold, "o", sold)
		if p.Len() >= loadBatch {
			if _, err := p.Exec(ctx); err != nil {
				return fmt.Errorf("redisstock: load: stock: %w", err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("redisstock: load: stock: %w", err)
	}
	// A split SKU's bucket 0 names its k: every bucket has its stock row
	// from the moment it was split (setSplit).
	for sku, k := range split {
		p.HSet(ctx, r.stockKey(sku), "k", k)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstock: load: stock: %w", err)
	}
	return nil
}

// loadReservations writes every reservation's record and the holds of the
// held ones, and rebuilds each buyer's usage of the SKUs with a limit: the
// units of the counted lines of the buyer's held and committed
// reservations, and those of the committed ones the ledger forgot
// (buyer_usage). With Options.Retention, a settled record gets what is
// left of its retention (by Now, from its ExpiresAt, as Purge counts it),
// and one past it is not written: the ID is unknown, as Purge would make
// it.
func (r *Reserver) loadReservations(ctx context.Context, tx pgx.Tx, c redis.Cmdable) error {
	rows, err := tx.Query(ctx, `SELECT r.id, r.state, r.expires_at, r.created_at, coalesce(r.settled_at, r.expires_at), coalesce(r.buyer, ''), r.partial, l.sku, l.qty, coalesce(l.counted, false), coalesce(h.attempt, 1) FROM `+r.store.Table("reservation")+` r
LEFT JOIN `+r.store.Table("reservation_line")+` l ON l.reservation_id = r.id
LEFT JOIN `+r.store.Table("redisstock_hold")+` h ON h.reservation_id = l.reservation_id AND h.sku = l.sku ORDER BY r.id, l.sku`)
	if err != nil {
		return fmt.Errorf("redisstock: load: reservations: %w", err)
	}
	defer rows.Close()
	p := c.Pipeline()
	var cur *loadedRes
	type usageOf struct{ sku, buyer string }
	usage := map[usageOf]int64{}
	flush := func() {
		if cur != nil {
			r.writeLoaded(ctx, p, cur)
		}
	}
	for rows.Next() {
		var id, buyer string
		var sku *string
		var st int16
		var exp, cr, settled time.Time
		var qty *int64
		var at int64
		var partial, counted bool
		if err := rows.Scan(&id, &st, &exp, &cr, &settled, &buyer, &partial, &sku, &qty, &counted, &at); err != nil {
			return fmt.Errorf("redisstock: load: reservations: %w", err)
		}
		if cur == nil || cur.id != id {
			flush()
			cur = &loadedRes{id: id, st: st, exp: exp, cr: cr, buyer: buyer, partial: partial}
			if r.keep > 0 && inventory.State(st) != inventory.Held {
				cur.keep, cur.skip = r.keepMillis(settled)
				cur.skip = !cur.skip
			}
			if p.Len() >= loadBatch {
				if _, err := p.Exec(ctx); err != nil {
					return fmt.Errorf("redisstock: load: reservations: %w", err)
				}
			}
		}
		if sku != nil && qty != nil { // a tombstone of Cancel has no lines
			cur.lines = append(cur.lines, inventory.Line{SKU: *sku, Qty: *qty})
			cur.counted = append(cur.counted, counted && buyer != "")
			cur.at = max(cur.at, at)
			if counted && buyer != "" && (inventory.State(st) == inventory.Held || inventory.State(st) == inventory.Committed) {
				usage[usageOf{*sku, buyer}] += *qty
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("redisstock: load: reservations: %w", err)
	}
	flush()
	forgot, err := tx.Query(ctx, `SELECT sku, buyer, used FROM `+r.store.Table("buyer_usage"))
	if err != nil {
		return fmt.Errorf("redisstock: load: usage: %w", err)
	}
	for forgot.Next() {
		var u usageOf
		var n int64
		if err := forgot.Scan(&u.sku, &u.buyer, &n); err != nil {
			forgot.Close()
			return fmt.Errorf("redisstock: load: usage: %w", err)
		}
		usage[u] += n
	}
	forgot.Close()
	if err := forgot.Err(); err != nil {
		return fmt.Errorf("redisstock: load: usage: %w", err)
	}
	for u, n := range usage {
		p.HSet(ctx, r.usageKey(u.sku), u.buyer, n)
		if p.Len() >= loadBatch {
			if _, err := p.Exec(ctx); err != nil {
				return fmt.Errorf("redisstock: load: usage: %w", err)
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstock: load: reservations: %w", err)
	}
	return nil
}

type loadedRes struct {
	id      string
	at      int64 // the attempt of its takes
	st      int16
	exp, cr time.Time
	buyer   string
	partial bool
	lines   []inventory.Line
	counted []bool // per line: its units count against the buyer's usage
	keep    int64  // a settled one: milliseconds left of its retention (0: for good)
	skip    bool   // a settled one past its retention: not written
}

// countedFlags returns the counted flags of lines as the script keeps them
// ("1" or "0" per line), or "" when no line counts.
func countedFlags(counted []bool) string {
	if !slices.Contains(counted, true) {
		return ""
	}
	b := make([]byte, len(counted))
	for i, c := range counted {
		b[i] = '0'
		if c {
			b[i] = '1'
		}
	}
	return string(b)
}

// writeLoaded queues the record of a reservation, and for a held one its
// holds and its place in the due set.
func (r *Reserver) writeLoaded(ctx context.Context, p redis.Pipeliner, l *loadedRes) {
	if l.skip {
		return
	}
	rb := r.bucket(l.id)
	fields := []any{"st", l.st, "at", max(l.at, 1), "exp", l.exp.UnixMicro(), "cr", l.cr.UnixMicro(), "n", len(l.lines)}
	for i, ln := range l.lines {
		fields = append(fields, "s"+strconv.Itoa(i+1), ln.SKU, "q"+strconv.Itoa(i+1), ln.Qty)
	}
	if l.buyer != "" {
		fields = append(fields, "y", l.buyer)
	}
	if l.partial {
		fields = append(fields, "p", "1")
	}
	hc := countedFlags(l.counted)
	if hc != "" {
		fields = append(fields, "hc", hc)
	}
	p.HSet(ctx, r.recordKey(l.id), fields...)
	if inventory.State(l.st) != inventory.Held {
		if l.keep > 0 {
			p.PExpire(ctx, r.recordKey(l.id), time.Duration(l.keep)*time.Millisecond)
		}
		return
	}
	for _, g := range r.groups(l.lines) {
		hold := []any{"at", max(l.at, 1), "st", "T", "vs", ""}
		gcounted := make([]bool, len(g.idx))
		for i, k := range g.idx {
			gcounted[i] = l.counted[k]
		}
		if gc := countedFlags(gcounted); gc != "" {
			hold = append(hold, "hc", gc, "y", l.buyer)
		}
		p.HSet(ctx, r.holdKey(g.bucket, l.id), hold...)
	}
	p.ZAdd(ctx, r.dueKey(rb), redis.Z{Score: float64(l.exp.UnixMicro()), Member: l.id})
}

// wipe deletes every key under the prefix through c, or on every master of
// a cluster.
func (r *Reserver) wipe(ctx context.Context, c redis.Cmdable) error {
	return r.scan(ctx, c, "", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		p := c.Pipeline()
		for _, k := range keys {
			p.Unlink(ctx, k)
		}
		_, err := p.Exec(ctx)
		return err
	})
}

// scan calls fn with the keys under the prefix that match the glob pattern
// after it ("" for all), in pages, through c, or on every master of a
// cluster, passing the client of the server that holds them. The masters
// are scanned at once, but fn is called for one page at a time.
func (r *Reserver) scan(ctx context.Context, c redis.Cmdable, pattern string, fn func(ctx context.Context, c redis.Cmdable, keys []string) error) error {
	var mu sync.Mutex
	call := func(ctx context.Context, c redis.Cmdable, keys []string) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(ctx, c, keys)
	}
	each := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, escapeGlob(r.prefix)+pattern+"*", loadBatch).Iterator()
		var page []string
		for iter.Next(ctx) {
			page = append(page, iter.Val())
			if len(page) >= loadBatch {
				if err := call(ctx, c, page); err != nil {
					return err
				}
				page = nil
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		return call(ctx, c, page)
	}
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return each(ctx, m) })
	}
	return each(ctx, c)
}

// escapeGlob escapes the characters SCAN MATCH treats as special.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
