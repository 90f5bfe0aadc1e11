package redislock

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
	"github.com/oversell/inventory/internal/pgstore"
)

// stepQueries are the statements of the stock-taking step, built once per
// schema so that pgx caches their prepared forms.
type stepQueries struct {
	// read is the plain read of the read-check-write: no row lock. It reads
	// each row's limit per buyer too.
	read string
	// readAs is read for a request with a buyer: with the buyer's usage of
	// each SKU (NULL: none recorded).
	readAs string
	// write is the fenced write: it sets the new stock and the holder's fence
	// only while the row's fence is older than the holder's and the stock is
	// still what was read, and raises an error otherwise, so that the
	// transaction rolls back.
	write string
	// use adds the units of a line to its buyer's usage of the SKU while
	// that stays within the limit, and raises an error otherwise, so that
	// the transaction rolls back.
	use string
	// held records, on the reservation's lines, the units held (fewer than
	// asked for with Partial) and which lines count against the buyer.
	held string
	// plainWrite is the write of the lock alone (tests only).
	plainWrite string
}

func newStepQueries(store *pgstore.Store) stepQueries {
	stock, usage := store.Table("stock"), store.Table("buyer_usage")
	return stepQueries{
		read: `SELECT sku, available, fence, buyer_limit, NULL::bigint FROM ` + stock + ` WHERE sku = ANY ($1::text[]) ORDER BY sku`,
		readAs: `SELECT s.sku, s.available, s.fence, s.buyer_limit, u.used FROM ` + stock + ` s
LEFT JOIN ` + usage + ` u ON u.sku = s.sku AND u.buyer = $2 WHERE s.sku = ANY ($1::text[]) ORDER BY s.sku`,
		write: store.GuardSQL(`UPDATE ` + stock + ` SET available = $2, fence = $3
WHERE sku = $1 AND fence < $3 AND available = $4 RETURNING 1`),
		use: store.GuardSQL(`INSERT INTO ` + usage + ` AS u (sku, buyer, used) VALUES ($1, $2, $3)
ON CONFLICT (sku, buyer) DO UPDATE SET used = u.used + EXCLUDED.used WHERE u.used + EXCLUDED.used <= $4 RETURNING 1`),
		held: `UPDATE ` + store.Table("reservation_line") + ` l SET qty = u.q, counted = u.c
FROM unnest($2::text[], $3::bigint[], $4::bool[]) AS u (s, q, c) WHERE l.reservation_id = $1 AND l.sku = u.s`,
		plainWrite: `UPDATE ` + stock + ` SET available = $2 WHERE sku = $1`,
	}
}

// errStockMoved reports that a fenced write found its row changed since the
// read, or a buyer's usage past the limit: by a writer that takes no lock (a
// release, an expiry, stock administration), or by another holder of the
// lock. The transaction rolled
// back; Reserve runs it again under the same locks, and the new read tells a
// newer holder (FencedError) from the rest. It never leaves the package.
var errStockMoved = errors.New("redislock: stock moved between read and write")

// stockRow is a row of stock as the step read it.
type stockRow struct {
	sku       string
	available int64
	fence     int64
	limit     int64 // the limit per buyer; 0: none
	used      int64 // the buyer's usage, for a request with a buyer
}

// step is the stock-taking step of one Reserve attempt: it reads the rows of
// the request's SKUs in the batch that records the reservation, then checks
// them and queues their fenced writes, which the store sends with COMMIT.
type step struct {
	ctx    context.Context // of the Reserve call
	r      *Reserver
	lease  *lease
	fences []int64 // the lock's fence of each line, in sorted SKU order
	rows   []stockRow
}

var (
	_ pgstore.RequestStep = (*step)(nil)
	_ pgstore.Committer   = (*step)(nil)
)

// Committed releases the locks as soon as the reservation is committed:
// the next holder's wait does not include the round trip that hands the
// PostgreSQL connection back.
func (s *step) Committed() { s.lease.releaseOnce(s.ctx) }

// Queue is QueueTake for lines alone: the store calls QueueTake.
func (s *step) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	held := make([]int64, len(lines))
	for i, l := range lines {
		held[i] = l.Qty
	}
	return s.QueueTake(b, &pgstore.Take{Lines: lines, Held: held})
}

