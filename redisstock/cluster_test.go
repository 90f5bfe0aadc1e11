package redisstock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// TestOneNodeClusterRefusesNoScript runs a hammer of multi-line carts over
// sixteen buckets on a server in cluster mode, which fails any script whose
// keys span slots (CROSSSLOT): every call passes keys of one slot, with a
// retention (whose finishing calls pass the record's key too) and without.
func TestOneNodeClusterRefusesNoScript(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	for _, keep := range []time.Duration{0, time.Hour} {
		in := setup(ctx, t, srv.ClusterClient(), &redisstock.Options{Buckets: 16, Retention: keep})
		rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
			Strategy: in.Reserver, Advance: in.Clock.Advance, Workers: 16, SKUs: 8, Stock: 80, MaxLines: 4, OpsPerWorker: 15,
		})
		require.NoError(t, err)
		t.Logf("retention %s: %v", keep, rep)
		assert.True(t, rep.OK(), "retention %s: %v", keep, rep.Unexpected)
	}
}

// TestConformanceCluster runs the whole suite on a Redis Cluster of three
// masters, with the keys spread over sixteen buckets and so over every
// master.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	rdb := c.Client(nil)
	opts := &redisstock.Options{Buckets: 16}
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		in := setup(ctx, t, rdb, opts)
		return &strategytest.Harness{Strategy: in.Reserver, Advance: in.Clock.Advance,
			LinesTakenApart: linesApart}
	})
}

// TestConformanceClusterStockBuckets runs the whole suite on a Redis
// Cluster of three masters with every SKU SetStock creates split into
// eight stock buckets, which lie in eight hash slots over every master.
func TestConformanceClusterStockBuckets(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	rdb := c.Client(nil)
	opts := &redisstock.Options{Buckets: 16, SKUDefaults: inventory.StockOptions{Buckets: 8}}
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		in := setup(ctx, t, rdb, opts)
		return &strategytest.Harness{Strategy: in.Reserver, Advance: in.Clock.Advance,
			LinesTakenApart: linesApart,
			BucketsApart:    bucketsApart}
	})
}
