package token_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/token"
)

func TestOptionalMethodsPassThrough(t *testing.T) {
	issuer := newIssuer(t, nil)
	pgtest.CheckWrapperPassesThrough(t, func(s inventory.Strategy) inventory.Strategy {
		return token.Wrap(s, issuer, token.NewMemoryStore(), nil)
	}, issuer.Issue)

	// Over a strategy without a retention, Purge deletes nothing.
	ctx := t.Context()
	m := token.Wrap(memory.New(nil), issuer, token.NewMemoryStore(), nil)
	n, err := m.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = m.Purge(ctx, 0)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
}
