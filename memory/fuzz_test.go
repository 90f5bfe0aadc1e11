package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// FuzzReserve feeds Reserve, Commit and Release arbitrary input: they never
// panic, an invalid request changes nothing, and the units always add up.
func FuzzReserve(f *testing.F) {
	f.Add("order-1", "a", int64(1), "b", int64(2), int64(0), true)
	f.Add("", "a", int64(0), "a", int64(-1), int64(-1), false)
	f.Add("x", "a\xff", int64(1<<62), "b\x00", int64(inventory.MaxQty+1), int64(time.Hour), true)
	f.Fuzz(func(t *testing.T, id, sku1 string, qty1 int64, sku2 string, qty2, ttl int64, commit bool) {
		ctx := context.Background()
		clk := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		r := memory.New(&memory.Options{Now: func() time.Time { return clk }})
		for _, sku := range []string{sku1, sku2} {
			if inventory.ValidateSKU(sku) == nil {
				if err := r.SetStock(ctx, sku, 10); err != nil {
					t.Fatalf("SetStock(%q): %v", sku, err)
				}
			}
		}
		req := inventory.Request{ID: id, TTL: time.Duration(ttl), Lines: []inventory.Line{{SKU: sku1, Qty: qty1}, {SKU: sku2, Qty: qty2}}}
		res, err := r.Reserve(ctx, req)
		if verr := req.Validate(); verr != nil {
			if !errors.Is(err, inventory.ErrInvalidRequest) {
				t.Fatalf("invalid request %+v: got %v", req, err)
			}
		} else if err == nil {
			if commit {
				err = r.Commit(ctx, res.ID)
			} else {
				err = r.Release(ctx, res.ID)
			}
			if err != nil {
				t.Fatalf("settle %q: %v", res.ID, err)
			}
		}
		for _, sku := range []string{sku1, sku2} {
			n, err := r.Available(ctx, sku)
			if err != nil {
				continue // invalid or unknown
			}
			if n < 0 || n > 10 {
				t.Fatalf("available %q = %d, outside 0..10", sku, n)
			}
		}
	})
}
