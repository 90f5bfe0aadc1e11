package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// rebalanced is a store on rdb (the shared Redis when nil) whose SKU "s"
// holds 80 units in eight stock buckets, of which a committed reservation
// took 10 from bucket 0: 70 available, bucket 0 empty.
func rebalanced(t *testing.T, rdb redis.UniversalClient, slots int) *instance {
	t.Helper()
	return withDrainedSKU(t, setup(t.Context(), t, rdb, &redisstock.Options{Buckets: slots}))
}

// rebalancedBare is rebalanced on a store whose ledger is not compared
// with Redis at the end: for the wrong twins, which make the two differ.
func rebalancedBare(t *testing.T, slots int) *instance {
	t.Helper()
	return withDrainedSKU(t, setupBare(t.Context(), t, nil, &redisstock.Options{Buckets: slots}))
}

// withDrainedSKU gives in the SKU "s" of rebalanced.
func withDrainedSKU(t *testing.T, in *instance) *instance {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, in.SetStockWith(ctx, "s", 80, inventory.StockOptions{Buckets: strategytest.BucketsK}))
	id := ""
	for i := 0; id == ""; i++ {
		if c := fmt.Sprintf("drain-%d", i); in.StartBucket(c, "s") == 0 {
			id = c
		}
	}
	_, err := in.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "s", Qty: 10}}, TTL: time.Hour})
	require.NoError(t, err)
	require.NoError(t, in.Commit(ctx, id))
	per, err := in.BucketUnits(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, []int64{0, 10, 10, 10, 10, 10, 10, 10}, per)
	return in
}

// TestRebalance checks redisstock's Rebalance, with keys in one hash slot
// and spread over sixteen (so that a move crosses slots): it spreads the
// units evenly, refuses bad input, keeps every unit while buyers reserve,
// and a move cut off after either of its steps is finished by ExpireDue
// once, with no unit lost or made. Each check catches its deliberately
// wrong twin: a move that takes units its bucket no longer has, a move
// with no record of the units on the way, and a finish that adds the
// units again.
func TestRebalance(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{1, 16} {
		t.Run("Buckets"+strconv.Itoa(slots), func(t *testing.T) {
			t.Parallel()
			t.Run("SpreadsTheUnitsEvenly", func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				in := rebalanced(t, nil, slots)
				require.NoError(t, in.Rebalance(ctx, "s"))
				per, err := in.BucketUnits(ctx, "s")
				require.NoError(t, err)
				assert.Equal(t, int64(70), sum(per))
				assert.LessOrEqual(t, slices.Max(per)-slices.Min(per), int64(1), "buckets %v", per)
				n, err := in.MoveRecords(ctx)
				require.NoError(t, err)
				assert.Zero(t, n, "moves left recorded")

				require.NoError(t, in.SetStock(ctx, "whole", 5))
				require.NoError(t, in.Rebalance(ctx, "whole"), "a SKU kept whole has nothing to move")
				assert.ErrorIs(t, in.Rebalance(ctx, "nope"), inventory.ErrUnknownSKU)
				assert.ErrorIs(t, in.Rebalance(ctx, ""), inventory.ErrInvalidRequest)
				assert.ErrorIs(t, inventory.Rebalance(ctx, in.Reserver, "s"+string(rune(0x1e))+"1"), inventory.ErrInvalidRequest)
			})
			t.Run("UnderBuyersKeepsEveryUnit", func(t *testing.T) {
				t.Parallel()
				in := setup(t.Context(), t, nil, &redisstock.Options{Buckets: slots, SKUDefaults: inventory.StockOptions{Buckets: strategytest.BucketsK}})
				require.NoError(t, rebalanceHammer(t.Context(), in))
			})
			t.Run("UnderBuyersCatchesAMoveOfUnitsNoLongerThere", func(t *testing.T) {
				t.Parallel()
				// The wrong move goes wrong only when buyers take a bucket's
				// units between Rebalance's read and its move: a few
				// hammers, each on a store of its own.
				var err error
				for run := 0; run < 4 && err == nil; run++ {
					in := setupBare(t.Context(), t, nil, &redisstock.Options{Buckets: slots, SKUDefaults: inventory.StockOptions{Buckets: strategytest.BucketsK}})
					in.SetScriptSource(strings.Replace(redisstock.ScriptSource, "local n = math.min(s.a, tonumber(A[3]))", "local n = tonumber(A[3])", 1))
					err = rebalanceHammer(t.Context(), in)
				}
				require.Error(t, err, "a move that takes units its bucket no longer has went unnoticed in four hammers")
				t.Logf("caught: %v", err)
			})
			for _, step := range []string{"out", "in"} {
				t.Run("CutOffAfter_"+step+"_IsFinishedByExpireDue", func(t *testing.T) {
					t.Parallel()
					require.NoError(t, cutMove(t, rebalanced(t, nil, slots), step))
				})
			}
			t.Run("CutOffAfter_out_CatchesAMoveWithNoRecord", func(t *testing.T) {
				t.Parallel()
				in := rebalancedBare(t, slots)
				in.SetPlainMove(true)
				err := cutMove(t, in, "out")
				require.Error(t, err, "a move that keeps no record of the units on the way went unnoticed")
				t.Logf("caught: %v", err)
			})
			t.Run("CutOffAfter_in_CatchesAFinishThatAddsAgain", func(t *testing.T) {
				t.Parallel()
				in := rebalancedBare(t, slots)
				in.SetPlainMoveIn(true)
				err := cutMove(t, in, "in")
				require.Error(t, err, "a finish that adds a move's units whatever its token says went unnoticed")
				t.Logf("caught: %v", err)
			})
		})
	}
}

