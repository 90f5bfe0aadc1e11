package memory_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// levelsReader reads the levels of a SKU as fast as it can while buyers
// reserve, commit and release it, and reports the first reading whose levels
// do not add up to total or go below zero.
func levelsReader(ctx context.Context, levels func() (inventory.Levels, error), total int64, bad *atomic.Value) {
	for ctx.Err() == nil {
		l, err := levels()
		switch {
		case err != nil:
			bad.CompareAndSwap(nil, err.Error())
		case l.Available+l.Held+l.Sold != total || l.Available < 0 || l.Held < 0 || l.Sold < 0:
			bad.CompareAndSwap(nil, l)
		}
	}
}

// Commit moves units from held to sold without the SKU's mutex; Levels must
// still never see them in neither or in both.
func TestLevelsAddUpWhileBuyersRace(t *testing.T) {
	ctx := t.Context()
	r := memory.New(nil)
	const total = 40
	require.NoError(t, r.SetStockWith(ctx, "hot", total-5, inventory.StockOptions{Backorder: 5}))
	readCtx, stop := context.WithCancel(ctx)
	var bad atomic.Value
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			levelsReader(readCtx, func() (inventory.Levels, error) { return r.Levels(ctx, "hot") }, total, &bad)
		})
	}
	var buyers sync.WaitGroup
	for w := range 8 {
		buyers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 300 {
				id := fmt.Sprintf("%d-%d", w, i)
				_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "hot", Qty: 1 + rng.Int64N(3)}}})
				if errors.Is(err, inventory.ErrInsufficientStock) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				if rng.IntN(8) == 0 {
					assert.NoError(t, r.Commit(ctx, id))
				} else {
					assert.NoError(t, r.Release(ctx, id))
				}
			}
		})
	}
	buyers.Wait()
	stop()
	readers.Wait()
	assert.Nil(t, bad.Load(), "a reading of Levels that does not add up")
	l, err := r.Levels(ctx, "hot")
	require.NoError(t, err)
	assert.Equal(t, int64(total), l.Available+l.Held+l.Sold)
	assert.Equal(t, max(0, 5-l.Available), l.Backordered)
}

// The checker of TestLevelsAddUpWhileBuyersRace catches Levels that read
// held and sold apart from each other.
func TestLevelsReaderCatchesTornLevels(t *testing.T) {
	ctx := t.Context()
	var held, sold atomic.Int64
	held.Store(10)
	torn := func() (inventory.Levels, error) {
		h := held.Load()
		time.Sleep(time.Microsecond)
		return inventory.Levels{Held: h, Sold: sold.Load()}, nil
	}
	readCtx, stop := context.WithCancel(ctx)
	var bad atomic.Value
	done := make(chan struct{})
	go func() { levelsReader(readCtx, torn, 10, &bad); close(done) }()
	for deadline := time.Now().Add(5 * time.Second); bad.Load() == nil && time.Now().Before(deadline); {
		held.Add(-1) // a commit, seen by halves
		time.Sleep(time.Millisecond)
		sold.Add(1)
	}
	stop()
	<-done
	assert.NotNil(t, bad.Load(), "torn levels pass the check")
}

func TestExtendIsCappedAtMaxHold(t *testing.T) {
	ctx := t.Context()
	r, clk := newStore(t, &memory.Options{MaxHold: 30 * time.Minute})
	require.NoError(t, r.SetStock(ctx, "a", 5))
	res, err := r.Reserve(ctx, inventory.Request{ID: "o", Lines: []inventory.Line{{SKU: "a", Qty: 1}}, TTL: time.Minute})
	require.NoError(t, err)
	reserved := res.ExpiresAt.Add(-time.Minute)
	clk.Advance(50 * time.Second)
	e, err := r.Extend(ctx, "o", 10*time.Minute)
	require.NoError(t, err)
	assert.Equal(t, reserved.Add(50*time.Second+10*time.Minute), e.ExpiresAt)
	e, err = r.Extend(ctx, "o", time.Hour)
	require.NoError(t, err)
	assert.Equal(t, reserved.Add(30*time.Minute), e.ExpiresAt, "capped at MaxHold after it was reserved")
	clk.Advance(29 * time.Minute)
	n, err := r.ExpireDue(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n, "an extended hold is not due at its first expiry")
	clk.Advance(time.Minute)
	n, err = r.ExpireDue(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "an extended hold is due at its new expiry")
}

// A limit set on a SKU counts the units bought while it had one, also
// across a change of the limit, and no others.
func TestLimitCountsWhatWasBoughtUnderIt(t *testing.T) {
	ctx := t.Context()
	r := memory.New(nil)
	require.NoError(t, r.SetStock(ctx, "a", 10))
	reserve := func(id string, qty int64) error {
		_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: qty}}, Buyer: "b"})
		return err
	}
	require.NoError(t, reserve("before", 3), "no limit yet")
	require.NoError(t, r.SetStockWith(ctx, "a", 7, inventory.StockOptions{Limit: 2}))
	require.NoError(t, reserve("under", 2))
	require.ErrorIs(t, reserve("over", 1), inventory.ErrLimitExceeded)
	require.NoError(t, r.SetStockWith(ctx, "a", 5, inventory.StockOptions{Limit: 3}))
	require.NoError(t, reserve("raised", 1))
	require.ErrorIs(t, reserve("over2", 1), inventory.ErrLimitExceeded)
	require.NoError(t, r.Release(ctx, "before"), "units held before the limit do not count")
	require.ErrorIs(t, reserve("over3", 1), inventory.ErrLimitExceeded)
	require.NoError(t, r.Release(ctx, "under"))
	require.NoError(t, reserve("again", 2))
}
