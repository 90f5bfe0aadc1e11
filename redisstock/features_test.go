package redisstock_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
)

// TestFeaturesSurviveLoad sells a SKU with a backorder, extends a hold and
// commits another, lets the writer carry it all to PostgreSQL, then wipes
// Redis and loads it again: the backorder, the stock levels and the
// extended expiry come back as they were, and Reconcile finds nothing. Its
// twin changes the backorder in PostgreSQL behind the writer's back, and
// Reconcile reports it.
func TestFeaturesSurviveLoad(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 8} {
		t.Run(map[int]string{1: "OneBucket", 8: "Buckets"}[buckets], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setup(ctx, t, nil, &redisstock.Options{Buckets: buckets})
			require.NoError(t, in.SetStockWith(ctx, "a", 2, inventory.StockOptions{Backorder: 3}))
			require.NoError(t, in.SetStock(ctx, "b", 5))
			held, err := in.Reserve(ctx, inventory.Request{ID: "held", Lines: []inventory.Line{line("a", 3), line("b", 1)}, TTL: time.Minute})
			require.NoError(t, err)
			sold, err := in.Reserve(ctx, req("sold", line("a", 1), line("b", 2)))
			require.NoError(t, err)
			require.NoError(t, in.Commit(ctx, sold.ID))
			ext, err := in.Extend(ctx, held.ID, 10*time.Minute)
			require.NoError(t, err)
			require.True(t, ext.ExpiresAt.After(held.ExpiresAt), "Extend moved the expiry on")
			n, err := in.AddStock(ctx, "a", 1)
			require.NoError(t, err)
			assert.Equal(t, int64(2), n, "a's available units count the unused backorder")

			want := map[string]inventory.Levels{
				"a": {Available: 2, Held: 3, Sold: 1, Backordered: 1},
				"b": {Available: 2, Held: 1, Sold: 2},
			}
			for sku, lv := range want {
				got, err := in.Levels(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, lv, got, "levels of %s before the Load", sku)
			}
			require.NoError(t, in.Writer.Drain(ctx))
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Empty(t, rep.Differences)

			require.NoError(t, in.Wipe(ctx))
			require.NoError(t, in.Load(ctx))
			for sku, lv := range want {
				got, err := in.Levels(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, lv, got, "levels of %s after the Load", sku)
			}
			got, err := in.Lookup(ctx, held.ID)
			require.NoError(t, err)
			assert.True(t, got.ExpiresAt.Equal(ext.ExpiresAt), "the extended expiry after the Load: %v, want %v", got.ExpiresAt, ext.ExpiresAt)
			// Stock set later keeps the backorder: the units on hand plus it
			// are available, as in the PostgreSQL strategies.
			require.NoError(t, in.SetStock(ctx, "a", 1))
			lv, err := in.Levels(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, inventory.Levels{Available: 4, Held: 3, Sold: 1, Backordered: 0}, lv, "SetStock keeps the backorder")
			require.NoError(t, in.Writer.Drain(ctx))
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Differences)

			// The twin: PostgreSQL's backorder changed behind the writer.
			_, err = testsvc.Postgres(t).Exec(ctx, `UPDATE `+pgx.Identifier{in.Schema, "stock"}.Sanitize()+` SET backorder = 7 WHERE sku = 'a'`)
			require.NoError(t, err)
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Len(t, rep.Differences, 1, "Reconcile reports the backorder PostgreSQL lost")
			assert.Equal(t, "a", rep.Differences[0].SKU)
			rep, err = in.Reconcile(ctx, &redisstock.ReconcileOptions{Repair: true})
			require.NoError(t, err)
			assert.True(t, rep.Repaired)
		})
	}
}
