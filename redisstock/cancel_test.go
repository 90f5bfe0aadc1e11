package redisstock_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redisstock"
)

// TestCancelOvertakesACartHalfTaken cancels a cart over several buckets
// after its lines are taken and before it is granted: the Cancel aborts the
// attempt for good and undoes its holds, the Reserve fails with
// ErrCancelled, and the tombstone reaches PostgreSQL (the cleanup
// reconciles the two stores).
func TestCancelOvertakesACartHalfTaken(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setup(ctx, t, nil, &redisstock.Options{Buckets: 16})
	skus := []string{"a", "b"}
	for in.Bucket(skus[0]) == in.Bucket(skus[1]) {
		skus[1] += "x"
	}
	for _, s := range skus {
		require.NoError(t, in.SetStock(ctx, s, 10))
	}
	id := findID(in.Reserver, skus[0], false)
	var cancelErr error
	in.SetBeforeGrant(func(got string) error {
		if got == id {
			cancelErr = in.Cancel(ctx, id)
		}
		return nil
	})
	_, err := in.Reserve(ctx, req(id, line(skus[0], 2), line(skus[1], 3)))
	require.NoError(t, cancelErr)
	require.ErrorIs(t, err, inventory.ErrCancelled)
	for _, s := range skus {
		n, err := in.Available(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, int64(10), n, "%s: the half-taken cart's units are back", s)
	}
	r, err := in.Lookup(ctx, id)
	require.NoError(t, err)
	assert.True(t, r.Cancelled(), "the ID is a tombstone: %+v", r)
	require.NoError(t, in.Cancel(ctx, id), "idempotent")
}

// TestLoadKeepsTombstones loses Redis after a Cancel of an unseen ID was
// written behind: Load brings the tombstone back, so the late Reserve is
// still refused.
func TestLoadKeepsTombstones(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setupBare(ctx, t, nil, nil)
	w := in.NewWriter(nil)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	require.NoError(t, in.Cancel(ctx, "late"))
	require.NoError(t, w.Drain(ctx))
	require.NoError(t, in.Wipe(ctx))
	require.NoError(t, in.Load(ctx))
	_, err := in.Reserve(ctx, req("late", line("a", 1)))
	require.ErrorIs(t, err, inventory.ErrCancelled)
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(10), n)
	rep, err := in.Reconcile(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Differences)
}