// QueueTake queues the plain read of the rows of t's lines (sorted by SKU),
// with the buyer's usage for a request with a buyer.
func (s *step) QueueTake(b *pgx.Batch, t *pgstore.Take) pgstore.Finish {
	s.rows = s.rows[:0]
	scan := func(rows pgx.Rows) error {
		var err error
		s.rows, err = scanStock(rows, s.rows)
		return err
	}
	if t.Buyer == "" {
		b.Queue(s.r.q.read, skusOf(t.Lines)).Query(scan)
	} else {
		b.Queue(s.r.q.readAs, skusOf(t.Lines), t.Buyer).Query(scan)
	}
	return func(b *pgx.Batch) error { return s.finish(b, t) }
}

// finish checks the stock read for every line, in SKU order, by every rule
// of its SKU (ledger.Grant: the stock, the limit per buyer, Partial), and
// queues, SKU by SKU in the lock order of the schema, the write of each
// line with its fence and the addition to its buyer's usage, then the
// record of what was held.
func (s *step) finish(b *pgx.Batch, t *pgstore.Take) error {
	lines := t.Lines
	read, err := s.match(lines)
	if err != nil {
		return err
	}
	if !s.r.unfenced {
		// A row that carries a newer fence was written by a newer holder of
		// the lock: this holder's lock lapsed, and it stops here, before it
		// decides anything on what it read. Fences are unique per SKU.
		for i, l := range lines {
			if read[i] != nil && read[i].fence > s.fences[i] {
				return &FencedError{SKU: l.SKU, Fence: s.fences[i], Seen: read[i].fence}
			}
		}
	}
	counted := make([]bool, len(lines))
	for i, l := range lines {
		if read[i] == nil {
			return &inventory.UnknownSKUError{SKU: l.SKU}
		}
		n, err := ledger.Grant(l, t.Buyer, t.Partial, ledger.Row{Available: read[i].available, Limit: read[i].limit, Used: read[i].used})
		if err != nil {
			return err
		}
		t.Held[i], counted[i] = n, read[i].limit > 0
	}
	if s.r.beforeWrite != nil {
		s.r.beforeWrite()
	}
	for i, l := range lines {
		if s.r.unfenced {
			b.Queue(s.r.q.plainWrite, l.SKU, read[i].available-t.Held[i])
		} else {
			pgstore.QueueGuarded(b, errStockMoved, s.r.q.write, l.SKU, read[i].available-t.Held[i], s.fences[i], read[i].available)
		}
		if counted[i] {
			pgstore.QueueGuarded(b, errStockMoved, s.r.q.use, l.SKU, t.Buyer, t.Held[i], read[i].limit)
		}
	}
	s.queueHeld(b, t, counted)
	return nil
}

// queueHeld queues the record of the units held of each line that holds
// fewer than it asked for or counts against the buyer; nothing when none
// does.
func (s *step) queueHeld(b *pgx.Batch, t *pgstore.Take, counted []bool) {
	var skus []string
	var qtys []int64
	var flags []bool
	for i, l := range t.Lines {
		if t.Held[i] != l.Qty || counted[i] {
			skus, qtys, flags = append(skus, l.SKU), append(qtys, t.Held[i]), append(flags, counted[i])
		}
	}
	if len(skus) > 0 {
		b.Queue(s.r.q.held, t.ID, skus, qtys, flags)
	}
}

// match returns, for each line, its row in s.rows, or nil for an unknown SKU.
// Both are sorted by SKU.
func (s *step) match(lines []inventory.Line) ([]*stockRow, error) {
	out := make([]*stockRow, len(lines))
	j := 0
	for i, l := range lines {
		for j < len(s.rows) && s.rows[j].sku < l.SKU {
			j++
		}
		if j < len(s.rows) && s.rows[j].sku == l.SKU {
			out[i] = &s.rows[j]
		}
	}
	if len(s.rows) > len(lines) {
		return nil, fmt.Errorf("redislock: read %d stock rows for %d lines", len(s.rows), len(lines))
	}
	return out, nil
}

func scanStock(rows pgx.Rows, into []stockRow) ([]stockRow, error) {
	defer rows.Close()
	for rows.Next() {
		var r stockRow
		var used *int64
		if err := rows.Scan(&r.sku, &r.available, &r.fence, &r.limit, &used); err != nil {
			return into, err
		}
		if used != nil {
			r.used = *used
		}
		into = append(into, r)
	}
	return into, rows.Err()
}

func skusOf(lines []inventory.Line) []string {
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	return skus
}
