package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// Commit moves a held, active reservation to Committed, as
// inventory.Reserver documents: Committed again is nil; Released or Expired
// is an *inventory.StateError; a held reservation past its expiry is expired
// now (its units return) and reported as an *inventory.StateError with state
// Expired; an unknown ID is inventory.ErrNotFound.
func (s *Store) Commit(ctx context.Context, id string) error {
	return s.settle(ctx, id, inventory.Committed)
}

// Release moves a held, active reservation to Released and returns its units
// to stock in the same transaction. It mirrors Commit: Released again is nil;
// Committed or Expired is an *inventory.StateError; an overdue hold is
// expired now.
func (s *Store) Release(ctx context.Context, id string) error {
	return s.settle(ctx, id, inventory.Released)
}

// Cancel releases a held reservation, or records an ID never seen as
// cancelled (a released reservation without lines), as inventory.Reserver
// documents: Released, Expired or cancelled already is nil; Committed is an
// *inventory.StateError; an overdue hold is expired now, which is nil too.
// A tombstone is one statement; releasing a hold costs what Release does.
func (s *Store) Cancel(ctx context.Context, id string) error {
	l := &lazy{s: s, op: "cancel"}
	defer l.done()
	return ledger.Cancel(ctx, s.name, settling{l}, id, s.Now())
}

func (s *Store) settle(ctx context.Context, id string, to inventory.State) error {
	op := "commit"
	if to == inventory.Released {
		op = "release"
	}
	l := &lazy{s: s, op: op}
	defer l.done()
	return ledger.Settle(ctx, s.name, settling{l}, id, to, s.Now())
}

// settling is the store as the ledger's rules see it while Commit, Release
// or Cancel runs, on one connection taken when the first statement is to be
// sent.
type settling struct{ l *lazy }

func (t settling) CommitActive(ctx context.Context, id string, now time.Time) (bool, error) {
	s, err := t.l.store(ctx)
	if err != nil {
		return false, err
	}
	return s.commitActive(ctx, id, now)
}

func (t settling) ReturnUnits(ctx context.Context, op string, r inventory.Reservation, to inventory.State, now time.Time) error {
	s, err := t.l.store(ctx)
	if err != nil {
		return err
	}
	return s.returnUnits(ctx, op, r, to, now)
}

