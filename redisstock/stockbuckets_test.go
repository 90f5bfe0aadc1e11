package redisstock_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// bucketProbe is a store whose SKUs SetStock creates are split into
// strategytest.BucketsK stock buckets, on keys spread over slots hash
// slots, to the bucket rules of strategytest.
func bucketProbe(t *testing.T, slots int, wrong func(*redisstock.Reserver)) *strategytest.BucketProbe {
	t.Helper()
	in := setup(t.Context(), t, nil, &redisstock.Options{Buckets: slots, SKUDefaults: inventory.StockOptions{Buckets: strategytest.BucketsK}})
	if wrong != nil {
		wrong(in.Reserver)
	}
	r := in.Reserver
	return &strategytest.BucketProbe{Strategy: r, Advance: in.Clock.Advance, Buckets: r.BucketUnits,
		IDStartingAt: func(k int, tag string) string {
			// The rules take their first bucket this way only for the SKU "last".
			for i := 0; ; i++ {
				if id := fmt.Sprintf("%s-%d-%d", tag, k, i); r.StartBucket(id, "last") == k {
					return id
				}
			}
		}}
}

// TestStockBuckets checks the rules of stock buckets, on keys in one hash
// slot and spread over sixteen: the last unit of a SKU in eight buckets is
// sold whichever bucket a buyer starts from, and a line larger than any
// bucket is served (its parts taken from several buckets, all or none);
// units released, cancelled or expired come back to the bucket they were
// taken from. Each rule catches its deliberately wrong twin: a take that
// refuses when its first bucket is short, and units given back to bucket 0.
func TestStockBuckets(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{1, 16} {
		t.Run("Buckets"+strconv.Itoa(slots), func(t *testing.T) {
			t.Parallel()
			t.Run("LastUnitIsSold", func(t *testing.T) {
				t.Parallel()
				require.NoError(t, strategytest.LastUnitIsSold(t.Context(), bucketProbe(t, slots, nil)))
			})
			t.Run("LastUnitIsSoldCatchesARefusalByOneBucket", func(t *testing.T) {
				t.Parallel()
				err := strategytest.LastUnitIsSold(t.Context(), bucketProbe(t, slots, func(r *redisstock.Reserver) { r.SetNoFallover(true) }))
				require.Error(t, err, "a take that refuses when its first bucket is short went unnoticed")
				t.Logf("caught: %v", err)
			})
			t.Run("UnitsReturnToTheirBucket", func(t *testing.T) {
				t.Parallel()
				require.NoError(t, strategytest.UnitsReturnToTheirBucket(t.Context(), bucketProbe(t, slots, nil)))
			})
			t.Run("UnitsReturnToTheirBucketCatchesTheWrongBucket", func(t *testing.T) {
				t.Parallel()
				p := bucketProbe(t, slots, func(r *redisstock.Reserver) { r.SetGiveToFirst(true); r.SetNoHints(true) })
				err := strategytest.UnitsReturnToTheirBucket(t.Context(), p)
				require.Error(t, err, "units given back to bucket 0 went unnoticed")
				t.Logf("caught: %v", err)
			})
		})
	}
}

// loadSplit holds and sells units of a SKU split into eight buckets (a
// line larger than any bucket among them), lets the writer drain, wipes
// Redis and loads it from the ledger: every bucket must come back with its
// units, the sum and the levels as they were, and each hold must give its
// units back to its own buckets. It returns what went wrong.
func loadSplit(t *testing.T, in *instance) error {
	ctx := t.Context()
	if err := inventory.SetStockWith(ctx, in.Reserver, "s", 40, inventory.StockOptions{Buckets: 8}); err != nil {
		return err
	}
	held, err := in.Reserve(ctx, inventory.Request{ID: "held", Lines: []inventory.Line{{SKU: "s", Qty: 3}}})
	if err != nil {
		return err
	}
	big, err := in.Reserve(ctx, inventory.Request{ID: "big", Lines: []inventory.Line{{SKU: "s", Qty: 12}}})
	if err != nil {
		return fmt.Errorf("a line larger than any bucket: %w", err)
	}
	if _, err := in.Reserve(ctx, inventory.Request{ID: "sold", Lines: []inventory.Line{{SKU: "s", Qty: 2}}}); err != nil {
		return err
	}
	if err := in.Commit(ctx, "sold"); err != nil {
		return err
	}
	before, err := in.BucketUnits(ctx, "s")
	if err != nil {
		return err
	}
	lv, err := in.Levels(ctx, "s")
	if err != nil {
		return err
	}
	if err := in.Writer.Drain(ctx); err != nil {
		return err
	}
	if err := in.Wipe(ctx); err != nil {
		return err
	}
	if err := in.Load(ctx); err != nil {
		return err
	}
	if a, err := in.Available(ctx, "s"); err != nil || a != 40-3-12-2 {
		return fmt.Errorf("after Load: available %d (%v), want %d", a, err, 40-3-12-2)
	}
	after, err := in.BucketUnits(ctx, "s")
	if err != nil || !slices.Equal(before, after) {
		return fmt.Errorf("after Load: buckets %v (%v), before %v", after, err, before)
	}
	if got, err := in.Levels(ctx, "s"); err != nil || got != lv {
		return fmt.Errorf("after Load: levels %+v (%v), before %+v", got, err, lv)
	}
	for _, id := range []string{held.ID, big.ID} {
		if err := in.Release(ctx, id); err != nil {
			return err
		}
	}
	back, err := in.BucketUnits(ctx, "s")
	if err != nil {
		return err
	}
	var sum int64
	for _, n := range back {
		sum += n
	}
	if sum != 38 {
		return fmt.Errorf("after the releases: buckets %v, want 38 units", back)
	}
	return nil
}

// TestLoadRebuildsStockBuckets checks Load on a SKU split into eight
// buckets (loadSplit), with keys in one slot and over sixteen, and that its
// twin, a Load that forgets which SKUs are split, is caught.
func TestLoadRebuildsStockBuckets(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{1, 16} {
		t.Run("Buckets"+strconv.Itoa(slots), func(t *testing.T) {
			t.Parallel()
			require.NoError(t, loadSplit(t, setup(t.Context(), t, nil, &redisstock.Options{Buckets: slots})))
		})
	}
	t.Run("CatchesALoadThatForgetsTheSplit", func(t *testing.T) {
		t.Parallel()
		in := setup(t.Context(), t, nil, nil)
		in.SetLoadNoSplit(true)
		err := loadSplit(t, in)
		require.Error(t, err, "a Load that forgets the buckets of a split SKU went unnoticed")
		t.Logf("caught: %v", err)
	})
}
