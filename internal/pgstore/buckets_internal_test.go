package pgstore

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
)

// An install made before stock buckets upgrades without a rewrite of its
// stock table, and its SKUs stay kept whole with their units.
func TestBucketsMigrationRewritesNoTable(t *testing.T) {
	ctx := t.Context()
	pool := testsvc.Postgres(t)
	schema := testsvc.Schema(t)
	quoted := pgx.Identifier{schema}.Sanitize()
	ms, err := loadMigrations()
	require.NoError(t, err)
	for _, m := range ms {
		if m.version >= 5 { // the installs before retention and buckets
			break
		}
		_, err := pool.Exec(ctx, expand(m.sql, quoted))
		require.NoError(t, err, m.name)
	}
	_, err = pool.Exec(ctx, "INSERT INTO "+quoted+".stock (sku, available) VALUES ('old', 7)")
	require.NoError(t, err)
	files := func() (stock, lines uint32) {
		require.NoError(t, pool.QueryRow(ctx, "SELECT (SELECT relfilenode FROM pg_class WHERE oid = $1::regclass), (SELECT relfilenode FROM pg_class WHERE oid = $2::regclass)",
			quoted+".stock", quoted+".reservation_line").Scan(&stock, &lines))
		return stock, lines
	}
	stock, lines := files()

	s, err := New(pool, &Options{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	stock2, lines2 := files()
	assert.Equal(t, stock, stock2, "the stock table was rewritten")
	assert.Equal(t, lines, lines2, "the reservation_line table was rewritten")
	n, err := s.Available(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, int64(7), n)
	var k int
	require.NoError(t, pool.QueryRow(ctx, "SELECT buckets FROM "+quoted+".stock WHERE sku = 'old'").Scan(&k))
	assert.Equal(t, 1, k, "a SKU made before buckets is kept whole")
	require.NoError(t, s.SetStockWith(ctx, "old", 9, inventory.StockOptions{Buckets: 3}))
	n, err = s.Available(ctx, "old")
	require.NoError(t, err)
	assert.Equal(t, int64(9), n)
}
