package strategytest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

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
	wrap := func(f func(*memory.Reserver) inventory.Strategy) func(*Clock) inventory.Strategy {
		return func(c *Clock) inventory.Strategy { return f(memory.New(&memory.Options{Now: c.Now})) }
	}
	for _, w := range []struct {
		name  string
		make  func(*Clock) inventory.Strategy
		fails []string
	}{
		{"Memory", wrap(func(m *memory.Reserver) inventory.Strategy { return m }), nil},
		{"RefusesAfterTaking", wrap(func(m *memory.Reserver) inventory.Strategy { return refusesAfterTaking{m} }),
			[]string{"UnofferedFeaturesAreRefusedCleanly", "LimitPerBuyer", "BackordersSellBeyondTheStock", "HammerLimitPerBuyer"}},
		{"IgnoresLimit", wrap(func(m *memory.Reserver) inventory.Strategy { return ignoresLimit{m} }),
			[]string{"LimitPerBuyer", "HammerLimitPerBuyer"}},
		{"IgnoresBackorder", wrap(func(m *memory.Reserver) inventory.Strategy { return ignoresBackorder{m} }),
			[]string{"BackordersSellBeyondTheStock"}},
		{"HeldAsSold", wrap(func(m *memory.Reserver) inventory.Strategy { return heldAsSold{m} }),
			[]string{"LevelsAgreeWithEachOther", "BackordersSellBeyondTheStock", "HammerLimitPerBuyer"}},
		{"NoBackordered", wrap(func(m *memory.Reserver) inventory.Strategy { return noBackordered{m} }),
			[]string{"BackordersSellBeyondTheStock"}},
		{"PartialBelowMin", wrap(func(m *memory.Reserver) inventory.Strategy { return partialBelowMin{m} }),
			[]string{"PartialCartHoldsWhatIsThere"}},
		{"AlwaysPartial", wrap(func(m *memory.Reserver) inventory.Strategy { return alwaysPartial{m} }),
			[]string{"PartialCartHoldsWhatIsThere"}},
		{"RepeatsAnything", wrap(func(m *memory.Reserver) inventory.Strategy { return repeatsAnything{m} }),
			[]string{"RepeatsMatchBuyerAndPartial"}},
		{"RepeatsExactly", wrap(func(m *memory.Reserver) inventory.Strategy { return repeatsExactly{m} }),
			[]string{"RepeatsMatchBuyerAndPartial"}},
		{"ExtendsSettled", wrap(func(m *memory.Reserver) inventory.Strategy { return extendsSettled{m} }),
			[]string{"ExtendKeepsAHoldLonger"}},
		{"ExtendsPastMaxHold", func(c *Clock) inventory.Strategy {
			return memory.New(&memory.Options{Now: c.Now, MaxHold: 1000 * time.Hour})
		}, []string{"ExtendKeepsAHoldLonger"}},
	} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range featureCases {
				clock := NewClock()
				s := newSuite(&Harness{Strategy: w.make(clock), Advance: clock.Advance})
				err := c.check(t.Context(), s, func(string, ...any) {})
				want := slices.Contains(w.fails, c.name)
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

// ignoresLimit keeps no limit per buyer.
type ignoresLimit struct{ *memory.Reserver }

func (r ignoresLimit) SetStockWith(ctx context.Context, sku string, n int64, opts inventory.StockOptions) error {
	opts.Limit = 0
	return r.Reserver.SetStockWith(ctx, sku, n, opts)
}

// ignoresBackorder keeps no backorder allowance.
type ignoresBackorder struct{ *memory.Reserver }

func (r ignoresBackorder) SetStockWith(ctx context.Context, sku string, n int64, opts inventory.StockOptions) error {
	opts.Backorder = 0
	return r.Reserver.SetStockWith(ctx, sku, n, opts)
}

// heldAsSold reports the units held as sold in its Levels.
type heldAsSold struct{ *memory.Reserver }

func (r heldAsSold) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	l, err := r.Reserver.Levels(ctx, sku)
	l.Sold += l.Held
	l.Held = 0
	return l, err
}

// noBackordered reports no units backordered in its Levels.
type noBackordered struct{ *memory.Reserver }

func (r noBackordered) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	l, err := r.Reserver.Levels(ctx, sku)
	l.Backordered = 0
	return l, err
}

// partialBelowMin holds a partial line down to one unit whatever its Min.
type partialBelowMin struct{ *memory.Reserver }

func (r partialBelowMin) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	req.Lines = slices.Clone(req.Lines)
	for i := range req.Lines {
		req.Lines[i].Min = 0
	}
	return r.Reserver.Reserve(ctx, req)
}

// alwaysPartial holds what is there of every cart, asked or not.
type alwaysPartial struct{ *memory.Reserver }

func (r alwaysPartial) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	partial := req.Partial
	req.Partial = true
	res, err := r.Reserver.Reserve(ctx, req)
	res.Partial = partial
	return res, err
}

// repeatsAnything answers a repeat of an ID with the first reservation,
// whatever the repeat asks for.
type repeatsAnything struct{ *memory.Reserver }

func (r repeatsAnything) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if got, err := r.Lookup(ctx, req.ID); err == nil && !got.Cancelled() {
		return got, nil
	}
	return r.Reserver.Reserve(ctx, req)
}

// repeatsExactly answers a repeat of a partial request only when it asks
// for the units held.
type repeatsExactly struct{ *memory.Reserver }

func (r repeatsExactly) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if got, err := r.Lookup(ctx, req.ID); err == nil && req.Partial && !inventory.SameLines(got.Lines, req.Lines) {
		return inventory.Reservation{}, inventory.ErrConflict
	}
	return r.Reserver.Reserve(ctx, req)
}

// extendsSettled answers an Extend of a reservation that is not Held with
// the reservation, as if it were.
type extendsSettled struct{ *memory.Reserver }

func (r extendsSettled) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	if got, err := r.Lookup(ctx, id); err == nil && got.State != inventory.Held {
		return got, nil
	}
	return r.Reserver.Extend(ctx, id, ttl)
}
