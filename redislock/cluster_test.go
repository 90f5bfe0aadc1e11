package redislock

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/strategy/strategytest"
)

func TestReserveOnRedisClusterTakesLocksAcrossSlots(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	inst := newShared(t)
	inst.rdb = srv.ClusterClient()
	r := inst.reserver(t, Options{WaitTimeout: 200 * time.Millisecond})
	require.True(t, r.locks.bySlot)
	ctx := context.Background()
	lines := []inventory.Line{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 2}, {SKU: "c", Qty: 3}, {SKU: "d", Qty: 4}}
	for _, l := range lines {
		require.NoError(t, r.SetStock(ctx, l.SKU, 10))
	}
	res, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: lines})
	require.NoError(t, err)
	assert.Equal(t, lines, res.Lines)
	for _, l := range lines {
		n, err := r.Available(ctx, l.SKU)
		require.NoError(t, err)
		assert.Equal(t, 10-l.Qty, n)
	}

	// A busy SKU in one slot fails the whole request and leaves the other
	// slots unlocked.
	holder := mustAcquire(t, r.locks, "c")
	_, err = r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: lines})
	var ce *ContendedError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "c", ce.SKU)
	for _, sku := range []string{"a", "b", "d"} {
		assert.Empty(t, lockOwner(t, r.locks, sku))
	}
	require.NoError(t, holder.release(ctx))
}
