package token_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
	"github.com/oversell/inventory/token"
)

// TestOptionalMethodsPassThrough checks that the wrapper hides none of the
// inner strategy's optional interfaces: stock buckets, Rebalance, and Purge
// (so that a Sweeper on the wrapper purges the inner ledger).
func TestOptionalMethodsPassThrough(t *testing.T) {
	ctx := t.Context()
	clk := strategytest.NewClock()
	inner, err := sqlcond.New(testsvc.Postgres(t), &sqlcond.Options{Schema: testsvc.Schema(t), Now: clk.Now, Retention: time.Hour})
	require.NoError(t, err)
	require.NoError(t, inner.Migrate(ctx))
	issuer := newIssuer(t, nil)
	r := token.Wrap(inner, issuer, token.NewMemoryStore(), nil)

	require.NoError(t, inventory.SetStockWith(ctx, r, "sku", 16, inventory.StockOptions{Buckets: 4}))
	require.NoError(t, inventory.Rebalance(ctx, r, "sku"))
	tok, err := issuer.Issue(ctx)
	require.NoError(t, err)
	_, err = r.Reserve(ctx, inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "sku", Qty: 2}}})
	require.NoError(t, err)
	require.NoError(t, r.Commit(ctx, tok))
	clk.Advance(2 * time.Hour)
	var p inventory.Purger = r
	n, err := p.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the inner ledger purged the settled reservation")
	_, err = inner.Lookup(ctx, tok)
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	avail, err := r.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Equal(t, int64(14), avail)

	// Over a strategy without a retention, Purge deletes nothing.
	m := token.Wrap(memory.New(nil), issuer, token.NewMemoryStore(), nil)
	n, err = m.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = m.Purge(ctx, 0)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
}
