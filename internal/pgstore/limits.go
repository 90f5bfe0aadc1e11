package pgstore

import (
	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// Rows is what a step's locking read of stock found: the row of each SKU,
// with its limit per buyer and, for a SKU with a limit read for a buyer,
// the buyer's usage. It is filled when the batch the read was queued on has
// run.
type Rows map[string]ledger.Row

// QueueRows queues on b the query sql with args, whose rows are (sku,
// available, limit, usage), usage a bigint or NULL, and returns the Rows it
// fills.
func QueueRows(b *pgx.Batch, sql string, args ...any) Rows {
	read := make(Rows)
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var sku string
			var r ledger.Row
			var used *int64
			if err := rows.Scan(&sku, &r.Available, &r.Limit, &used); err != nil {
				return err
			}
			if used != nil {
				r.Used = *used
			}
			read[sku] = r
		}
		return rows.Err()
	})
	return read
}

// LockSQL is the statement that locks, in the order every writer locks
// them, the stock rows of the SKUs $1 (text[]), each followed by the usage
// row of the buyer $2 (text, NULL for none) when the SKU has a limit, and
// returns them as QueueRows reads them; with $3 (bool) true, a row another
// transaction holds fails the statement at once (lock_not_available). A
// step that takes units under row locks reads a request with a Buyer with
// it, so that the buyer's usage is decided under the same locks as the
// stock.
func (s *Store) LockSQL() string { return s.q.lock }

// Grant decides every line of t against the rows read under their locks,
// by the rules of ledger.Grant, and sets t.Held. It returns, for each line,
// whether its units count against the buyer's usage (the SKU has a limit),
// or the refusal of the first line, in SKU order, that cannot be held: an
// *inventory.UnknownSKUError, an *inventory.LimitError or an
// *inventory.InsufficientStockError.
func (r Rows) Grant(t *Take) ([]bool, error) {
	counted := make([]bool, len(t.Lines))
	for i, l := range t.Lines {
		row, ok := r[l.SKU]
		if !ok {
			return nil, &inventory.UnknownSKUError{SKU: l.SKU}
		}
		n, err := ledger.Grant(l, t.Buyer, t.Partial, row)
		if err != nil {
			return nil, err
		}
		t.Held[i], counted[i] = n, row.Limit > 0
	}
	return counted, nil
}

// QueueHeld queues on b, when t holds fewer units of a line than it asked
// for or counts a line against its buyer, the statement that records the
// units held on the reservation's lines and adds the counted ones to the
// buyer's usage, whose rows LockSQL locked; else nothing.
func (s *Store) QueueHeld(b *pgx.Batch, t *Take, counted []bool) {
	skus := make([]string, 0, len(t.Lines))
	qtys := make([]int64, 0, len(t.Lines))
	flags := make([]bool, 0, len(t.Lines))
	for i, l := range t.Lines {
		if t.Held[i] != l.Qty || counted[i] {
			skus, qtys, flags = append(skus, l.SKU), append(qtys, t.Held[i]), append(flags, counted[i])
		}
	}
	if len(skus) == 0 {
		return
	}
	b.Queue(s.q.held, t.ID, nullable(t.Buyer), skus, qtys, flags)
}
