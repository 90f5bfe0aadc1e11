package redisstock

import (
	"context"
	"fmt"
	"time"

	"github.com/oversell/inventory"
)

var _ inventory.Purger = (*Reserver)(nil)

// forgetSQL returns the statement that deletes from the ledger the settled
// reservations named by the rows of src (columns id; cr: only a row
// created before it goes; before: of its redisstock_hold rows, those of an
// attempt below it go), with their lines and holds, and reports how many
// it deleted. What a forgotten committed reservation sold still counts: its
// units go to redisstock_sold, and those of its counted lines to its
// buyer's buyer_usage, which Load and Reconcile add to what the ledger's
// reservations count. The snapshot of the statement is taken before the
// DELETE, so the lines are read before the foreign key deletes them.
// Purge and the writer (an ID taken anew after its record expired in
// Redis) both forget through it.
func (r *Reserver) forgetSQL(src string) string {
	res, lines, holds := r.store.Table("reservation"), r.store.Table("reservation_line"), r.store.Table("redisstock_hold")
	sold, usage := r.store.Table("redisstock_sold"), r.store.Table("buyer_usage")
	return `WITH u AS (` + src + `),
d AS (DELETE FROM ` + res + ` r USING u WHERE r.id = u.id AND r.state <> 1 AND r.created_at < u.cr RETURNING r.id, r.state, r.buyer, u.before),
l AS (SELECT l.sku, l.qty, coalesce(l.counted, false) AS counted, d.buyer FROM ` + lines + ` l JOIN d ON l.reservation_id = d.id WHERE d.state = 2),
s AS (INSERT INTO ` + sold + ` AS s (sku, qty) SELECT l.sku, sum(l.qty)::bigint FROM l GROUP BY l.sku ORDER BY l.sku
	ON CONFLICT (sku) DO UPDATE SET qty = s.qty + EXCLUDED.qty),
b AS (INSERT INTO ` + usage + ` AS b (sku, buyer, used) SELECT l.sku, l.buyer, sum(l.qty)::bigint FROM l WHERE l.counted AND l.buyer IS NOT NULL
	GROUP BY l.sku, l.buyer ORDER BY l.sku, l.buyer ON CONFLICT (sku, buyer) DO UPDATE SET used = b.used + EXCLUDED.used),
h AS (DELETE FROM ` + holds + ` h USING d WHERE h.reservation_id = d.id AND h.attempt < d.before)
SELECT count(*)::bigint FROM d`
}

// Purge deletes from the ledger at most limit settled reservations
// (Committed, Released, Expired, and the tombstones of Cancel) whose
// Options.Retention has passed by Options.Now, oldest first, with their
// lines and their redisstock_hold rows, in one statement, and reports how
// many it deleted. The ledger's rows of this strategy record no moment of
// settling: a reservation counts as settled at its ExpiresAt (a commit or
// release comes before it, so such a row is kept a little longer). Held
// reservations are never deleted, and no unit moves: the units a
// committed one sold stay counted (redisstock_sold, and buyer_usage for a
// buyer's counted lines), so that a Load rebuilds the same sold units and
// usage as before. Redis forgets the same reservations by itself, on its
// own clock (see Options.Retention): Purge bounds the ledger, not Redis.
// Candidates are locked with FOR UPDATE SKIP LOCKED, so purgers in many
// processes share them and never delete one twice. Without a retention it
// deletes nothing and sends nothing. limit must be positive
// (inventory.ErrInvalidRequest).
func (r *Reserver) Purge(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if r.keep <= 0 {
		return 0, nil
	}
	// A reservation taken anew under the ID after its record expired in
	// Redis numbers its attempts from the moment it was reserved, at least
	// the retention after this one was: its takes, which may reach the
	// ledger before it does, keep their rows.
	src := `SELECT c.id, 'infinity'::timestamptz AS cr, (extract(epoch FROM c.created_at) * 1000000)::bigint + $3 AS before
FROM ` + r.store.Table("reservation") + ` c WHERE c.state <> 1 AND coalesce(c.settled_at, c.expires_at) < $1
ORDER BY coalesce(c.settled_at, c.expires_at) LIMIT $2 FOR UPDATE SKIP LOCKED`
	var n int64
	if err := r.store.DB().QueryRow(ctx, r.forgetSQL(src), r.clock().Add(-r.keep), limit, r.keep.Microseconds()).Scan(&n); err != nil {
		return 0, fmt.Errorf("redisstock: purge: %w", err)
	}
	return int(n), nil
}

// Retention returns Options.Retention, or 0 when the store keeps every
// reservation.
func (r *Reserver) Retention() time.Duration { return r.keep }

// pastRetention reports whether a settled reservation created at cr may
// have been forgotten by one side and not yet by the other: its retention
// has passed since it was created, by Now. Redis forgets a record the
// retention after it settled, on its own clock, and the ledger the
// retention after its ExpiresAt, both later than its creation.
func (r *Reserver) pastRetention(st inventory.State, cr time.Time) bool {
	return r.keep > 0 && st != inventory.Held && !cr.Add(r.keep).After(r.clock())
}

// keepMillis is the retention left to a settled record Load writes back,
// in milliseconds, by Now: the retention after ref (its ExpiresAt, or when
// it settled), at least 1. ok is false when none is left: the record is
// not written.
func (r *Reserver) keepMillis(ref time.Time) (ms int64, ok bool) {
	left := ref.Add(r.keep).Sub(r.clock())
	if left <= 0 {
		return 0, false
	}
	return max(left.Milliseconds(), 1), true
}
