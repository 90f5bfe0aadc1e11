package mystore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
	"github.com/oversell/inventory/internal/testsvc"
)

// TestMigrateCountsWhatALedgerWithRowsReceived upgrades a ledger made
// before the migration levels_limits, with units available, held, sold and
// released: the migration counts what each SKU had received, so that
// Levels agrees with the ledger at once and after later changes. A SKU
// whose count is missing (NULL) is read from the ledger; a migration that
// counted nothing (0) would be caught.
func TestMigrateCountsWhatALedgerWithRowsReceived(t *testing.T) {
	ctx := t.Context()
	db := testsvc.MySQL(t)
	s, schema, _ := purgeStrategy(t, "sqlcond", 0)
	q := "`" + schema + "`"
	require.NoError(t, s.SetStock(ctx, "a", 10))
	require.NoError(t, s.SetStock(ctx, "b", 4))
	reserve := func(id string, n int64) {
		t.Helper()
		_, err := s.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: n}}, TTL: time.Hour})
		require.NoError(t, err)
	}
	reserve("sold", 3)
	reserve("held", 2)
	reserve("released", 1)
	require.NoError(t, s.Commit(ctx, "sold"))
	require.NoError(t, s.Release(ctx, "released"))
	// As the ledger was before the migration.
	for _, st := range []string{
		"ALTER TABLE " + q + ".stock DROP COLUMN backorder, DROP COLUMN buyer_limit, DROP COLUMN received, DROP COLUMN received_before",
		"ALTER TABLE " + q + ".reservation_line DROP COLUMN buyer, DROP COLUMN partial, DROP COLUMN counted",
		"DROP TABLE " + q + ".buyer_usage",
		"DELETE FROM " + q + ".schema_migrations WHERE version = 6",
	} {
		_, err := db.ExecContext(ctx, st)
		require.NoError(t, err, st)
	}
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.Migrate(ctx), "again: nothing to do")

	levels := func(sku string) inventory.Levels {
		t.Helper()
		lv, err := inventory.StockLevels(ctx, s, sku)
		require.NoError(t, err)
		return lv
	}
	assert.Equal(t, inventory.Levels{Available: 5, Held: 2, Sold: 3}, levels("a"))
	assert.Equal(t, inventory.Levels{Available: 4}, levels("b"))
	_, err := s.AddStock(ctx, "a", 2)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, "held"))
	assert.Equal(t, inventory.Levels{Available: 7, Sold: 5}, levels("a"))

	// Not yet counted: read from the ledger.
	_, err = db.ExecContext(ctx, "UPDATE "+q+".stock SET received_before = NULL WHERE sku = 'a'")
	require.NoError(t, err)
	assert.Equal(t, inventory.Levels{Available: 7, Sold: 5}, levels("a"))
	// Counted as nothing, as a migration that forgot the rows would: the
	// check above catches it.
	_, err = db.ExecContext(ctx, "UPDATE "+q+".stock SET received_before = 0 WHERE sku = 'a'")
	require.NoError(t, err)
	assert.NotEqual(t, inventory.Levels{Available: 7, Sold: 5}, levels("a"))
}

// TestBucketsAreRefused: the MySQL store keeps every SKU whole, and says so.
func TestBucketsAreRefused(t *testing.T) {
	ctx := t.Context()
	s, _, _ := purgeStrategy(t, "pessimistic", 0)
	require.NoError(t, s.SetStock(ctx, "a", 3))
	err := inventory.SetStockWith(ctx, s, "a", 5, inventory.StockOptions{Buckets: 4, Limit: 1})
	require.ErrorIs(t, err, inventory.ErrUnsupported)
	lv, err := inventory.StockLevels(ctx, s, "a")
	require.NoError(t, err)
	assert.Equal(t, inventory.Levels{Available: 3}, lv, "nothing changed")
	_, err = mystore.New(testsvc.MySQL(t), &mystore.Options{SKUDefaults: inventory.StockOptions{Buckets: 2}})
	assert.ErrorIs(t, err, inventory.ErrUnsupported)
}