// TestRebalanceCluster moves units between the masters of a Redis Cluster
// of three: under buyers, and a move cut off after each step, finished by
// ExpireDue (TestRebalance has the twins these checks catch).
func TestRebalanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	rdb := c.Client(nil)
	t.Run("UnderBuyersKeepsEveryUnit", func(t *testing.T) {
		t.Parallel()
		in := setup(t.Context(), t, rdb, &redisstock.Options{Buckets: 16, SKUDefaults: inventory.StockOptions{Buckets: strategytest.BucketsK}})
		require.NoError(t, rebalanceHammer(t.Context(), in))
	})
	for _, step := range []string{"out", "in"} {
		t.Run("CutOffAfter_"+step+"_IsFinishedByExpireDue", func(t *testing.T) {
			t.Parallel()
			require.NoError(t, cutMove(t, rebalanced(t, rdb, 16), step))
		})
	}
}

// cutMove runs a Rebalance of "s" (70 units, see rebalanced) whose first
// move ends after step as a crash would, then ExpireDue before and after
// the move is due, and returns what went wrong: units the SKU lost or made
// once the sweep is done, or a move left recorded.
func cutMove(t *testing.T, in *instance, step string) error {
	t.Helper()
	ctx := t.Context()
	in.SetMoveCut(step)
	require.Error(t, in.Rebalance(ctx, "s"), "the cut-off move fails its Rebalance")
	in.SetMoveCut("")
	a, err := in.Available(ctx, "s")
	require.NoError(t, err)
	t.Logf("after a move cut off after %q: %d units available", step, a)
	if _, err := in.ExpireDue(ctx, 100); err != nil {
		return err
	}
	in.Clock.Advance(time.Minute)
	if _, err := in.ExpireDue(ctx, 100); err != nil {
		return err
	}
	if a, err = in.Available(ctx, "s"); err != nil {
		return err
	}
	n, err := in.MoveRecords(ctx)
	if err != nil {
		return err
	}
	if a != 70 || n != 0 {
		return fmt.Errorf("after ExpireDue: %d units available, not 70; %d moves left recorded", a, n)
	}
	// A sweep again finds nothing to do.
	if _, err := in.ExpireDue(ctx, 100); err != nil {
		return err
	}
	if a, err = in.Available(ctx, "s"); err != nil || a != 70 {
		return fmt.Errorf("after a second ExpireDue: %d units available, not 70 (%v)", a, err)
	}
	return nil
}

// rebalanceHammer runs buyers on two SKUs of eight buckets with the stock
// fixed while Rebalance runs on both again and again (over the first half
// of the run), and returns what went
// wrong: the hammer's check (every unit available, held or sold, never
// below zero), a bucket below zero, or a move left recorded.
func rebalanceHammer(ctx context.Context, in *instance) error {
	skus := []string{strategytest.SKUName(0), strategytest.SKUName(1)}
	// Rebalance runs over the first second of the two the hammer runs, so
	// that no move is on the way (its units counted by no bucket) when the
	// hammer counts the units at its end.
	runCtx, stop := context.WithTimeout(ctx, time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var rebalances atomic.Int64
	wg.Go(func() {
		for runCtx.Err() == nil {
			for _, sku := range skus {
				if err := in.Rebalance(runCtx, sku); err == nil {
					rebalances.Add(1)
				} else if runCtx.Err() == nil && !errors.Is(err, inventory.ErrUnknownSKU) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("rebalance %s: %w", sku, err))
					mu.Unlock()
				}
			}
		}
	})
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: in.Reserver, Advance: in.Clock.Advance, Workers: 24, SKUs: len(skus), Stock: 120,
		MaxQty: 3, MaxLines: 2, Duration: 2 * time.Second, FixedStock: true,
	})
	stop()
	wg.Wait()
	if err != nil {
		return err
	}
	if rebalances.Load() == 0 {
		return fmt.Errorf("no Rebalance ran during the hammer: nothing was tested")
	}
	if !rep.OK() {
		errs = append(errs, fmt.Errorf("hammer: %s", rep))
	}
	for _, sku := range skus {
		per, err := in.BucketUnits(ctx, sku)
		if err != nil {
			return err
		}
		if slices.Min(per) < 0 {
			errs = append(errs, fmt.Errorf("%s: a bucket below zero after %d rebalances: %v", sku, rebalances.Load(), per))
		}
	}
	if n, err := in.MoveRecords(ctx); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("%d moves left recorded (%v)", n, err))
	}
	return errors.Join(errs...)
}

// sum adds up units.
func sum(per []int64) int64 {
	var n int64
	for _, v := range per {
		n += v
	}
	return n
}
