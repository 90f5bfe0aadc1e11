package inventory_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// wholeOnly is a Stocker that keeps every SKU whole and knows nothing of
// StockOptions.
type wholeOnly struct{ set map[string]int64 }

func (w *wholeOnly) SetStock(_ context.Context, sku string, n int64) error {
	w.set[sku] = n
	return nil
}

func (w *wholeOnly) AddStock(context.Context, string, int64) (int64, error) { return 0, nil }

func TestSetStockWithRefusesBucketsAStrategyCannotKeep(t *testing.T) {
	ctx := t.Context()
	w := &wholeOnly{set: map[string]int64{}}
	err := inventory.SetStockWith(ctx, w, "a", 5, inventory.StockOptions{Buckets: 8})
	require.ErrorIs(t, err, inventory.ErrUnsupported)
	assert.Empty(t, w.set, "nothing set")
	require.NoError(t, inventory.SetStockWith(ctx, w, "a", 5, inventory.StockOptions{Buckets: 1}))
	require.NoError(t, inventory.SetStockWith(ctx, w, "b", 6, inventory.StockOptions{}))
	assert.Equal(t, map[string]int64{"a": 5, "b": 6}, w.set)
	for _, k := range []int{-1, inventory.MaxBuckets + 1} {
		assert.ErrorIs(t, inventory.SetStockWith(ctx, w, "c", 1, inventory.StockOptions{Buckets: k}), inventory.ErrInvalidRequest, "Buckets %d", k)
	}
	assert.NotContains(t, w.set, "c")
}

func TestMemoryAcceptsStockBuckets(t *testing.T) {
	ctx := t.Context()
	m := memory.New(nil)
	require.NoError(t, inventory.SetStockWith(ctx, m, "a", 5, inventory.StockOptions{Buckets: 8}))
	n, err := m.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	assert.ErrorIs(t, m.SetStockWith(ctx, "a", 1, inventory.StockOptions{Buckets: inventory.MaxBuckets + 1}), inventory.ErrInvalidRequest)
	assert.NoError(t, m.Rebalance(ctx, "a"))
	assert.ErrorIs(t, m.Rebalance(ctx, "zz"), inventory.ErrUnknownSKU)
	n, _ = m.Available(ctx, "a")
	assert.Equal(t, int64(5), n, "a refused setting changes nothing")
}
