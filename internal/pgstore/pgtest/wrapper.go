package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

// CheckWrapperPassesThrough checks that a wrapper (token, otelinventory)
// hides none of the optional interfaces of the strategy it wraps: stock
// buckets, Rebalance, and Purge, so that a Sweeper on the wrapper purges
// the inner ledger. wrap wraps a sqlcond strategy with a retention of an
// hour; newID gives the IDs the wrapper accepts.
func CheckWrapperPassesThrough(t *testing.T, wrap func(inventory.Strategy) inventory.Strategy, newID func(ctx context.Context) (string, error)) {
	t.Helper()
	ctx := t.Context()
	clk := strategytest.NewClock()
	inner, err := sqlcond.New(testsvc.Postgres(t), &sqlcond.Options{Schema: testsvc.Schema(t), Now: clk.Now, Retention: time.Hour})
	require.NoError(t, err)
	require.NoError(t, inner.Migrate(ctx))
	w := wrap(inner)

	require.NoError(t, inventory.SetStockWith(ctx, w, "sku", 16, inventory.StockOptions{Buckets: 4}))
	require.NoError(t, inventory.Rebalance(ctx, w, "sku"))
	id, err := newID(ctx)
	require.NoError(t, err)
	_, err = w.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "sku", Qty: 2}}})
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx, id))
	clk.Advance(2 * time.Hour)
	p, ok := w.(inventory.Purger)
	require.True(t, ok, "a Sweeper on the wrapper finds Purge")
	n, err := p.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the inner ledger purged the settled reservation")
	_, err = inner.Lookup(ctx, id)
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	avail, err := w.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Equal(t, int64(14), avail)
}
