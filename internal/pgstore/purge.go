package pgstore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

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
// After a full batch, the next call starts reading at the newest moment
// that batch purged, so that a run of batches through a large backlog does
// not read again the index entries of the rows the batches before it
// deleted (VACUUM removes those later); a short batch sets it back to the
// oldest.
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
	var last pgtype.Timestamptz
	if err := s.db.QueryRow(ctx, s.q.purge, s.Now().Add(-s.keep), limit, s.mark.from()).Scan(&n, &last); err != nil {
		return 0, s.afterCommit(ctx, "purge", "", err)
	}
	s.mark.after(n == limit, last)
	return n, nil
}

// purgeMark is where the next Purge of this store starts reading the purge
// index. A deleted row stays in the index until VACUUM removes it, so that a
// run of full batches through a large backlog, each starting at the oldest
// entry, would read every entry the batches before it deleted: each batch
// after a full one starts at the newest moment that batch purged instead.
// A short batch ends the run and sets the mark back to the oldest entry, so
// that rows left behind it (locked by a purger that then failed) are found
// by the next run.
type purgeMark struct {
	mu sync.Mutex
	at time.Time // zero: from the oldest
}

func (m *purgeMark) from() pgtype.Timestamptz {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() {
		return pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	}
	return pgtype.Timestamptz{Time: m.at, Valid: true}
}

func (m *purgeMark) after(full bool, last pgtype.Timestamptz) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !full:
		m.at = time.Time{}
	case last.InfinityModifier == pgtype.Finite && last.Valid && last.Time.After(m.at):
		m.at = last.Time
	}
}

// Retention returns Options.Retention, or 0 when the store keeps every
// reservation.
func (s *Store) Retention() time.Duration { return s.keep }
