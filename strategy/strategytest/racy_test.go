package strategytest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
)

// racy is a deliberately broken strategy: Reserve reads the stock, then
// writes it, with nothing in between to stop another buyer. It is free of
// data races (the race detector stays quiet) but not of the logical race
// that oversells. The suite must catch it.
type racy struct {
	mu    sync.Mutex
	stock map[string]*atomic.Int64
	res   map[string]*inventory.Reservation
}

var _ inventory.Strategy = (*racy)(nil)

func newRacy() *racy {
	return &racy{stock: make(map[string]*atomic.Int64), res: make(map[string]*inventory.Reservation)}
}

func (r *racy) counter(sku string) *atomic.Int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stock[sku]
}

func (r *racy) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	lines := inventory.SortLines(req.Lines)
	for _, l := range lines {
		c := r.counter(l.SKU)
		if c == nil {
			return inventory.Reservation{}, &inventory.UnknownSKUError{SKU: l.SKU}
		}
		avail := c.Load() // read ...
		if avail < l.Qty {
			return inventory.Reservation{}, &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: avail}
		}
		// The window in which another buyer reads the same value. A sleep,
		// not runtime.Gosched, which may find nobody else to run.
		time.Sleep(20 * time.Microsecond)
		c.Store(avail - l.Qty) // ... then write: another buyer may have read the same value
	}
	res := inventory.Reservation{ID: req.ID, Lines: lines, State: inventory.Held, ExpiresAt: time.Now().Add(time.Hour)}
	r.mu.Lock()
	r.res[req.ID] = &res
	r.mu.Unlock()
	return res, nil
}

func (r *racy) settle(id string, to inventory.State) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.res[id]
	if !ok {
		return inventory.ErrNotFound
	}
	if res.State == to {
		return nil
	}
	if res.State != inventory.Held {
		return &inventory.StateError{ID: id, State: res.State}
	}
	res.State = to
	if to != inventory.Committed {
		for _, l := range res.Lines {
			r.stock[l.SKU].Add(l.Qty)
		}
	}
	return nil
}

func (r *racy) Commit(_ context.Context, id string) error  { return r.settle(id, inventory.Committed) }
func (r *racy) Release(_ context.Context, id string) error { return r.settle(id, inventory.Released) }

func (r *racy) Available(_ context.Context, sku string) (int64, error) {
	c := r.counter(sku)
	if c == nil {
		return 0, inventory.ErrUnknownSKU
	}
	return c.Load(), nil
}

func (r *racy) SetStock(_ context.Context, sku string, n int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := new(atomic.Int64)
	c.Store(n)
	r.stock[sku] = c
	return nil
}

func (r *racy) AddStock(_ context.Context, sku string, delta int64) (int64, error) {
	c := r.counter(sku)
	if c == nil {
		return 0, inventory.ErrUnknownSKU
	}
	return c.Add(delta), nil
}

func (r *racy) ExpireDue(context.Context, int) (int, error) { return 0, nil }

func (r *racy) Lookup(_ context.Context, id string) (inventory.Reservation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.res[id]
	if !ok {
		return inventory.Reservation{}, inventory.ErrNotFound
	}
	return *res, nil
}

// TestHammerCatchesOversell shows the hammer can fail: on a strategy that
// reads and then writes without a lock, it reports oversold units, at the
// sizes the conformance hammers run with.
func TestHammerCatchesOversell(t *testing.T) {
	t.Run("HotSKU", func(t *testing.T) {
		rep, err := Hammer(t.Context(), HammerConfig{Strategy: newRacy(), Workers: 64, Stock: sizes.hotStock, SellOut: true, FixedStock: true})
		require.NoError(t, err)
		t.Log(rep)
		assert.Positive(t, rep.Oversold, "the hammer reports the racy strategy's oversell")
		assert.Greater(t, rep.Granted, sizes.hotStock, "more units granted than exist")
		assert.False(t, rep.OK())
	})
	t.Run("ManySKUs", func(t *testing.T) {
		rep, err := Hammer(t.Context(), HammerConfig{Strategy: newRacy(), Workers: 64, SKUs: 20, Stock: sizes.manyStock, MaxLines: 5, OpsPerWorker: sizes.manyOps, FixedStock: true})
		require.NoError(t, err)
		t.Log(rep)
		assert.Positive(t, rep.Oversold, "the hammer reports the racy strategy's oversell")
		assert.False(t, rep.OK())
	})
}

// TestReportCountsLostUnits shows the accounting also catches units that
// vanish: a strategy whose Release forgets to give units back.
func TestReportCountsLostUnits(t *testing.T) {
	rep, err := Hammer(t.Context(), HammerConfig{Strategy: &leaky{newRacy()}, Workers: 1, Stock: 50, SellOut: true, Settle: true})
	require.NoError(t, err)
	t.Log(rep)
	assert.Equal(t, int64(50), rep.Granted)
	assert.Equal(t, rep.Released, rep.Lost, "every released unit is lost")
	assert.Positive(t, rep.Lost)
}

// leaky drops the units it releases.
type leaky struct{ *racy }

func (l *leaky) Release(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	res, ok := l.res[id]
	if !ok {
		return inventory.ErrNotFound
	}
	res.State = inventory.Released
	return nil
}

// Cancel is Release: the racy strategy keeps no tombstones either.
func (r *racy) Cancel(_ context.Context, id string) error { return r.settle(id, inventory.Released) }
