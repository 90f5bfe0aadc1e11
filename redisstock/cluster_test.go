package redisstock_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// TestOneNodeClusterRefusesNoScript runs a hammer of multi-line carts over
// sixteen buckets on a server in cluster mode, which fails any script whose
// keys span slots (CROSSSLOT): every call passes keys of one slot.
func TestOneNodeClusterRefusesNoScript(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	in := setup(ctx, t, srv.ClusterClient(), &redisstock.Options{Buckets: 16})
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: in.Reserver, Advance: in.Clock.Advance, Workers: 16, SKUs: 8, Stock: 80, MaxLines: 4, OpsPerWorker: 15,
	})
	require.NoError(t, err)
	t.Log(rep)
	assert.True(t, rep.OK(), "%v", rep.Unexpected)
}
