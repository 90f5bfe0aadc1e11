package otelinventory_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/otelinventory"
	"github.com/oversell/inventory/strategy/strategytest"
)

func TestOptionalMethodsPassThrough(t *testing.T) {
	pgtest.CheckWrapperPassesThrough(t, func(s inventory.Strategy) inventory.Strategy { return otelinventory.Wrap(s, nil) },
		func(context.Context) (string, error) { return strategytest.RandomID(), nil })

	// Over a strategy without buckets, Rebalance fails clearly.
	r := otelinventory.Wrap(plain{memory.New(nil)}, nil)
	assert.ErrorIs(t, inventory.Rebalance(t.Context(), r, "sku"), inventory.ErrUnsupported)
}

// plain hides every optional interface of its strategy.
type plain struct{ inventory.Strategy }
