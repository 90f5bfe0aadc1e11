package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// purgeStore is a store with the retention of the purge checks on a manual
// clock, and the clock.
func purgeStore(t *testing.T) (strategy, *strategytest.Clock) {
	t.Helper()
	clk := strategytest.NewClock()
	store, err := pgstore.New(testsvc.Postgres(t), &pgstore.Options{
		Schema: testsvc.Schema(t), Now: clk.Now, Retention: strategytest.PurgeRetention,
	})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(t.Context()))
	return strategy{store, newCondStep(store)}, clk
}

func TestPurge(t *testing.T) {
	strategytest.RunPurge(t, func(ctx context.Context, t *testing.T) *strategytest.PurgeHarness {
		s, clk := purgeStore(t)
		return &strategytest.PurgeHarness{Strategy: s, Purger: s, Advance: clk.Advance}
	})
}

// wrongPurger deletes with its own statement, which gets the rule wrong.
type wrongPurger struct {
	s    strategy
	stmt string // $1: the cutoff; $2: the limit
}

func (w wrongPurger) Purge(ctx context.Context, limit int) (int, error) {
	tag, err := w.s.DB().Exec(ctx, w.stmt, w.s.Now().Add(-w.s.Retention()), limit)
	return int(tag.RowsAffected()), err
}

// TestPurgeChecksCatchWrongPurgers shows that the purge checks fail a purger
// that deletes held reservations or ignores the retention.
func TestPurgeChecksCatchWrongPurgers(t *testing.T) {
	for name, where := range map[string]string{
		// Old enough by when it was made, held or not.
		"DeletesHeld": "created_at < $1",
		// Settled, however recently.
		"IgnoresRetention": "state <> 1 AND $1::timestamptz IS NOT NULL",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, clk := purgeStore(t)
			res := s.Table("reservation")
			w := wrongPurger{s, "DELETE FROM " + res + " WHERE id = ANY (ARRAY(SELECT id FROM " + res + " WHERE " + where + " LIMIT $2))"}
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
	clk := strategytest.NewClock()
	store, err := pgstore.New(testsvc.Postgres(t), &pgstore.Options{Schema: testsvc.Schema(t), Now: clk.Now})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx))
	s := strategy{store, newCondStep(store)}
	require.NoError(t, s.SetStock(ctx, "a", 5))
	_, err = s.Reserve(ctx, inventory.Request{ID: "r", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, "r"))
	clk.Advance(10 * 365 * 24 * time.Hour)
	n, err := s.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = s.Lookup(ctx, "r")
	assert.NoError(t, err)
}

// settledIndex reports whether the index Purge reads exists in schema, and
// whether it is valid.
func settledIndex(t *testing.T, schema string) (exists, valid bool) {
	t.Helper()
	err := testsvc.Postgres(t).QueryRow(t.Context(), `SELECT count(*) > 0, coalesce(bool_and(i.indisvalid), false)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = 'reservation_settled'`, schema).Scan(&exists, &valid)
	require.NoError(t, err)
	return exists, valid
}

// TestMigrateBuildsThePurgeIndexConcurrentlyOnALedgerWithRows upgrades a
// ledger with rows from before the retention migration: its index is built
// outside the migration transaction, and a build left invalid (its process
// died) is dropped and built again.
func TestMigrateBuildsThePurgeIndexConcurrentlyOnALedgerWithRows(t *testing.T) {
	ctx := t.Context()
	pool := testsvc.Postgres(t)
	s, _ := purgeStore(t)
	require.NoError(t, s.SetStock(ctx, "a", 10))
	_, err := s.Reserve(ctx, inventory.Request{ID: "r", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, "r"))
	versions := s.Table("schema_migrations")
	forget := func() {
		_, err := pool.Exec(ctx, "DELETE FROM "+versions+" WHERE abs(version) = 5")
		require.NoError(t, err)
	}

	_, err = pool.Exec(ctx, "DROP INDEX "+s.Table("reservation_settled"))
	require.NoError(t, err)
	forget()
	require.NoError(t, s.Migrate(ctx))
	exists, valid := settledIndex(t, s.Schema())
	assert.True(t, exists && valid, "built on a table with rows")

	// An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index; one
	// that fails does too.
	_, err = pool.Exec(ctx, "DROP INDEX "+s.Table("reservation_settled"))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO "+s.Table("reservation")+" (id, state, expires_at, created_at) VALUES ('r2', 2, now(), now())")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY reservation_settled ON "+s.Table("reservation")+" (state)")
	require.Error(t, err, "two committed rows")
	exists, valid = settledIndex(t, s.Schema())
	require.True(t, exists && !valid, "the failed build left an invalid index")
	forget()
	require.NoError(t, s.Migrate(ctx))
	exists, valid = settledIndex(t, s.Schema())
	assert.True(t, exists && valid, "the invalid index was built again")
	var def string
	require.NoError(t, pool.QueryRow(ctx, "SELECT pg_get_indexdef($1::regclass)", s.Table("reservation_settled")).Scan(&def))
	assert.Contains(t, def, "WHERE (state <> 1)")
}
