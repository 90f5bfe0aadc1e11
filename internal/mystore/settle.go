package mystore

import (
	"context"
	"database/sql"
	"errors"
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
// to stock in the same transaction. It mirrors Commit. The common case is
// one CALL of return_units, which releases the reservation only while it is
// held and active; any other state is then looked up and settled as the
// ledger's rules say.
func (s *Store) Release(ctx context.Context, id string) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.Now()
	t := settling{s}
	if err := t.ReturnUnits(ctx, "release", inventory.Reservation{ID: id}, inventory.Released, now); !errors.Is(err, ledger.ErrMoved) {
		return err
	}
	return ledger.Settle(ctx, s.name, t, id, inventory.Released, now)
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
	r, err := st.ExecContext(ctx, micros(now), []byte(id), micros(now))
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
	r, err := st.ExecContext(ctx, []byte(id), micros(now), micros(now), micros(now))
	if err != nil {
		return false, t.s.afterCommit(ctx, "cancel", id, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

func (t settling) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return t.s.Lookup(ctx, id)
}

// ExpireDue expires at most limit held reservations whose expiry has passed
// (at most 1000 in one call), returns their units, and reports how many it
// expired. Each hold is expired by a CALL of the return_units procedure of
// its own, which moves it only while it is still held and due and gives its
// units back in SKU order in the same transaction, so that a stock row is
// locked only inside the server, never across a round trip; sweepers in
// many processes may read the same due holds, and each is expired once; a
// count below limit means no due hold was left. An error stops the sweep:
// the holds expired before it are counted.
func (s *Store) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.Now()
	limit = min(limit, maxExpireBatch)
	n := 0
	t := settling{s}
	// A hold another sweeper expired first is read again by no later
	// round: the rounds end when a read finds fewer due holds than are
	// still wanted, so that a short count means none was left.
	for n < limit {
		want := limit - n
		ids, err := s.dueIDs(ctx, now, want)
		if err != nil {
			return n, s.fail(ctx, "expire", err)
		}
		for _, id := range ids {
			err := t.ReturnUnits(ctx, "expire", inventory.Reservation{ID: id}, inventory.Expired, now)
			switch {
			case err == nil:
				n++
			case errors.Is(err, ledger.ErrMoved): // settled or expired by another call
			default:
				return n, err
			}
		}
		if len(ids) < want {
			break
		}
	}
	return n, nil
}

// dueIDs reads the IDs of at most limit holds due at now, the longest due
// first.
func (s *Store) dueIDs(ctx context.Context, now time.Time, limit int) ([]string, error) {
	st, err := s.Stmt(ctx, s.q.dueIDs)
	if err != nil {
		return nil, err
	}
	var ids []string
	for range maxReadRounds {
		ids = ids[:0]
		if err = s.readIDs(ctx, st, &ids, now, limit); !lostConn(ctx, err) {
			break
		}
	}
	return ids, err
}

func (s *Store) readIDs(ctx context.Context, st *sql.Stmt, ids *[]string, now time.Time, limit int) error {
	rows, err := st.QueryContext(ctx, micros(now), limit)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			return err
		}
		*ids = append(*ids, string(id))
	}
	return rows.Err()
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
		var partial sql.NullInt16
		var buyer, sku []byte
		var qty sql.NullInt64
		if err := rows.Scan(&state, &exp, &buyer, &partial, &sku, &qty); err != nil {
			return inventory.Reservation{}, s.fail(ctx, "lookup", err)
		}
		found = true
		r.State = inventory.State(state)
		if sku != nil {
			r.Buyer, r.Partial = string(buyer), partial.Int16 != 0
		}
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
