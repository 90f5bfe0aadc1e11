package strategytest

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// Strategies whose features are wrong on purpose, each in one way, on top of
// the memory strategy. The feature cases must catch each.

// refusesAfterTaking refuses Buyer, Partial, a Limit and a Backorder with
// ErrUnsupported, but only after it has done what it was asked without them.
type refusesAfterTaking struct{ *memory.Reserver }

func (r refusesAfterTaking) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if req.Buyer == "" && !req.Partial {
		return r.Reserver.Reserve(ctx, req)
	}
	req.Buyer, req.Partial = "", false
	for i := range req.Lines {
		req.Lines[i].Min = 0
	}
	if _, err := r.Reserver.Reserve(ctx, req); err != nil {
		return inventory.Reservation{}, err
	}
	return inventory.Reservation{}, fmt.Errorf("refusesAfterTaking: %w", inventory.ErrUnsupported)
}

func (r refusesAfterTaking) SetStockWith(ctx context.Context, sku string, n int64, opts inventory.StockOptions) error {
	if err := r.Reserver.SetStock(ctx, sku, n); err != nil {
		return err
	}
	return inventory.RefuseUnofferedStock("refusesAfterTaking", sku, opts, false, false)
}

// TestFeatureCasesCatchWrongFeatures runs every feature case on memory,
// which must pass them all, and on each wrong strategy, which must fail the
// cases named.
func TestFeatureCasesCatchWrongFeatures(t *testing.T) {
	for _, w := range []struct {
		name  string
		make  func(*memory.Reserver) inventory.Strategy
		fails []string
	}{
		{"Memory", func(m *memory.Reserver) inventory.Strategy { return m }, nil},
		{"RefusesAfterTaking", func(m *memory.Reserver) inventory.Strategy { return refusesAfterTaking{m} },
			[]string{"UnofferedFeaturesAreRefusedCleanly"}},
	} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range featureCases {
				clock := NewClock()
				s := newSuite(&Harness{Strategy: w.make(memory.New(&memory.Options{Now: clock.Now})), Advance: clock.Advance})
				err := c.check(t.Context(), s, t.Logf)
				want := false
				for _, f := range w.fails {
					want = want || f == c.name
				}
				switch {
				case want:
					assert.Error(t, err, "%s passes %s", w.name, c.name)
				case w.fails == nil:
					require.NoError(t, err, "%s fails %s", w.name, c.name)
				}
				t.Logf("%s: %v", c.name, err)
			}
		})
	}
}
