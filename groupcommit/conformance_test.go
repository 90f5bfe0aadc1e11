package groupcommit_test

import (
	"context"
	"testing"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/groupcommit"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/soak"
	"github.com/oversell/inventory/strategy/strategytest"
)

func newStrategy(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
	return groupcommit.New(db, &groupcommit.Options{Schema: schema, Now: now})
}

func TestConformance(t *testing.T) {
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return pgtest.Harness(ctx, t, newStrategy)
	})
}

// TestConformanceBuckets runs the suite with every SKU split into eight
// stock buckets.
func TestConformanceBuckets(t *testing.T) {
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return pgtest.Harness(ctx, t, newBucketed)
	})
}

func newBucketed(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
	return groupcommit.New(db, &groupcommit.Options{Schema: schema, Now: now, SKUDefaults: inventory.StockOptions{Buckets: 8}})
}

// TestBuckets checks the stock buckets beyond the suite: the last unit,
// units back to their bucket, Rebalance under buyers.
func TestBuckets(t *testing.T) {
	pgtest.RunBuckets(t, newBucketed)
}

// TestProcs runs the hammer in four processes at once on one schema, each
// batching its own calls, and kills one of them mid-run.
func TestProcs(t *testing.T) {
	pgtest.RunProcs(t, newStrategy, 0, nil)
}

// FuzzRequests feeds arbitrary IDs, SKUs, quantities and TTLs to the
// strategy; plain go test runs its seeds.
func FuzzRequests(f *testing.F) {
	strategytest.FuzzRequests(f, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return pgtest.Harness(ctx, t, newStrategy)
	})
}

func TestPurge(t *testing.T) {
	strategytest.RunPurge(t, func(ctx context.Context, t *testing.T) *strategytest.PurgeHarness {
		return pgtest.PurgeHarness(ctx, t, func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
			return groupcommit.New(db, &groupcommit.Options{Schema: schema, Now: now, Retention: strategytest.PurgeRetention})
		})
	})
}

// TestFlushBuckets checks the flush on SKUs in buckets: lines taken from
// the Reserver's home bucket, units released in the flush back to theirs,
// expiry that never waits for another Reserver's home bucket.
func TestFlushBuckets(t *testing.T) {
	pgtest.RunFlushBuckets(t, func(home int) pgtest.Maker {
		return func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
			return groupcommit.New(db, &groupcommit.Options{Schema: schema, Now: now, SKUDefaults: inventory.StockOptions{Buckets: 8}, Home: home})
		}
	})
}

// TestProcsBuckets runs the hammer in four processes at once on one schema
// with every SKU in eight buckets, each process on a home bucket of its
// own picked at random, and kills one of them mid-run.
// About 50 s: soak only (INVENTORY_TEST_SOAK=1).
func TestProcsBuckets(t *testing.T) {
	if !soak.On() {
		t.Skip("four processes on SKUs in buckets take about 50 s: INVENTORY_TEST_SOAK=1 runs it; TestConformanceBuckets and TestBuckets check the rules in one process")
	}
	pgtest.RunProcs(t, newBucketed, 0, nil)
}