func (t settling) Tombstone(ctx context.Context, id string, now time.Time) (bool, error) {
	s, err := t.l.store(ctx)
	if err != nil {
		return false, err
	}
	tag, err := s.db.Exec(ctx, s.q.tombstone, id, now)
	if err != nil {
		return false, s.afterCommit(ctx, "cancel", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (t settling) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	s, err := t.l.store(ctx)
	if err != nil {
		return inventory.Reservation{}, err
	}
	return s.Lookup(ctx, id)
}

// commitActive commits the reservation if it is held and active, and reports
// whether it did.
func (s *Store) commitActive(ctx context.Context, id string, now time.Time) (bool, error) {
	tag, err := s.db.Exec(ctx, s.q.commit, id, now)
	if err != nil {
		return false, s.afterCommit(ctx, "commit", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// returnUnits moves the held reservation r to state to (Released while it is
// active, Expired once it is due) and gives its units back, in one implicit
// transaction. It fails with errMoved when r is no longer in that condition.
func (s *Store) returnUnits(ctx context.Context, op string, r inventory.Reservation, to inventory.State, now time.Time) error {
	cond := 0
	if to == inventory.Expired {
		cond = 1
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, 2)}
	queueCoded(b, codeMoved, errMoved, s.q.settle[cond], r.ID, now, int16(to))
	// Each line's units go back to the bucket they came from, in the order
	// every writer of stock locks rows.
	b.Queue(s.q.giveLines, r.ID)
	return s.afterCommit(ctx, op, r.ID, s.db.SendBatch(ctx, b).Close())
}

// Extend moves the expiry of the held, active reservation id to ttl from
// now, never earlier than it is and never past Options.MaxHold after it was
// reserved, in one statement, and returns the reservation as it is then,
// as inventory.Extender documents: a reservation not held is an
// *inventory.StateError with Op "extend"; a held one past its expiry is
// expired then and there (its units return, as Commit does) and reported
// as an *inventory.StateError with state Expired; an unknown ID is
// inventory.ErrNotFound.
func (s *Store) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	l := &lazy{s: s, op: "extend"}
	defer l.done()
	return ledger.Extend(ctx, s.name, extending{settling{l}}, id, ttl, s.Now())
}

// MaxHold returns Options.MaxHold, or its default.
func (s *Store) MaxHold() time.Duration { return s.hold }

// extending is the store as the ledger's rules see it while Extend runs.
type extending struct{ settling }

func (t extending) ExtendActive(ctx context.Context, id string, until, now time.Time) (bool, error) {
	s, err := t.l.store(ctx)
	if err != nil {
		return false, err
	}
	tag, err := s.db.Exec(ctx, s.q.extend, id, until, s.hold.Microseconds(), now)
	if err != nil {
		return false, s.afterCommit(ctx, "extend", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ExpireDue expires at most limit held reservations whose expiry has passed
// and returns their units, in one transaction, and reports how many it
// expired. Due holds are claimed with FOR UPDATE SKIP LOCKED, so sweepers in
// many processes share them and never expire one twice.
func (s *Store) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s, done, err := s.on(ctx, "expire")
	if err != nil {
		return 0, err
	}
	defer done()
	now := s.Now()
	var n int64
	var skus []string
	var buckets []*int32
	var buyers []*string
	var qtys []int64
	b := &pgx.Batch{}
	b.BeginTx(txOptions)
	b.Queue(s.q.claimDue, now, limit).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var sku string
			var bucket *int32
			var buyer *string
			var qty int64
			if err := rows.Scan(&n, &sku, &bucket, &buyer, &qty); err != nil {
				return err
			}
			skus, buckets, buyers, qtys = append(skus, sku), append(buckets, bucket), append(buyers, buyer), append(qtys, qty)
		}
		return rows.Err()
	})
	br := s.db.SendBatch(ctx, b)
	tx := br.Tx()
	if tx == nil {
		_ = br.Close()
		return 0, errNoBeginTx(s.name, "expire")
	}
	if err := br.Close(); err != nil {
		s.rollback(ctx, tx)
		return 0, s.fail(ctx, "expire", err)
	}
	if n == 0 {
		s.rollback(ctx, tx)
		return 0, nil
	}
	b = &pgx.Batch{}
	b.Queue(s.q.give, skus, buckets, qtys, buyers) // in the order every writer of stock locks rows, usage taken off

	if err := s.commit(ctx, tx, b, "expire", "", nil); err != nil {
		return 0, err
	}
	return int(n), nil
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
	s, done, err := s.on(ctx, "lookup")
	if err != nil {
		return inventory.Reservation{}, err
	}
	defer done()
	rows, err := s.db.Query(ctx, s.q.lookup, id)
	if err != nil {
		return inventory.Reservation{}, s.fail(ctx, "lookup", err)
	}
	defer rows.Close()
	r := inventory.Reservation{ID: id}
	found := false
	for rows.Next() {
		var state int16
		var buyer, sku *string
		var qty *int64
		if err := rows.Scan(&state, &r.ExpiresAt, &buyer, &r.Partial, &sku, &qty); err != nil {
			return inventory.Reservation{}, s.fail(ctx, "lookup", err)
		}
		found = true
		r.State = inventory.State(state)
		if buyer != nil {
			r.Buyer = *buyer
		}
		if sku != nil && qty != nil {
			r.Lines = append(r.Lines, inventory.Line{SKU: *sku, Qty: *qty})
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
	r.ExpiresAt = r.ExpiresAt.UTC()
	slices.SortFunc(r.Lines, func(a, b inventory.Line) int { return strings.Compare(a.SKU, b.SKU) })
	return r, nil
}
