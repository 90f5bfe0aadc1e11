package redislock

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
)

// stepQueries are the statements of the stock-taking step, built once per
// schema so that pgx caches their prepared forms.
type stepQueries struct {
	// read is the plain read of the read-check-write: no row lock.
	read string
	// write is the fenced write: it sets the new stock and the holder's fence
	// only while the row's fence is older than the holder's and the stock is
	// still what was read, and raises an error otherwise, so that the
	// transaction rolls back.
	write string
	// plainWrite is the write of the lock alone (tests only).
	plainWrite string
}

func newStepQueries(store *pgstore.Store) stepQueries {
	stock := store.Table("stock")
	return stepQueries{
		read: `SELECT sku, available, fence FROM ` + stock + ` WHERE sku = ANY ($1::text[]) ORDER BY sku`,
		write: store.GuardSQL(`UPDATE ` + stock + ` SET available = $2, fence = $3
WHERE sku = $1 AND fence < $3 AND available = $4 RETURNING 1`),
		plainWrite: `UPDATE ` + stock + ` SET available = $2 WHERE sku = $1`,
	}
}

// errStockMoved reports that a fenced write found its row changed since the
// read: by a writer that takes no lock (a release, an expiry, stock
// administration), or by another holder of the lock. The transaction rolled
// back; Reserve runs it again under the same locks, and the new read tells a
// newer holder (FencedError) from the rest. It never leaves the package.
var errStockMoved = errors.New("redislock: stock moved between read and write")

// stockRow is a row of stock as the step read it.
type stockRow struct {
	sku       string
	available int64
	fence     int64
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
	_ pgstore.Step      = (*step)(nil)
	_ pgstore.Committer = (*step)(nil)
)

// Committed releases the locks as soon as the reservation is committed:
// the next holder's wait does not include the round trip that hands the
// PostgreSQL connection back.
func (s *step) Committed() { s.lease.releaseOnce(s.ctx) }

// Queue queues the plain read of the rows of lines (sorted by SKU).
func (s *step) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	s.rows = s.rows[:0]
	b.Queue(s.r.q.read, skusOf(lines)).Query(func(rows pgx.Rows) error {
		var err error
		s.rows, err = scanStock(rows, s.rows)
		return err
	})
	return func(b *pgx.Batch) error { return s.finish(b, lines) }
}

// finish checks the stock read for every line, in SKU order, and queues the
// write of each line with its fence, in SKU order.
func (s *step) finish(b *pgx.Batch, lines []inventory.Line) error {
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
	for i, l := range lines {
		if read[i] == nil {
			return &inventory.UnknownSKUError{SKU: l.SKU}
		}
		if read[i].available < l.Qty {
			return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: read[i].available}
		}
	}
	if s.r.unfenced {
		if s.r.beforeWrite != nil {
			s.r.beforeWrite()
		}
		for i, l := range lines {
			b.Queue(s.r.q.plainWrite, l.SKU, read[i].available-l.Qty)
		}
		return nil
	}
	if s.r.beforeWrite != nil {
		s.r.beforeWrite()
	}
	for i, l := range lines {
		pgstore.QueueGuarded(b, errStockMoved, s.r.q.write, l.SKU, read[i].available-l.Qty, s.fences[i], read[i].available)
	}
	return nil
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
		if err := rows.Scan(&r.sku, &r.available, &r.fence); err != nil {
			return into, err
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
