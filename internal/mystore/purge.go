package mystore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/oversell/inventory"
)

// maxPurgeBatch bounds the reservations one Purge deletes, so that a call
// holds few row locks for a short time.
const maxPurgeBatch = 1000

// Purge deletes at most limit settled reservations (Committed, Released,
// Expired, and the tombstones of Cancel) that settled more than
// Options.Retention ago by the store's clock, at most 1000 in one call,
// with their lines, oldest first, and reports how many it deleted. Held
// reservations are never deleted, whatever their age, and no unit moves:
// sold units stay sold. Without a retention it deletes nothing and sends
// nothing.
//
// A reservation settled by a writer that does not record the moment (a
// version of the store before the migration retention) counts as settled
// at its ExpiresAt: a commit or release comes before it, so such a row is
// kept a little longer; an expiry comes at or after it, so an expired hold
// the sweepers reached late may go sooner after its sweep.
//
// One READ COMMITTED transaction reads the candidates through the index of
// settled reservations (held ones are not in its range) with FOR UPDATE
// SKIP LOCKED, deletes them by primary key, their lines with them (ON DELETE
// CASCADE), and commits: purgers in many processes share the work, never
// delete one twice and never wait for one another. Purge locks no stock row
// and no held reservation: Reserve, Commit and Release never wait for it,
// but a Reserve reusing the ID of a reservation being purged, which waits
// for the purge's commit.
//
// Once purged, an ID is unknown: Lookup, Commit and Release fail with
// inventory.ErrNotFound, Cancel records a tombstone, and Reserve with that
// ID makes a new reservation. Idempotency on an ID therefore lasts as long
// as the retention. limit must be positive (inventory.ErrInvalidRequest).
// An error after the COMMIT was sent is an *inventory.OutcomeUnknownError:
// the batch may have been deleted; calling again is harmless.
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
	limit = min(limit, maxPurgeBatch)
	cutoff := -micros(s.Now().Add(-s.keep)) // the keys of reservation_sweep are minus when they settled
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	defer conn.Close()
	lock := purgeLockName(s.schema)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return 0, nil // another purger is at work
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_, _ = conn.ExecContext(rctx, "SELECT RELEASE_LOCK(?)", lock)
	}()
	var n int
	for range maxVictimRounds {
		n, err = s.purge(ctx, conn, cutoff, limit)
		if !Retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if Retryable(err) {
		return 0, fmt.Errorf("%s: purge: %w: %w", s.name, inventory.ErrContended, err)
	}
	return n, err
}

// purgeLockName is the GET_LOCK name that lets one purger of a database at
// a time work (at most 64 characters).
func purgeLockName(schema string) string {
	h := fnv.New64a()
	h.Write([]byte("github.com/oversell/inventory/purge\x00"))
	h.Write([]byte(schema))
	return fmt.Sprintf("inventory-purge-%016x", h.Sum64())
}

// purge runs one purge transaction on conn. It returns the server's refusal
// unwrapped when it may be tried again (Retryable): the victim of a
// deadlock rolls back its whole batch.
func (s *Store) purge(ctx context.Context, conn *sql.Conn, cutoff int64, limit int) (int, error) {
	sel, err := s.Stmt(ctx, s.q.purgeIDs)
	if err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	defer rollback(tx)
	ids, err := purgeCandidates(ctx, tx.StmtContext(ctx, sel), cutoff, limit)
	if Retryable(err) {
		return 0, err
	}
	if err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	r, err := tx.ExecContext(ctx, s.q.purge+"("+Placeholders(len(ids), "?")+")", ids...)
	if Retryable(err) {
		return 0, err
	}
	if err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return 0, s.fail(ctx, "purge", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, s.afterCommit(ctx, "purge", "", err)
	}
	return int(n), nil
}

// purgeCandidates locks and returns the IDs of at most limit settled
// reservations whose sweep_key is between cutoff (minus the moment before
// which they settled) and 0, oldest first.
func purgeCandidates(ctx context.Context, st *sql.Stmt, cutoff int64, limit int) ([]any, error) {
	defer st.Close()
	rows, err := st.QueryContext(ctx, cutoff, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []any
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Retention returns Options.Retention, or 0 when the store keeps every
// reservation.
func (s *Store) Retention() time.Duration { return s.keep }
