package faulttest_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faulttest"
	"github.com/oversell/inventory/internal/mystore/mytest"
	"github.com/oversell/inventory/sqlcond"
)

// Each check of the package catches a strategy that breaks the guarantee it
// checks. The wrong strategies wrap sqlcond on MariaDB, whose own run of
// the checks passes (internal/mystore's TestFaults).

// wrapped makes sqlcond-mysql on db and hands it to wrap.
func wrapped(wrap func(s mytest.Strategy, db *sql.DB) mytest.Strategy) mytest.Maker {
	return func(db *sql.DB, schema string, now func() time.Time) (mytest.Strategy, error) {
		s, err := sqlcond.NewMySQL(db, &sqlcond.Options{Schema: schema, Now: now})
		if err != nil {
			return nil, err
		}
		return wrap(s, db), nil
	}
}

// againAsNew sends a request whose first call failed again under a new ID:
// a retry that applies a second time.
type againAsNew struct {
	mytest.Strategy
	mu     sync.Mutex
	failed map[string]bool
}

func (s *againAsNew) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	s.mu.Lock()
	again := s.failed[req.ID]
	s.mu.Unlock()
	if again {
		req.ID = "again-" + req.ID[6:]
	}
	r, err := s.Strategy.Reserve(ctx, req)
	if err != nil {
		s.mu.Lock()
		s.failed[req.ID] = true
		s.mu.Unlock()
	}
	return r, err
}

// hidesUnknown reports an unknown outcome as a plain failure: the caller
// is not told to retry.
type hidesUnknown struct{ mytest.Strategy }

func hide(err error) error {
	if errors.Is(err, inventory.ErrOutcomeUnknown) {
		return errors.New("wrong: the call failed")
	}
	return err
}

func (s hidesUnknown) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	r, err := s.Strategy.Reserve(ctx, req)
	return r, hide(err)
}
func (s hidesUnknown) Commit(ctx context.Context, id string) error {
	return hide(s.Strategy.Commit(ctx, id))
}
func (s hidesUnknown) Release(ctx context.Context, id string) error {
	return hide(s.Strategy.Release(ctx, id))
}

// halfApplied takes a cart's units in a transaction of its own before
// the reservation's, and gives them back in a third: a session killed
// between them loses units.
type halfApplied struct {
	mytest.Strategy
	db *sql.DB
}

func (s halfApplied) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	l := req.Lines[0] // the hammer's carts have one line
	r, err := s.db.ExecContext(ctx, "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?", l.Qty, l.SKU, l.Qty)
	if err != nil {
		return inventory.Reservation{}, err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return inventory.Reservation{}, &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty}
	}
	res, err := s.Strategy.Reserve(ctx, req)
	_, gerr := s.db.ExecContext(ctx, "UPDATE stock SET available = available + ? WHERE sku = ?", l.Qty, l.SKU)
	return res, errors.Join(err, gerr)
}

// leaves runs leak after every Reserve.
type leaves struct {
	mytest.Strategy
	leak func(ctx context.Context)
}

func (s *leaves) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	r, err := s.Strategy.Reserve(ctx, req)
	s.leak(context.WithoutCancel(ctx))
	return r, err
}

func TestChecksCatchWrongStrategies(t *testing.T) {
	sz := faulttest.Default
	for _, c := range []struct {
		name  string
		check func(t *testing.T, b faulttest.Backend) error
		wrap  func(s mytest.Strategy, db *sql.DB) mytest.Strategy
		says  string // in the error of the check that catches it; "" any
	}{
		{"LostRepliesCatchesARetryAppliedTwice", lostReplies, func(s mytest.Strategy, _ *sql.DB) mytest.Strategy {
			return &againAsNew{Strategy: s, failed: map[string]bool{}}
		}, "changed other than once"},
		{"LostRepliesCatchesAHiddenUnknownOutcome", lostReplies, func(s mytest.Strategy, _ *sql.DB) mytest.Strategy {
			return hidesUnknown{s}
		}, "not inventory.ErrOutcomeUnknown"},
		{"KilledDuringHammerCatchesAHalfAppliedReservation", func(t *testing.T, b faulttest.Backend) error {
			return faulttest.KilledDuringHammer(t, b, sz)
		}, func(s mytest.Strategy, db *sql.DB) mytest.Strategy { return halfApplied{s, db} }, ""},
		{"RandomDeadlinesCatchAConnectionKeptCheckedOut", randomDeadlines, func(s mytest.Strategy, db *sql.DB) mytest.Strategy {
			var once sync.Once
			return &leaves{Strategy: s, leak: func(ctx context.Context) { once.Do(func() { _, _ = db.Conn(ctx) }) }}
		}, "checked out"},
		// The connection goes back to the pool with a transaction open; had
		// it locked a stock row, every later buyer of that SKU would wait
		// for the server's lock wait timeout.
		{"RandomDeadlinesCatchATransactionLeftOpenInThePool", randomDeadlines, func(s mytest.Strategy, db *sql.DB) mytest.Strategy {
			return &leaves{Strategy: s, leak: func(ctx context.Context) {
				conn, err := db.Conn(ctx)
				if err != nil {
					return
				}
				defer conn.Close()
				_, _ = conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
			}}
		}, "inside a transaction"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// A kill falls between the two transactions of halfApplied by
			// chance: each check gets three runs to catch its strategy.
			var err error
			for range 3 {
				if err = c.check(t, mytest.FaultBackend(wrapped(c.wrap))); err != nil {
					break
				}
			}
			require.Error(t, err, "the check passed a wrong strategy three times")
			t.Logf("caught: %v", err)
			assert.Contains(t, err.Error(), c.says, "caught for another reason")
		})
	}
}

func lostReplies(t *testing.T, b faulttest.Backend) error {
	return faulttest.LostReplies(t, b, faulttest.Default, []faulttest.Point{mytest.CallPoint})
}

func randomDeadlines(t *testing.T, b faulttest.Backend) error {
	return faulttest.RandomDeadlines(t, b, faulttest.Default)
}
