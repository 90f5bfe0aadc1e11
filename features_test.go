package inventory_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
)

func TestValidateBuyerAndMin(t *testing.T) {
	line := func(qty, min int64) []inventory.Line { return []inventory.Line{{SKU: "a", Qty: qty, Min: min}} }
	for _, tc := range []struct {
		name  string
		req   inventory.Request
		field string // "" when valid
	}{
		{"no buyer", inventory.Request{ID: "r", Lines: line(2, 0)}, ""},
		{"buyer", inventory.Request{ID: "r", Lines: line(2, 0), Buyer: "b"}, ""},
		{"buyer too long", inventory.Request{ID: "r", Lines: line(2, 0), Buyer: strings.Repeat("b", inventory.MaxIDLen+1)}, "Buyer"},
		{"buyer control character", inventory.Request{ID: "r", Lines: line(2, 0), Buyer: "b\x00"}, "Buyer"},
		{"buyer not UTF-8", inventory.Request{ID: "r", Lines: line(2, 0), Buyer: "\xff"}, "Buyer"},
		{"min without partial", inventory.Request{ID: "r", Lines: line(2, 1)}, "Lines[0].Min"},
		{"partial min 0", inventory.Request{ID: "r", Lines: line(2, 0), Partial: true}, ""},
		{"partial min qty", inventory.Request{ID: "r", Lines: line(2, 2), Partial: true}, ""},
		{"partial min above qty", inventory.Request{ID: "r", Lines: line(2, 3), Partial: true}, "Lines[0].Min"},
		{"partial min negative", inventory.Request{ID: "r", Lines: line(2, -1), Partial: true}, "Lines[0].Min"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			if tc.field == "" {
				assert.NoError(t, err)
				return
			}
			var ve *inventory.ValidationError
			require.ErrorAs(t, err, &ve)
			assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
			assert.Equal(t, tc.field, ve.Field)
		})
	}
}

func TestValidateStockWithLimitAndBackorder(t *testing.T) {
	for _, tc := range []struct {
		opts  inventory.StockOptions
		field string
	}{
		{inventory.StockOptions{Limit: inventory.MaxQty, Backorder: inventory.MaxStock}, ""},
		{inventory.StockOptions{Limit: -1}, "Limit"},
		{inventory.StockOptions{Limit: inventory.MaxQty + 1}, "Limit"},
		{inventory.StockOptions{Backorder: -1}, "Backorder"},
		{inventory.StockOptions{Backorder: inventory.MaxStock + 1}, "Backorder"},
	} {
		err := inventory.ValidateStockWith("a", 1, tc.opts)
		if tc.field == "" {
			assert.NoError(t, err, "%+v", tc.opts)
			continue
		}
		var ve *inventory.ValidationError
		if assert.ErrorAs(t, err, &ve, "%+v", tc.opts) {
			assert.Equal(t, tc.field, ve.Field)
		}
	}
}

func TestSetStockWithRefusesLimitAndBackorderAStrategyCannotKeep(t *testing.T) {
	ctx := t.Context()
	w := &wholeOnly{set: map[string]int64{}}
	for _, opts := range []inventory.StockOptions{{Limit: 2}, {Backorder: 3}} {
		assert.ErrorIs(t, inventory.SetStockWith(ctx, w, "a", 5, opts), inventory.ErrUnsupported, "%+v", opts)
	}
	assert.ErrorIs(t, inventory.SetStockWith(ctx, w, "a", 5, inventory.StockOptions{Limit: -1}), inventory.ErrInvalidRequest)
	assert.Empty(t, w.set, "nothing set")
}

