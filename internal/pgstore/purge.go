package pgstore

import (
	"context"
	"time"

	"github.com/oversell/inventory"
)

// Purge deletes at most limit settled reservations (Committed, Released,
// Expired, and the tombstones of Cancel) that settled more than
// Options.Retention ago by the store's clock, with their lines, in one
// statement, oldest first, and reports how many it deleted. Held
// reservations are never deleted, whatever their age, and no unit moves:
// sold units stay sold. Without a retention it deletes nothing and sends
// nothing.
//
// A reservation settled by a writer that does not record the moment (a
// version of the store before 0005_retention.sql) counts as settled at its
// ExpiresAt: a commit or release comes before it, so such a row is kept a
// little longer; an expiry comes at or after it, so an expired hold the
// sweepers reached late may go sooner after its sweep.
//
// Candidates are locked with FOR UPDATE SKIP LOCKED, so purgers in many
// processes share them, never delete one twice and never wait for one
// another. Purge locks no stock row and no held reservation: Reserve,
// Commit and Release never wait for it, but a Reserve reusing the ID of a
// reservation being purged, which waits for that statement.
//
// Once purged, an ID is unknown: Lookup, Commit and Release fail with
// inventory.ErrNotFound, Cancel records a tombstone, and Reserve with that
// ID makes a new reservation. Idempotency on an ID therefore lasts as long as
// the retention. limit must be positive (inventory.ErrInvalidRequest). An
// error after the statement was sent may come after it deleted rows; calling
// again is harmless.
func (s *Store) Purge(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.keep <= 0 {
		return 0, nil
	}
	s, done, err := s.on(ctx, "purge")
	if err != nil {
		return 0, err
	}
	defer done()
	var n int
	if err := s.db.QueryRow(ctx, s.q.purge, s.Now().Add(-s.keep), limit).Scan(&n); err != nil {
		return 0, s.afterCommit(ctx, "purge", "", err)
	}
	return n, nil
}

// Retention returns Options.Retention, or 0 when the store keeps every
// reservation.
func (s *Store) Retention() time.Duration { return s.keep }
