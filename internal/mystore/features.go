package mystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// recordWith runs one attempt of a reservation with a Buyer or Partial in a
// READ COMMITTED transaction of its own, on one connection: the
// reservation row first (a taken ID fails with 1062 before any stock row is
// locked), then the stock rows of the lines, locked in SKU order, and the
// buyer's usage rows of the SKUs with a limit, locked after them; each line
// is decided under those locks by the rules of ledger.Grant, then its
// units taken, its line recorded with the units held, the counted units
// added to the buyer's usage, and COMMIT. The locking read waits as c
// says: NOWAIT, or the session's innodb_lock_wait_timeout set for the call
// and put back after it (the connection is discarded when that fails). It
// returns the units held of each line, or the server's refusal unwrapped
// when it may be tried again (Retryable).
func (s *Store) recordWith(ctx context.Context, c *Call, res inventory.Reservation, now time.Time) ([]int64, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, s.fail(ctx, "reserve", err)
	}
	defer conn.Close()
	if c.lock.seconds > 0 {
		if _, err := conn.ExecContext(ctx, "SET @inventory_lock_wait = @@SESSION.innodb_lock_wait_timeout, SESSION innodb_lock_wait_timeout = ?", c.lock.seconds); err != nil {
			return nil, s.afterSet(ctx, conn, err)
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			defer cancel()
			if _, err := conn.ExecContext(rctx, "SET SESSION innodb_lock_wait_timeout = @inventory_lock_wait"); err != nil {
				_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // never back to the pool with the call's timeout
			}
		}()
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, s.fail(ctx, "reserve", err)
	}
	held, err := s.takeWith(ctx, tx, c, res, now)
	if err != nil {
		rollback(tx)
		switch {
		case c.waitFinal && hasNumber(err, errLockWaitTimeout, errLockNoWait):
			return nil, s.fail(ctx, "reserve", err)
		case Retryable(err):
			return nil, err
		}
		return nil, s.fail(ctx, "reserve", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, s.afterCommit(ctx, "reserve", res.ID, err)
	}
	return held, nil
}

// afterSet is the error of the statement that sets the session's lock wait
// timeout, which changed nothing else.
func (s *Store) afterSet(ctx context.Context, conn *sql.Conn, err error) error {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // the timeout may be set
	return s.fail(ctx, "reserve", err)
}

// takeWith runs the statements of recordWith in tx, all but COMMIT.
func (s *Store) takeWith(ctx context.Context, tx *sql.Tx, c *Call, res inventory.Reservation, now time.Time) ([]int64, error) {
	var buyer any // NULL: none
	if res.Buyer != "" {
		buyer = []byte(res.Buyer)
	}
	partial := 0
	if res.Partial {
		partial = 1
	}
	if _, err := tx.ExecContext(ctx, s.q.recordAs, []byte(res.ID), micros(res.ExpiresAt), micros(now)); err != nil {
		return nil, err
	}
	n := len(res.Lines)
	skus := make([]any, n)
	for i, l := range res.Lines {
		skus[i] = []byte(l.SKU)
	}
	lock := " ORDER BY sku FOR UPDATE"
	if c.lock.noWait {
		lock += " NOWAIT"
	}
	read := make(map[string]ledger.Row, n)
	err := queryRows(ctx, tx, s.q.lockStock+"("+Placeholders(n, "?")+")"+lock, skus, func(rows *sql.Rows) error {
		var sku []byte
		var r ledger.Row
		if err := rows.Scan(&sku, &r.Available, &r.Limit); err != nil {
			return err
		}
		read[string(sku)] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The usage rows are read and written only under the lock of their
	// SKU's stock row, which this transaction holds now: they never wait.
	var limited []any
	for _, l := range res.Lines {
		if read[l.SKU].Limit > 0 && res.Buyer != "" {
			limited = append(limited, []byte(l.SKU))
		}
	}
	if len(limited) > 0 {
		err := queryRows(ctx, tx, s.q.lockUsage+"("+Placeholders(len(limited), "?")+") FOR UPDATE", append([]any{buyer}, limited...), func(rows *sql.Rows) error {
			var sku []byte
			var used int64
			if err := rows.Scan(&sku, &used); err != nil {
				return err
			}
			r := read[string(sku)]
			r.Used = used
			read[string(sku)] = r
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	held := make([]int64, n)
	lines := make([]any, 0, 6*n)
	take := make([]any, 0, 3*n)
	var usage []any
	for i, l := range res.Lines {
		row, ok := read[l.SKU]
		if !ok {
			return nil, &inventory.UnknownSKUError{SKU: l.SKU}
		}
		q, err := ledger.Grant(l, res.Buyer, res.Partial, row)
		if err != nil {
			return nil, err
		}
		held[i] = q
		counted := 0
		if row.Limit > 0 { // Grant refuses a limited line without a buyer
			counted = 1
			usage = append(usage, []byte(l.SKU), buyer, q)
		}
		lines = append(lines, []byte(res.ID), []byte(l.SKU), q, counted, buyer, partial)
		take = append(take, []byte(l.SKU), q)
	}
	if _, err := tx.ExecContext(ctx, s.q.addLines+Placeholders(n, "(?, ?, ?, ?, ?, ?)"), lines...); err != nil {
		return nil, err
	}
	take = append(take, skus...)
	if _, err := tx.ExecContext(ctx, s.q.takeStock+strings.Repeat("WHEN ? THEN ? ", n)+"END WHERE sku IN ("+Placeholders(n, "?")+")", take...); err != nil {
		return nil, err
	}
	if len(usage) > 0 {
		if _, err := tx.ExecContext(ctx, s.q.addUsage+Placeholders(len(usage)/3, "(?, ?, ?)")+" ON DUPLICATE KEY UPDATE used = used + VALUES(used)", usage...); err != nil {
			return nil, err
		}
	}
	return held, nil
}

// queryRows runs query with args in tx and calls scan for each row.
func queryRows(ctx context.Context, tx *sql.Tx, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
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
	return ledger.Extend(ctx, s.name, extending{settling{s}}, id, ttl, s.Now())
}

// MaxHold returns Options.MaxHold, or its default.
func (s *Store) MaxHold() time.Duration { return s.hold }

// extending is the store as the ledger's rules see it while Extend runs.
type extending struct{ settling }

func (t extending) ExtendActive(ctx context.Context, id string, until, now time.Time) (bool, error) {
	s := t.s
	st, err := s.Stmt(ctx, s.q.extend)
	if err != nil {
		return false, s.fail(ctx, "extend", err)
	}
	r, err := st.ExecContext(ctx, micros(until), s.hold.Microseconds(), []byte(id), micros(now))
	if err != nil {
		return false, s.afterCommit(ctx, "extend", id, err)
	}
	if n, err := r.RowsAffected(); err == nil && n == 1 {
		return true, nil
	}
	// No row changed: either none is held and active, or its expiry is
	// already as far as this call would move it.
	st, err = s.Stmt(ctx, s.q.active)
	if err != nil {
		return false, s.fail(ctx, "extend", err)
	}
	var one int
	err = st.QueryRowContext(ctx, []byte(id), micros(now)).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, s.fail(ctx, "extend", err)
	}
	return true, nil
}
