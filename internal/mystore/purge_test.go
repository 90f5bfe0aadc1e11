package mystore_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
	"github.com/oversell/inventory/internal/mystore/mytest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/pessimistic"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

// purging is a MySQL strategy that purges.
type purging interface {
	inventory.Strategy
	inventory.Purger
	Migrate(ctx context.Context) error
}

// purgeMakers make the MySQL strategies with a retention.
var purgeMakers = map[string]func(db *sql.DB, schema string, now func() time.Time, keep time.Duration) (purging, error){
	"sqlcond": func(db *sql.DB, schema string, now func() time.Time, keep time.Duration) (purging, error) {
		return sqlcond.NewMySQL(db, &sqlcond.Options{Schema: schema, Now: now, Retention: keep})
	},
	"pessimistic": func(db *sql.DB, schema string, now func() time.Time, keep time.Duration) (purging, error) {
		return pessimistic.NewMySQL(db, &pessimistic.Options{Schema: schema, Now: now, Retention: keep})
	},
}

// purgeStrategy makes a migrated strategy with mk and the retention of the
// purge checks, in a database of its own, on a manual clock.
func purgeStrategy(t *testing.T, name string, keep time.Duration) (purging, string, *strategytest.Clock) {
	t.Helper()
	clk := strategytest.NewClock()
	schema := testsvc.MySQLDatabase(t)
	s, err := purgeMakers[name](testsvc.MySQL(t), schema, clk.Now, keep)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(t.Context()))
	return s, schema, clk
}

func TestPurge(t *testing.T) {
	for name := range purgeMakers {
		t.Run(name, func(t *testing.T) {
			strategytest.RunPurge(t, func(ctx context.Context, t *testing.T) *strategytest.PurgeHarness {
				s, _, clk := purgeStrategy(t, name, strategytest.PurgeRetention)
				return &strategytest.PurgeHarness{Strategy: s, Purger: s, Advance: clk.Advance}
			})
		})
	}
}

// wrongPurger deletes with its own statement, which gets the rule wrong.
type wrongPurger struct {
	db    *sql.DB
	clock *strategytest.Clock
	stmt  string // ?: the cutoff in microseconds; ?: the limit
}

func (w wrongPurger) Purge(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	r, err := w.db.ExecContext(ctx, w.stmt, w.clock.Now().Add(-strategytest.PurgeRetention).UnixMicro(), limit)
	if err != nil {
		return 0, err
	}
	n, err := r.RowsAffected()
	return int(n), err
}

// TestPurgeChecksCatchWrongPurgers shows that the purge checks fail a purger
// that deletes held reservations or ignores the retention.
func TestPurgeChecksCatchWrongPurgers(t *testing.T) {
	for name, where := range map[string]string{
		// Old enough by when it was made, held or not.
		"DeletesHeld": "created_at < ?",
		// Settled, however recently.
		"IgnoresRetention": "state <> 1 AND ? IS NOT NULL",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, schema, clk := purgeStrategy(t, "sqlcond", strategytest.PurgeRetention)
			w := wrongPurger{testsvc.MySQL(t), clk, "DELETE FROM `" + schema + "`.reservation WHERE " + where + " ORDER BY id LIMIT ?"}
			h := &strategytest.PurgeHarness{Strategy: s, Purger: w, Advance: clk.Advance}
			err := strategytest.CheckPurgeRetention(t.Context(), h)
			assert.Error(t, err)
			t.Log("caught:", err)
		})
	}
}

// TestPurgeWithoutRetentionKeepsEverything: the default deletes nothing.
func TestPurgeWithoutRetentionKeepsEverything(t *testing.T) {
	ctx := t.Context()
	s, _, clk := purgeStrategy(t, "sqlcond", 0)
	require.NoError(t, s.SetStock(ctx, "a", 5))
	_, err := s.Reserve(ctx, inventory.Request{ID: "r", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, "r"))
	clk.Advance(10 * 365 * 24 * time.Hour)
	n, err := s.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = s.Lookup(ctx, "r")
	assert.NoError(t, err)
}

