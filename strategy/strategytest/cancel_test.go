package strategytest

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// Strategies whose Cancel is wrong on purpose, each in one way, on top of
// the memory strategy, which is right. The cancel cases must catch each.

// cancelAsRelease is Cancel written as Release: an unseen ID is not found,
// and nothing stops its late Reserve.
type cancelAsRelease struct{ inventory.Strategy }

func (c cancelAsRelease) Cancel(ctx context.Context, id string) error { return c.Release(ctx, id) }

// noTombstone releases held reservations but records nothing for an ID it
// has not seen.
type noTombstone struct{ inventory.Strategy }

func (c noTombstone) Cancel(ctx context.Context, id string) error {
	if _, err := c.Lookup(ctx, id); errors.Is(err, inventory.ErrNotFound) {
		return nil
	}
	return c.Strategy.Cancel(ctx, id)
}

// cancelKeeps settles a held reservation without giving its units back.
type cancelKeeps struct{ inventory.Strategy }

func (c cancelKeeps) Cancel(ctx context.Context, id string) error {
	r, err := c.Lookup(ctx, id)
	if err == nil && r.State == inventory.Held {
		return c.Commit(ctx, id)
	}
	return c.Strategy.Cancel(ctx, id)
}

// cancelGivesAlways gives a reservation's units back on every Cancel,
// whatever its state, and answers nil.
type cancelGivesAlways struct{ inventory.Strategy }

func (c cancelGivesAlways) Cancel(ctx context.Context, id string) error {
	r, err := c.Lookup(ctx, id)
	if err != nil {
		return c.Strategy.Cancel(ctx, id)
	}
	if r.State == inventory.Held {
		return c.Strategy.Cancel(ctx, id)
	}
	for _, l := range r.Lines {
		if _, err := c.AddStock(ctx, l.SKU, l.Qty); err != nil {
			return err
		}
	}
	return nil
}

// TestCancelCasesCatchWrongCancels runs every cancel case on memory, which
// must pass them all, and on each wrong strategy, which must fail the cases
// named. The race of a Cancel and a Reserve catches a wrong Cancel only in
// the order it gets wrong, so it is named only where either order fails or
// the order that fails is the one the race almost always takes.
func TestCancelCasesCatchWrongCancels(t *testing.T) {
	for _, w := range []struct {
		name  string
		wrap  func(inventory.Strategy) inventory.Strategy
		fails []string
	}{
		{"Memory", func(s inventory.Strategy) inventory.Strategy { return s }, nil},
		{"CancelAsRelease", func(s inventory.Strategy) inventory.Strategy { return cancelAsRelease{s} },
			[]string{"CancelOfUnseenIDRefusesLateReserve", "CancelIsIdempotent", "CancelOfExpiredHoldIsNil", "CancelAfterCommitFails", "CancelRacingReserveEndsOneWay"}},
		{"NoTombstone", func(s inventory.Strategy) inventory.Strategy { return noTombstone{s} },
			[]string{"CancelOfUnseenIDRefusesLateReserve", "CancelRacingReserveEndsOneWay"}},
		{"CancelKeepsUnits", func(s inventory.Strategy) inventory.Strategy { return cancelKeeps{s} },
			[]string{"CancelReleasesAHold", "CancelIsIdempotent", "CancelOfExpiredHoldIsNil"}},
		{"CancelGivesAlways", func(s inventory.Strategy) inventory.Strategy { return cancelGivesAlways{s} },
			[]string{"CancelIsIdempotent", "CancelOfExpiredHoldIsNil", "CancelAfterCommitFails"}},
	} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cancelCases {
				clock := NewClock()
				s := newSuite(&Harness{Strategy: w.wrap(memory.New(&memory.Options{Now: clock.Now})), Advance: clock.Advance})
				err := c.check(t.Context(), s)
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
