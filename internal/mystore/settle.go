package mystore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// maxExpireBatch bounds the holds one ExpireDue transaction expires.
const maxExpireBatch = 1000

// Commit moves a held, active reservation to Committed, as the ledger's rules
// say: Committed again is nil; Released or Expired is an
// *inventory.StateError; a held reservation past its expiry is expired now
// and reported with state Expired; an unknown ID is inventory.ErrNotFound.
func (s *Store) Commit(ctx context.Context, id string) error {
	return ledger.Settle(ctx, s.name, settling{s}, id, inventory.Committed, s.Now())
}

// Release moves a held, active reservation to Released and returns its units
// to stock in the same transaction. It mirrors Commit.
func (s *Store) Release(ctx context.Context, id string) error {
	return ledger.Settle(ctx, s.name, settling{s}, id, inventory.Released, s.Now())
}

// Cancel releases a held reservation, or records an ID never seen as
// cancelled (a released reservation without lines), as the ledger's rules
// say: Released, Expired or cancelled already is nil; Committed is an
// *inventory.StateError; an overdue hold is expired now, which is nil too.
func (s *Store) Cancel(ctx context.Context, id string) error {
	return ledger.Cancel(ctx, s.name, settling{s}, id, s.Now())
}

// settling is the store as the ledger's rules see it while Commit or
// Release runs.
type settling struct{ s *Store }

func (t settling) CommitActive(ctx context.Context, id string, now time.Time) (bool, error) {
	st, err := t.s.Stmt(ctx, t.s.q.commit)
	if err != nil {
		return false, t.s.fail(ctx, "commit", err)
	}
	r, err := st.ExecContext(ctx, []byte(id), micros(now))
	if err != nil {
		return false, t.s.afterCommit(ctx, "commit", id, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// ReturnUnits is one CALL of the return_units procedure: the state change
// and the units given back in SKU order, committed in the server.
func (t settling) ReturnUnits(ctx context.Context, op string, r inventory.Reservation, to inventory.State, now time.Time) error {
	due := 0
	if to == inventory.Expired {
		due = 1
	}
	s := t.s
	st, err := s.Stmt(ctx, s.q.giveBack)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	_, err = st.ExecContext(ctx, []byte(r.ID), int(to), micros(now), due)
	return s.afterCommit(ctx, op, r.ID, err)
}

func (t settling) Tombstone(ctx context.Context, id string, now time.Time) (bool, error) {
	st, err := t.s.Stmt(ctx, t.s.q.tombstone)
	if err != nil {
		return false, t.s.fail(ctx, "cancel", err)
	}
	r, err := st.ExecContext(ctx, []byte(id), micros(now), micros(now))
	if err != nil {
		return false, t.s.afterCommit(ctx, "cancel", id, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

func (t settling) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return t.s.Lookup(ctx, id)
}

// returnLines gives the units of lines, sorted by SKU, back to stock in tx:
// rows are locked in the order every writer of stock uses.
func returnLines(ctx context.Context, txst *sql.Stmt, lines []inventory.Line) error {
	for _, l := range lines {
		if _, err := txst.ExecContext(ctx, l.Qty, []byte(l.SKU)); err != nil {
			return err
		}
	}
	return nil
}

// ExpireDue expires at most limit held reservations whose expiry has passed
// (at most 1000 in one call) and returns their units, in one transaction,
// and reports how many it expired. Due holds are claimed with FOR UPDATE
// SKIP LOCKED, so sweepers in many processes share them and never expire one
// twice.
func (s *Store) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	limit = min(limit, maxExpireBatch)
	now := s.Now()
	ret, err := s.Stmt(ctx, s.q.returnLine) // before the transaction holds a connection
	if err != nil {
		return 0, s.fail(ctx, "expire", err)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, s.fail(ctx, "expire", err)
	}
	n, err := s.expire(ctx, tx, tx.StmtContext(ctx, ret), now, limit)
	if err != nil || n == 0 {
		rollback(tx)
		if err != nil {
			return 0, s.fail(ctx, "expire", err)
		}
		return 0, nil
	}
	if err := s.afterCommit(ctx, "expire", "", tx.Commit()); err != nil {
		return 0, err
	}
	return n, nil
}

func (s *Store) expire(ctx context.Context, tx *sql.Tx, ret *sql.Stmt, now time.Time, limit int) (int, error) {
	rows, err := tx.QueryContext(ctx, s.q.claimDue, micros(now), limit)
	if err != nil {
		return 0, err
	}
	var ids []any
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return 0, err
	}
	in := "(" + Placeholders(len(ids), "?") + ")"
	if _, err := tx.ExecContext(ctx, "UPDATE "+s.Table("reservation")+" SET state = 4 WHERE state = 1 AND id IN "+in, ids...); err != nil {
		return 0, err
	}
	rows, err = tx.QueryContext(ctx, "SELECT sku, CAST(SUM(qty) AS SIGNED) FROM "+s.Table("reservation_line")+
		" WHERE reservation_id IN "+in+" GROUP BY sku ORDER BY sku", ids...)
	if err != nil {
		return 0, err
	}
	var lines []inventory.Line
	for rows.Next() {
		var sku []byte
		var qty int64
		if err := rows.Scan(&sku, &qty); err != nil {
			rows.Close()
			return 0, err
		}
		lines = append(lines, inventory.Line{SKU: string(sku), Qty: qty})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if err := returnLines(ctx, ret, lines); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// Lookup returns the reservation recorded under id, or an error that
// errors.Is inventory.ErrNotFound.
func (s *Store) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	if err := inventory.ValidateID(id); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	var r inventory.Reservation
	var err error
	for range maxReadRounds {
		if r, err = s.lookup(ctx, id); !lostConn(ctx, err) {
			break
		}
	}
	return r, err
}

func (s *Store) lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	st, err := s.Stmt(ctx, s.q.lookup)
	if err != nil {
		return inventory.Reservation{}, s.fail(ctx, "lookup", err)
	}
	rows, err := st.QueryContext(ctx, []byte(id))
	if err != nil {
		return inventory.Reservation{}, s.fail(ctx, "lookup", err)
	}
	defer rows.Close()
	r := inventory.Reservation{ID: id}
	var exp int64
	found := false
	for rows.Next() {
		var state int16
		var sku []byte
		var qty sql.NullInt64
		if err := rows.Scan(&state, &exp, &sku, &qty); err != nil {
			return inventory.Reservation{}, s.fail(ctx, "lookup", err)
		}
		found = true
		r.State = inventory.State(state)
		if sku != nil && qty.Valid {
			r.Lines = append(r.Lines, inventory.Line{SKU: string(sku), Qty: qty.Int64})
		}
	}
	if err := rows.Err(); err != nil {
		return inventory.Reservation{}, s.fail(ctx, "lookup", err)
	}
	if !found {
		return inventory.Reservation{}, fmt.Errorf("%s: lookup %q: %w", s.name, id, inventory.ErrNotFound)
	}
	if r.State < inventory.Held || r.State > inventory.Expired {
		return inventory.Reservation{}, fmt.Errorf("%s: lookup %q: stored state %d is not a state", s.name, id, r.State)
	}
	r.ExpiresAt = time.UnixMicro(exp).UTC()
	slices.SortFunc(r.Lines, func(a, b inventory.Line) int { return strings.Compare(a.SKU, b.SKU) })
	return r, nil
}