// TestMigrateAddsRetentionToALedgerWithRows upgrades a ledger with rows
// settled by a writer from before the retention migration (no settled_at):
// the migration adds the column and the index in place, and Purge counts
// such a row as settled at its expiry.
func TestMigrateAddsRetentionToALedgerWithRows(t *testing.T) {
	ctx := t.Context()
	db := testsvc.MySQL(t)
	s, schema, clk := purgeStrategy(t, "sqlcond", time.Hour)
	q := "`" + schema + "`"
	require.NoError(t, s.SetStock(ctx, "a", 10))
	for _, id := range []string{"old", "held"} {
		_, err := s.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: 1}}, TTL: time.Minute})
		require.NoError(t, err)
	}
	// As the ledger was before the migration, with one reservation
	// committed by a writer that does not record when.
	for _, st := range []string{
		"ALTER TABLE " + q + ".reservation DROP INDEX reservation_sweep",
		"ALTER TABLE " + q + ".reservation DROP COLUMN sweep_key, DROP COLUMN settled_key, DROP COLUMN settled_at",
		"ALTER TABLE " + q + ".reservation ADD KEY reservation_due (state, expires_at)",
		"UPDATE " + q + ".reservation SET state = 2 WHERE id = 'old'",
		"DELETE FROM " + q + ".schema_migrations WHERE version IN (5, 7)",
	} {
		_, err := db.ExecContext(ctx, st)
		require.NoError(t, err, st)
	}
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.Migrate(ctx), "again: nothing to do")
	var cols, idx int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = ? AND table_name = 'reservation' AND column_name IN ('settled_at', 'settled_key')", schema).Scan(&cols))
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(DISTINCT index_name) FROM information_schema.statistics WHERE table_schema = ? AND table_name = 'reservation' AND index_name <> 'PRIMARY'", schema).Scan(&idx))
	assert.Equal(t, 2, cols)
	assert.Equal(t, 1, idx, "one secondary index, reservation_sweep")

	// The old row counts as settled at its expiry, a minute from its
	// making: not yet purged 59 minutes on, purged past the hour.
	clk.Advance(59 * time.Minute)
	n, err := s.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	clk.Advance(5 * time.Minute)
	n, err = s.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the old committed row")
	_, err = s.Lookup(ctx, "old")
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	r, err := s.Lookup(ctx, "held")
	require.NoError(t, err)
	assert.Equal(t, inventory.Held, r.State, "a hold past its expiry but not expired is never purged")
	var lines int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM "+q+".reservation_line WHERE reservation_id = 'old'").Scan(&lines))
	assert.Zero(t, lines, "its lines went with it")
}

// TestPurgeIsBoundedAndSharedByPurgers: a call deletes at most its limit (and
// at most 1000), and purgers on several pools at once delete each settled
// reservation once, between them all of them. It reports the rate.
func TestPurgeIsBoundedAndSharedByPurgers(t *testing.T) {
	ctx := t.Context()
	const total = 3000
	s, schema, clk := purgeStrategy(t, "sqlcond", time.Hour)
	q := "`" + schema + "`"
	db := testsvc.MySQL(t)
	// Settled rows of one line each, written directly, a thousand a
	// statement.
	now := clk.Now().UnixMicro()
	for b := 0; b < total; b += 1000 {
		args := make([]any, 0, 3000)
		for i := b; i < b+1000; i++ {
			args = append(args, []byte(fmt.Sprintf("s%05d", i)), now, now)
		}
		_, err := db.ExecContext(ctx, "INSERT INTO "+q+".reservation (id, state, expires_at, created_at, settled_at) VALUES "+
			mystore.Placeholders(1000, "(?, 2, ?, 0, ?)"), args...)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, "INSERT INTO "+q+".reservation_line (reservation_id, sku, qty) SELECT id, 'a', 1 FROM "+
			q+".reservation WHERE id BETWEEN ? AND ?", args[0], args[len(args)-3])
		require.NoError(t, err)
	}
	clk.Advance(2 * time.Hour)
	n, err := s.Purge(ctx, 5000)
	require.NoError(t, err)
	assert.Equal(t, 1000, n, "at most 1000 in one call")

	const purgers, limit = 4, 100
	counts := make(chan int, purgers)
	errs := make(chan error, purgers)
	start := time.Now()
	var ps []purging
	for range purgers {
		p, err := sqlcond.NewMySQL(mytest.Pool(t, 2, ""), &sqlcond.Options{Schema: schema, Now: clk.Now, Retention: time.Hour})
		require.NoError(t, err)
		ps = append(ps, p)
	}
	for _, p := range ps {
		go func() {
			var err error
			sum := 0
			for err == nil {
				var k int
				k, err = p.Purge(ctx, limit)
				sum += k
				if k == 0 {
					break
				}
			}
			counts <- sum
			errs <- err
		}()
	}
	sum := 0
	for range purgers {
		sum += <-counts
		require.NoError(t, <-errs)
	}
	elapsed := time.Since(start)
	assert.Equal(t, total-1000, sum, "each purged once, none left")
	var left, lines int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM "+q+".reservation").Scan(&left))
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM "+q+".reservation_line").Scan(&lines))
	assert.Zero(t, left)
	assert.Zero(t, lines, "the lines went with them")
	t.Logf("%d purgers in batches of %d purged %d reservations in %v (%.0f/s)", purgers, limit, sum, elapsed.Round(time.Millisecond), float64(sum)/elapsed.Seconds())
}