func TestRefuseUnoffered(t *testing.T) {
	lines := []inventory.Line{{SKU: "a", Qty: 1}}
	plain := inventory.Request{ID: "r", Lines: lines}
	buyer := inventory.Request{ID: "r", Lines: lines, Buyer: "b"}
	partial := inventory.Request{ID: "r", Lines: lines, Partial: true}
	assert.NoError(t, inventory.RefuseUnoffered("x", plain, false, false))
	assert.NoError(t, inventory.RefuseUnoffered("x", buyer, true, false))
	assert.NoError(t, inventory.RefuseUnoffered("x", partial, false, true))
	err := inventory.RefuseUnoffered("x", buyer, false, true)
	assert.ErrorIs(t, err, inventory.ErrUnsupported)
	assert.ErrorContains(t, err, "Buyer")
	err = inventory.RefuseUnoffered("x", partial, true, false)
	assert.ErrorIs(t, err, inventory.ErrUnsupported)
	assert.ErrorContains(t, err, "Partial")

	assert.NoError(t, inventory.RefuseUnofferedStock("x", "a", inventory.StockOptions{Buckets: 4}, false, false))
	assert.NoError(t, inventory.RefuseUnofferedStock("x", "a", inventory.StockOptions{Limit: 1, Backorder: 1}, true, true))
	err = inventory.RefuseUnofferedStock("x", "a", inventory.StockOptions{Limit: 1}, false, true)
	assert.ErrorIs(t, err, inventory.ErrUnsupported)
	assert.ErrorContains(t, err, "Limit")
	err = inventory.RefuseUnofferedStock("x", "a", inventory.StockOptions{Backorder: 1}, true, false)
	assert.ErrorIs(t, err, inventory.ErrUnsupported)
	assert.ErrorContains(t, err, "Backorder")
}

func TestCheckRepeat(t *testing.T) {
	held := func(qty ...int64) []inventory.Line {
		out := []inventory.Line{}
		for i, q := range qty {
			out = append(out, inventory.Line{SKU: string(rune('a' + i)), Qty: q})
		}
		return out
	}
	got := inventory.Reservation{ID: "r", Lines: held(2, 3), State: inventory.Held}
	gotBuyer := got
	gotBuyer.Buyer = "b"
	gotPartial := got
	gotPartial.Partial = true
	asked := []inventory.Line{{SKU: "b", Qty: 5, Min: 3}, {SKU: "a", Qty: 2}}
	for _, tc := range []struct {
		name string
		got  inventory.Reservation
		req  inventory.Request
		ok   bool
	}{
		{"same lines", got, inventory.Request{ID: "r", Lines: held(2, 3)}, true},
		{"other lines", got, inventory.Request{ID: "r", Lines: held(2, 4)}, false},
		{"same buyer", gotBuyer, inventory.Request{ID: "r", Lines: held(2, 3), Buyer: "b"}, true},
		{"other buyer", gotBuyer, inventory.Request{ID: "r", Lines: held(2, 3), Buyer: "c"}, false},
		{"buyer left out", gotBuyer, inventory.Request{ID: "r", Lines: held(2, 3)}, false},
		{"buyer added", got, inventory.Request{ID: "r", Lines: held(2, 3), Buyer: "b"}, false},
		{"partial added", got, inventory.Request{ID: "r", Lines: held(2, 3), Partial: true}, false},
		{"partial left out", gotPartial, inventory.Request{ID: "r", Lines: held(2, 3)}, false},
		{"partial within", gotPartial, inventory.Request{ID: "r", Lines: asked, Partial: true}, true},
		{"partial held exactly", gotPartial, inventory.Request{ID: "r", Lines: held(2, 3), Partial: true}, true},
		{"partial held below min", gotPartial, inventory.Request{ID: "r", Lines: []inventory.Line{{SKU: "a", Qty: 2}, {SKU: "b", Qty: 5, Min: 4}}, Partial: true}, false},
		{"partial held above qty", gotPartial, inventory.Request{ID: "r", Lines: held(2, 2), Partial: true}, false},
		{"partial other sku", gotPartial, inventory.Request{ID: "r", Lines: []inventory.Line{{SKU: "a", Qty: 2}, {SKU: "c", Qty: 3}}, Partial: true}, false},
		{"partial fewer lines", gotPartial, inventory.Request{ID: "r", Lines: held(2), Partial: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := inventory.CheckRepeat("x", tc.got, tc.req)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, inventory.ErrConflict)
			}
		})
	}
	tomb := inventory.Reservation{ID: "r", State: inventory.Released, Buyer: "b"}
	assert.ErrorIs(t, inventory.CheckRepeat("x", tomb, inventory.Request{ID: "r", Lines: held(1)}), inventory.ErrCancelled, "a tombstone refuses whatever the buyer")
}

func TestRefuseUnofferedReportsInvalidInputFirst(t *testing.T) {
	req := inventory.Request{ID: "", Lines: []inventory.Line{{SKU: "a", Qty: 1}}, Buyer: "b"}
	assert.ErrorIs(t, inventory.RefuseUnoffered("x", req, false, false), inventory.ErrInvalidRequest)
}
