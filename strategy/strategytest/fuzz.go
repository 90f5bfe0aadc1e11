package strategytest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oversell/inventory"
)

// fuzzStock is the stock every valid SKU of a fuzz input starts with.
const fuzzStock = 10

// FuzzRequests feeds a strategy's Reserve, Commit, Release and Lookup
// arbitrary IDs, SKUs, quantities and TTLs, and checks that it answers as
// inventory.Request.Validate and inventory.ValidateID say: input they refuse
// fails with inventory.ErrInvalidRequest and changes nothing; input they
// accept is reserved (or refused for its stock) and settled, and the units
// add up. A strategy's test file calls it from a Fuzz function of its own:
//
//	func FuzzRequests(f *testing.F) { strategytest.FuzzRequests(f, newHarness) }
//
// Plain `go test` runs the seed corpus, which holds the inputs every strategy
// must refuse (a NUL byte, invalid UTF-8, control characters, empty and
// oversized IDs and SKUs, bad quantities and TTLs); `go test -fuzz` explores
// from there. Every input gets a harness of its own.
//
// The lines of an accepted request are also reserved under an ID from
// Harness.NewID, so that a strategy that takes only IDs of its own (tokens)
// is fuzzed on its lines too; such a strategy may refuse the fuzzed ID
// itself with inventory.ErrInvalidRequest.
func FuzzRequests(f *testing.F, newHarness HarnessMaker) {
	f.Helper()
	for _, in := range fuzzSeeds {
		f.Add(in.id, in.sku1, in.qty1, in.sku2, in.qty2, in.ttl, in.commit)
	}
	f.Fuzz(func(t *testing.T, id, sku1 string, qty1 int64, sku2 string, qty2, ttl int64, commit bool) {
		ctx, cancel := context.WithTimeout(t.Context(), behaviourTimeout)
		defer cancel()
		h := newHarness(ctx, t)
		if h == nil || h.Strategy == nil {
			t.Fatal("HarnessMaker returned no strategy")
		}
		ownIDs := h.NewID != nil
		s := newSuite(h)
		st := s.Strategy

		stocked := map[string]bool{}
		for _, sku := range []string{sku1, sku2} {
			if inventory.ValidateSKU(sku) == nil && !stocked[sku] {
				if err := st.SetStock(ctx, sku, fuzzStock); err != nil {
					t.Fatalf("SetStock(%q): %v", sku, err)
				}
				stocked[sku] = true
			}
		}
		sold := map[string]int64{}
		lines := []inventory.Line{{SKU: sku1, Qty: qty1}, {SKU: sku2, Qty: qty2}}
		req := inventory.Request{ID: id, Lines: lines, TTL: time.Duration(ttl)}
		valid := req.Validate() == nil

		res, err := st.Reserve(ctx, req)
		switch {
		case !valid:
			if !errors.Is(err, inventory.ErrInvalidRequest) {
				t.Fatalf("Reserve(%#v): got %v, want ErrInvalidRequest", req, err)
			}
		case err == nil:
			settleFuzzed(ctx, t, st, res.ID, commit, lines, sold)
		case ownIDs && errors.Is(err, inventory.ErrInvalidRequest):
		case errors.Is(err, inventory.ErrInsufficientStock):
		default:
			t.Fatalf("Reserve(%#v): %v", req, err)
		}

		// The same ID on its own, as every call that takes one sees it.
		idErr := inventory.ValidateID(id)
		for name, call := range map[string]func() error{
			"Commit":  func() error { return st.Commit(ctx, id) },
			"Release": func() error { return st.Release(ctx, id) },
			"Lookup":  func() error { _, err := st.Lookup(ctx, id); return err },
		} {
			err := call()
			switch {
			case idErr != nil:
				if !errors.Is(err, inventory.ErrInvalidRequest) {
					t.Fatalf("%s(%+q): got %v, want ErrInvalidRequest", name, id, err)
				}
			case err == nil, errors.Is(err, inventory.ErrNotFound), errors.Is(err, inventory.ErrNotHeld):
			case ownIDs && errors.Is(err, inventory.ErrInvalidRequest):
			default:
				t.Fatalf("%s(%+q): %v", name, id, err)
			}
		}

		// The lines again, under an ID the strategy takes.
		if valid {
			own := inventory.Request{ID: s.id(ctx, t), Lines: lines, TTL: req.TTL}
			res, err := st.Reserve(ctx, own)
			switch {
			case err == nil:
				settleFuzzed(ctx, t, st, res.ID, !commit, lines, sold)
			case errors.Is(err, inventory.ErrInsufficientStock):
			default:
				t.Fatalf("Reserve(%#v): %v", own, err)
			}
		}

		for sku := range stocked {
			n, err := st.Available(ctx, sku)
			if err != nil {
				t.Fatalf("Available(%q): %v", sku, err)
			}
			if want := fuzzStock - sold[sku]; n != want {
				t.Fatalf("Available(%q) = %d, want %d (stock %d, sold %d)", sku, n, want, fuzzStock, sold[sku])
			}
		}
	})
}

// settleFuzzed commits (and counts as sold) or releases the reservation id of
// lines.
func settleFuzzed(ctx context.Context, t *testing.T, st inventory.Strategy, id string, commit bool, lines []inventory.Line, sold map[string]int64) {
	t.Helper()
	if !commit {
		if err := st.Release(ctx, id); err != nil {
			t.Fatalf("Release(%q): %v", id, err)
		}
		return
	}
	if err := st.Commit(ctx, id); err != nil {
		t.Fatalf("Commit(%q): %v", id, err)
	}
	for _, l := range lines {
		sold[l.SKU] += l.Qty
	}
}

// fuzzSeeds is the seed corpus of FuzzRequests: plain requests, and one for
// each way of breaking the rules of a request.
var fuzzSeeds = []struct {
	id, sku1  string
	qty1      int64
	sku2      string
	qty2, ttl int64
	commit    bool
}{
	{"order-1", "a", 1, "b", 2, 0, true},
	{"order-2", "a", 3, "b", fuzzStock + 1, int64(time.Hour), false},
	{"\x00", "a", 1, "b", 1, 0, true},
	{"\xff\xfe", "a", 1, "b", 1, 0, false},
	{"order\x00-3", "a", 1, "b", 1, 0, true},
	{"order\n4", "a", 1, "b", 1, 0, true},
	{"", "a", 0, "a", -1, -1, false},
	{"x", "a\xff", 1 << 62, "b\x00", inventory.MaxQty + 1, int64(time.Hour), true},
	{"order-5", "a", 1, "a", 1, 0, true},
	{"order-6", "ü-ß", inventory.MaxQty, "b", 1, 0, false},
}
