package otelinventory_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/otelinventory"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

// TestOptionalMethodsPassThrough checks that the wrapper hides none of the
// inner strategy's optional interfaces: stock buckets, Rebalance, and Purge
// (so that a Sweeper on the wrapper purges the inner ledger).
func TestOptionalMethodsPassThrough(t *testing.T) {
	ctx := t.Context()
	clk := strategytest.NewClock()
	inner, err := sqlcond.New(testsvc.Postgres(t), &sqlcond.Options{Schema: testsvc.Schema(t), Now: clk.Now, Retention: time.Hour})
	require.NoError(t, err)
	require.NoError(t, inner.Migrate(ctx))
	w := otelinventory.Wrap(inner, nil)

	require.NoError(t, inventory.SetStockWith(ctx, w, "sku", 16, inventory.StockOptions{Buckets: 4}))
	require.NoError(t, inventory.Rebalance(ctx, w, "sku"))
	id := strategytest.RandomID()
	_, err = w.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "sku", Qty: 2}}})
	require.NoError(t, err)
	require.NoError(t, w.Commit(ctx, id))
	clk.Advance(2 * time.Hour)
	n, err := inventory.Purge(ctx, w, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the inner ledger purged the settled reservation")
	_, err = w.Lookup(ctx, id)
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	_, ok := w.(inventory.Purger)
	assert.True(t, ok, "a Sweeper on the wrapper finds Purge")

	// Over a strategy without buckets, Rebalance fails clearly.
	r := otelinventory.Wrap(plain{inner}, nil)
	assert.ErrorIs(t, inventory.Rebalance(ctx, r, "sku"), inventory.ErrUnsupported)
}

// plain hides every optional interface of its strategy.
type plain struct{ inventory.Strategy }
