// Package unreachtest holds the checks every store's "server cannot be
// reached" test shares: each call of a strategy fails with
// inventory.ErrUnavailable, and nothing changed.
package unreachtest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy/strategytest"
)

// EveryCallIsUnavailable calls every method of s, whose server cannot be
// reached: each must fail with an *inventory.UnavailableError naming server
// (nothing was sent), not an unknown outcome or a raw dial error. heldID is
// a reservation held on sku before the server went away. It returns the ID
// of the Reserve it tried, for NothingChanged.
func EveryCallIsUnavailable(ctx context.Context, t *testing.T, s inventory.Strategy, server, sku, heldID string) (newID string) {
	t.Helper()
	newID = strategytest.RandomID()
	calls := map[string]func() error{
		"Reserve": func() error {
			_, err := s.Reserve(ctx, inventory.Request{ID: newID, Lines: []inventory.Line{{SKU: sku, Qty: 3}}})
			return err
		},
		"Cancel":    func() error { return s.Cancel(ctx, newID+"-cancel") },
		"Commit":    func() error { return s.Commit(ctx, heldID) },
		"Release":   func() error { return s.Release(ctx, heldID) },
		"ExpireDue": func() error { _, err := s.ExpireDue(ctx, 10); return err },
		"Lookup":    func() error { _, err := s.Lookup(ctx, heldID); return err },
		"Available": func() error { _, err := s.Available(ctx, sku); return err },
		"SetStock":  func() error { return s.SetStock(ctx, sku+"-new", 5) },
		"AddStock":  func() error { _, err := s.AddStock(ctx, sku, 5); return err },
	}
	for name, call := range calls {
		err := call()
		assert.ErrorIs(t, err, inventory.ErrUnavailable, "%s with the server unreachable", name)
		assert.NotErrorIs(t, err, inventory.ErrOutcomeUnknown, "%s sent nothing: its outcome is known", name)
		var u *inventory.UnavailableError
		if assert.ErrorAs(t, err, &u, name) {
			assert.Equal(t, server, u.Server, name)
		}
	}
	return newID
}

// NothingChanged reads, through other (the same store on a connection that
// reaches the server), that the calls of EveryCallIsUnavailable changed
// nothing: newID unknown, heldID still held, sku at available units, and
// the SKU SetStock tried not made.
func NothingChanged(ctx context.Context, t *testing.T, other inventory.Strategy, sku, heldID, newID string, available int64) {
	t.Helper()
	_, err := other.Lookup(ctx, newID)
	assert.ErrorIs(t, err, inventory.ErrNotFound, "nothing recorded")
	got, err := other.Lookup(ctx, heldID)
	require.NoError(t, err)
	assert.Equal(t, inventory.Held, got.State, "still held")
	n, err := other.Available(ctx, sku)
	require.NoError(t, err)
	assert.Equal(t, available, n, "no unit moved")
	_, err = other.Available(ctx, sku+"-new")
	assert.ErrorIs(t, err, inventory.ErrUnknownSKU)
}
