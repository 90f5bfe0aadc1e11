package strategytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
)

// featureCase is one behaviour of the features a strategy may offer or
// refuse: limits per buyer, partial carts, Extend, Levels, backorders.
// check returns nil when s keeps it, else an error that says what broke, so
// that the suite's own tests can run it on strategies that are wrong on
// purpose; logf says what s does not offer.
type featureCase struct {
	name  string
	check func(ctx context.Context, s *suite, logf func(format string, args ...any)) error
}

var featureCases = []featureCase{
	{"UnofferedFeaturesAreRefusedCleanly", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setStock(ctx, map[string]int64{"a": 5, "e": 5}); err != nil {
			return err
		}
		var errs []error
		for _, f := range []struct {
			name string
			req  func(*inventory.Request)
		}{
			{"Request.Buyer", func(r *inventory.Request) { r.Buyer = "buyer-1" }},
			{"Request.Partial", func(r *inventory.Request) { r.Partial = true }},
		} {
			id, err := s.NewID(ctx)
			if err != nil {
				return err
			}
			req := inventory.Request{ID: id, Lines: []inventory.Line{line("a", 1)}}
			f.req(&req)
			if _, err := s.Strategy.Reserve(ctx, req); !errors.Is(err, inventory.ErrUnsupported) {
				if err == nil {
					err = s.Strategy.Release(ctx, id)
				}
				errs = append(errs, wrapf(err, "Reserve with %s", f.name))
				continue
			}
			logf("%s is not offered", f.name)
			errs = append(errs, s.checkAvailable(ctx, map[string]int64{"a": 5}), s.checkAbsent(ctx, id))
		}
		for _, f := range []struct {
			name string
			opts inventory.StockOptions
		}{
			{"StockOptions.Limit", inventory.StockOptions{Limit: 2}},
			{"StockOptions.Backorder", inventory.StockOptions{Backorder: 2}},
		} {
			err := inventory.SetStockWith(ctx, s.Strategy, "a", 7, f.opts)
			if errors.Is(err, inventory.ErrUnsupported) {
				logf("%s is not offered", f.name)
				errs = append(errs, s.checkAvailable(ctx, map[string]int64{"a": 5}))
				continue
			}
			errs = append(errs, wrapf(err, "SetStockWith(%+v)", f.opts),
				wrapf(inventory.SetStockWith(ctx, s.Strategy, "a", 5, inventory.StockOptions{}), "SetStockWith(a, 5)"))
		}
		if _, err := inventory.StockLevels(ctx, s.Strategy, "a"); errors.Is(err, inventory.ErrUnsupported) {
			logf("Levels is not offered")
		} else {
			errs = append(errs, wrapf(err, "Levels"))
		}
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		held, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("e", 1)}, TTL: s.ttl()})
		if err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		if _, err := inventory.Extend(ctx, s.Strategy, id, 2*s.ttl()); errors.Is(err, inventory.ErrUnsupported) {
			logf("Extend is not offered")
			got, err := s.Strategy.Lookup(ctx, id)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("Lookup(%q): %w", id, err))
			case !got.ExpiresAt.Equal(held.ExpiresAt) && got.ExpiresAt.Sub(held.ExpiresAt).Abs() > timeSlack:
				errs = append(errs, fmt.Errorf("a refused Extend moved the expiry from %v to %v", held.ExpiresAt, got.ExpiresAt))
			}
		} else {
			errs = append(errs, wrapf(err, "Extend"))
		}
		return errors.Join(errs...)
	}},
	{"LimitPerBuyer", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setStock(ctx, map[string]int64{"lim": 10, "free": 5}); err != nil {
			return err
		}
		err := inventory.SetStockWith(ctx, s.Strategy, "lim", 9, inventory.StockOptions{Limit: 2})
		if errors.Is(err, inventory.ErrUnsupported) {
			logf("StockOptions.Limit is not offered")
			return s.checkAvailable(ctx, map[string]int64{"lim": 10})
		}
		if err != nil {
			return fmt.Errorf("SetStockWith(lim, 9, Limit 2): %w", err)
		}
		c := &checker{}
		lim := func(n int64) []inventory.Line { return []inventory.Line{line("lim", n)} }
		r1 := c.hold(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b1"})
		if r1.Buyer != "b1" && r1.ID != "" {
			c.failf("Reserve returned Buyer %q, want b1", r1.Buyer)
		}
		r2 := c.hold(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b1"})
		c.refused(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b1"}, isLimit("lim", "b1", 2, 2))
		c.refused(ctx, s, inventory.Request{Lines: []inventory.Line{line("free", 1), line("lim", 1)}, Buyer: "b1"}, isLimit("lim", "b1", 2, 2))
		c.refused(ctx, s, inventory.Request{Lines: lim(3), Buyer: "b2"}, isLimit("lim", "b2", 2, 0))
		c.refused(ctx, s, inventory.Request{Lines: lim(1)}, isLimit("lim", "", 2, 0))
		c.check(s.checkAvailable(ctx, map[string]int64{"lim": 7, "free": 5}))
		c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("free", 1)}})
		// Released units stop counting, committed ones go on counting.
		c.check(wrapf(s.Strategy.Release(ctx, r1.ID), "Release"))
		r3 := c.hold(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b1"})
		c.check(wrapf(s.Strategy.Commit(ctx, r2.ID), "Commit"))
		c.refused(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b1"}, isLimit("lim", "b1", 2, 2))
		// So do cancelled and expired units.
		c.check(wrapf(s.Strategy.Cancel(ctx, r3.ID), "Cancel"))
		c.hold(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b1"})
		c.hold(ctx, s, inventory.Request{Lines: lim(2), Buyer: "b3", TTL: s.ttl()})
		c.refused(ctx, s, inventory.Request{Lines: lim(1), Buyer: "b3"}, isLimit("lim", "b3", 2, 2))
		s.passTTL()
		if _, err := s.Strategy.ExpireDue(ctx, 100); err != nil {
			c.failf("ExpireDue: %v", err)
		}
		c.hold(ctx, s, inventory.Request{Lines: lim(2), Buyer: "b3"})
		c.check(s.checkAvailable(ctx, map[string]int64{"lim": 5, "free": 4}))
		// With Partial, a line holds what is left of the limit.
		id := c.id(ctx, s)
		p, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: lim(5), Buyer: "b4", Partial: true})
		switch {
		case errors.Is(err, inventory.ErrUnsupported):
			logf("Request.Partial is not offered")
			c.check(s.checkAbsent(ctx, id))
		case err != nil:
			c.failf("Reserve(lim 5, Partial) of a new buyer: %v", err)
		default:
			c.eq("lines held by a partial line of a new buyer", p.Lines, lim(2))
			c.refused(ctx, s, inventory.Request{Lines: lim(3), Buyer: "b4", Partial: true}, isLimit("lim", "b4", 2, 2))
			c.check(s.checkAvailable(ctx, map[string]int64{"lim": 3}))
		}
		return c.err()
	}},
	{"PartialCartHoldsWhatIsThere", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setWhole(ctx, map[string]int64{"a": 3, "b": 10, "z": 0}); err != nil {
			return err
		}
		c := &checker{}
		id := c.id(ctx, s)
		r1, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Partial: true,
			Lines: []inventory.Line{line("b", 4), {SKU: "a", Qty: 5, Min: 2}}})
		if errors.Is(err, inventory.ErrUnsupported) {
			logf("Request.Partial is not offered")
			return errors.Join(s.checkAvailable(ctx, map[string]int64{"a": 3, "b": 10}), s.checkAbsent(ctx, id))
		}
		if err != nil {
			return fmt.Errorf("Reserve(a 5 min 2, b 4, Partial) with a 3, b 10: %w", err)
		}
		c.eq("lines held", r1.Lines, []inventory.Line{line("a", 3), line("b", 4)})
		c.eq("Partial", r1.Partial, true)
		c.eq("state", r1.State, inventory.Held)
		if got, err := s.Strategy.Lookup(ctx, id); err != nil {
			c.failf("Lookup: %v", err)
		} else {
			c.eq("lines looked up", got.Lines, r1.Lines)
			c.eq("Partial looked up", got.Partial, true)
		}
		c.check(s.checkAvailable(ctx, map[string]int64{"a": 0, "b": 6}))
		// Below Min the whole cart is refused.
		c.refused(ctx, s, inventory.Request{Partial: true, Lines: []inventory.Line{line("a", 1), line("b", 1)}}, isShort("a"))
		c.refused(ctx, s, inventory.Request{Partial: true, Lines: []inventory.Line{{SKU: "b", Qty: 7, Min: 7}}}, isShort("b"))
		c.refused(ctx, s, inventory.Request{Partial: true, Lines: []inventory.Line{line("z", 1)}}, isShort("z"))
		c.check(s.checkAvailable(ctx, map[string]int64{"a": 0, "b": 6}))
		r2 := c.hold(ctx, s, inventory.Request{Partial: true, Lines: []inventory.Line{{SKU: "b", Qty: 7, Min: 6}}})
		c.eq("lines held down to Min", r2.Lines, []inventory.Line{line("b", 6)})
		// Without Partial, all or nothing stays exact.
		if _, err := s.Strategy.AddStock(ctx, "b", 2); err != nil {
			c.failf("AddStock: %v", err)
		}
		c.refused(ctx, s, inventory.Request{Lines: []inventory.Line{line("b", 3)}}, isShort("b"))
		r3 := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("b", 2)}})
		c.eq("lines held without Partial", r3.Lines, []inventory.Line{line("b", 2)})
		c.eq("Partial of a request without it", r3.Partial, false)
		c.check(wrapf(s.Strategy.Release(ctx, r1.ID), "Release"))
		c.check(s.checkAvailable(ctx, map[string]int64{"a": 3, "b": 4}))
		return c.err()
	}},
	{"RepeatsMatchBuyerAndPartial", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setWhole(ctx, map[string]int64{"a": 3, "c": 10}); err != nil {
			return err
		}
		c := &checker{}
		conflict := func(err error) error {
			if errors.Is(err, inventory.ErrConflict) || errors.Is(err, inventory.ErrUnsupported) {
				return nil
			}
			return fmt.Errorf("got %v, want ErrConflict", err)
		}
		repeat := func(req inventory.Request, want inventory.Reservation) {
			got, err := s.Strategy.Reserve(ctx, req)
			switch {
			case err != nil:
				c.failf("repeat %+v of %+v: %v", req, want, err)
			case got.ID != want.ID || !slices.Equal(got.Lines, want.Lines) || got.Buyer != want.Buyer || got.Partial != want.Partial:
				c.failf("repeat %+v: got %+v, want %+v", req, got, want)
			}
		}
		mismatch := func(req inventory.Request) {
			_, err := s.Strategy.Reserve(ctx, req)
			c.check(wrapf(conflict(err), "repeat %+v", req))
		}
		id := c.id(ctx, s)
		req := inventory.Request{ID: id, Lines: []inventory.Line{line("c", 2)}, Buyer: "b1"}
		r, err := s.Strategy.Reserve(ctx, req)
		switch {
		case errors.Is(err, inventory.ErrUnsupported):
			logf("Request.Buyer is not offered")
		case err != nil:
			c.failf("Reserve with a buyer: %v", err)
		default:
			repeat(req, r)
			mismatch(inventory.Request{ID: id, Lines: req.Lines, Buyer: "b2"})
			mismatch(inventory.Request{ID: id, Lines: req.Lines})
			mismatch(inventory.Request{ID: id, Lines: req.Lines, Buyer: "b1", Partial: true})
			c.check(s.checkAvailable(ctx, map[string]int64{"c": 8}))
		}
		id = c.id(ctx, s)
		req = inventory.Request{ID: id, Lines: []inventory.Line{line("a", 5)}, Partial: true}
		p, err := s.Strategy.Reserve(ctx, req)
		switch {
		case errors.Is(err, inventory.ErrUnsupported):
			logf("Request.Partial is not offered")
		case err != nil:
			c.failf("Reserve with Partial: %v", err)
		default:
			c.eq("lines held", p.Lines, []inventory.Line{line("a", 3)})
			repeat(req, p)
			repeat(inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: 4, Min: 3}}, Partial: true}, p)
			mismatch(inventory.Request{ID: id, Lines: []inventory.Line{line("a", 2)}, Partial: true})
			mismatch(inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: 5, Min: 4}}, Partial: true})
			mismatch(inventory.Request{ID: id, Lines: []inventory.Line{line("a", 3)}})
			mismatch(inventory.Request{ID: id, Lines: []inventory.Line{line("a", 5), line("c", 1)}, Partial: true})
			mismatch(inventory.Request{ID: id, Lines: req.Lines, Partial: true, Buyer: "b1"})
			c.check(s.checkAvailable(ctx, map[string]int64{"a": 0}))
		}
		return c.err()
	}},
	{"ExtendKeepsAHoldLonger", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setStock(ctx, map[string]int64{"x": 10}); err != nil {
			return err
		}
		c := &checker{}
		ttl := s.ttl()
		r := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("x", 1)}, TTL: ttl})
		if r.ID == "" {
			return c.err()
		}
		e, err := inventory.Extend(ctx, s.Strategy, r.ID, 10*time.Minute)
		if errors.Is(err, inventory.ErrUnsupported) {
			logf("Extend is not offered")
			c.expiry(ctx, s, r.ID, r.ExpiresAt, timeSlack)
			return c.err()
		}
		if err != nil {
			return fmt.Errorf("Extend by 10m: %w", err)
		}
		// Expiries are compared with the instant reserved, r.ExpiresAt - ttl;
		// on the wall clock, the calls take some of it.
		slack := timeSlack
		if s.Advance == nil {
			slack = 5 * time.Second
		}
		reserved := r.ExpiresAt.Add(-ttl)
		c.eq("state extended", e.State, inventory.Held)
		c.eq("lines extended", e.Lines, r.Lines)
		c.near("expiry extended by 10m", e.ExpiresAt, reserved.Add(10*time.Minute), slack)
		c.expiry(ctx, s, r.ID, e.ExpiresAt, timeSlack)
		if again, err := inventory.Extend(ctx, s.Strategy, r.ID, time.Millisecond); err != nil {
			c.failf("Extend by 1ms: %v", err)
		} else {
			c.near("expiry after a shorter Extend (never earlier)", again.ExpiresAt, e.ExpiresAt, timeSlack)
		}
		if again, err := inventory.Extend(ctx, s.Strategy, r.ID, 10*time.Minute); err != nil {
			c.failf("Extend by 10m again: %v", err)
		} else {
			c.near("expiry after the same Extend again", again.ExpiresAt, e.ExpiresAt, slack)
		}
		if capped, err := inventory.Extend(ctx, s.Strategy, r.ID, 1000*time.Hour); err != nil {
			c.failf("Extend by 1000h: %v", err)
		} else {
			c.near("expiry of an Extend past MaxHold", capped.ExpiresAt, reserved.Add(s.maxHold()), slack)
			c.expiry(ctx, s, r.ID, capped.ExpiresAt, timeSlack)
		}
		c.check(s.checkAvailable(ctx, map[string]int64{"x": 9}))
		// Only a Held hold whose TTL has not passed is extended.
		c.check(wrapf(s.Strategy.Commit(ctx, r.ID), "Commit"))
		_, err = inventory.Extend(ctx, s.Strategy, r.ID, time.Minute)
		c.check(wrapf(stateError(err, "extend", inventory.Committed), "Extend of a committed hold"))
		rel := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("x", 1)}})
		c.check(wrapf(s.Strategy.Release(ctx, rel.ID), "Release"))
		_, err = inventory.Extend(ctx, s.Strategy, rel.ID, time.Minute)
		c.check(wrapf(stateError(err, "extend", inventory.Released), "Extend of a released hold"))
		due := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("x", 1)}, TTL: ttl})
		s.passTTL()
		_, err = inventory.Extend(ctx, s.Strategy, due.ID, time.Hour)
		c.check(wrapf(stateError(err, "extend", inventory.Expired), "Extend of a hold past its TTL"))
		if _, err := s.Strategy.ExpireDue(ctx, 100); err != nil {
			c.failf("ExpireDue: %v", err)
		}
		c.check(s.checkState(ctx, due.ID, inventory.Expired))
		_, err = inventory.Extend(ctx, s.Strategy, due.ID, time.Hour)
		c.check(wrapf(stateError(err, "extend", inventory.Expired), "Extend of an expired hold"))
		_, err = inventory.Extend(ctx, s.Strategy, RandomID(), time.Minute)
		c.is("Extend of an unknown id", err, inventory.ErrNotFound)
		for _, d := range []time.Duration{0, -time.Second} {
			_, err = inventory.Extend(ctx, s.Strategy, due.ID, d)
			c.is(fmt.Sprintf("Extend by %v", d), err, inventory.ErrInvalidRequest)
		}
		_, err = inventory.Extend(ctx, s.Strategy, "", time.Minute)
		c.is("Extend of an empty id", err, inventory.ErrInvalidRequest)
		c.check(s.checkAvailable(ctx, map[string]int64{"x": 9}))
		return c.err()
	}},
	{"LevelsAgreeWithEachOther", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setStock(ctx, map[string]int64{"l": 10}); err != nil {
			return err
		}
		if _, err := inventory.StockLevels(ctx, s.Strategy, "l"); errors.Is(err, inventory.ErrUnsupported) {
			logf("Levels is not offered")
			return nil
		}
		c := &checker{}
		c.levels(ctx, s, "l", inventory.Levels{Available: 10})
		a := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("l", 3)}})
		c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("l", 2)}, TTL: s.ttl()})
		r := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("l", 1)}})
		c.levels(ctx, s, "l", inventory.Levels{Available: 4, Held: 6})
		c.check(wrapf(s.Strategy.Commit(ctx, a.ID), "Commit"))
		c.levels(ctx, s, "l", inventory.Levels{Available: 4, Held: 3, Sold: 3})
		c.check(wrapf(s.Strategy.Release(ctx, r.ID), "Release"))
		c.levels(ctx, s, "l", inventory.Levels{Available: 5, Held: 2, Sold: 3})
		s.passTTL()
		c.levels(ctx, s, "l", inventory.Levels{Available: 5, Held: 2, Sold: 3}) // past its TTL, not yet expired
		if _, err := s.Strategy.ExpireDue(ctx, 100); err != nil {
			c.failf("ExpireDue: %v", err)
		}
		c.levels(ctx, s, "l", inventory.Levels{Available: 7, Sold: 3})
		if _, err := s.Strategy.AddStock(ctx, "l", 5); err != nil {
			c.failf("AddStock: %v", err)
		}
		c.levels(ctx, s, "l", inventory.Levels{Available: 12, Sold: 3})
		c.check(s.setStock(ctx, map[string]int64{"l": 4}))
		c.levels(ctx, s, "l", inventory.Levels{Available: 4, Sold: 3})
		_, err := inventory.StockLevels(ctx, s.Strategy, "zz-missing")
		c.is("Levels of an unknown SKU", err, inventory.ErrUnknownSKU)
		_, err = inventory.StockLevels(ctx, s.Strategy, "")
		c.is("Levels of an empty SKU", err, inventory.ErrInvalidRequest)
		return c.err()
	}},
	{"BackordersSellBeyondTheStock", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setStock(ctx, map[string]int64{"pre": 1, "plain": 1}); err != nil {
			return err
		}
		err := inventory.SetStockWith(ctx, s.Strategy, "pre", 2, inventory.StockOptions{Backorder: 3})
		if errors.Is(err, inventory.ErrUnsupported) {
			logf("StockOptions.Backorder is not offered")
			return s.checkAvailable(ctx, map[string]int64{"pre": 1})
		}
		if err != nil {
			return fmt.Errorf("SetStockWith(pre, 2, Backorder 3): %w", err)
		}
		_, lerr := inventory.StockLevels(ctx, s.Strategy, "pre")
		levels := !errors.Is(lerr, inventory.ErrUnsupported)
		c := &checker{}
		at := func(want inventory.Levels) {
			c.check(s.checkAvailable(ctx, map[string]int64{"pre": want.Available}))
			if levels {
				c.levels(ctx, s, "pre", want)
			}
		}
		at(inventory.Levels{Available: 5})
		r1 := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("pre", 4)}})
		at(inventory.Levels{Available: 1, Held: 4, Backordered: 2})
		c.check(wrapf(s.Strategy.Commit(ctx, r1.ID), "Commit"))
		at(inventory.Levels{Available: 1, Sold: 4, Backordered: 2})
		c.refused(ctx, s, inventory.Request{Lines: []inventory.Line{line("pre", 2)}}, isShort("pre"))
		r2 := c.hold(ctx, s, inventory.Request{Lines: []inventory.Line{line("pre", 1)}})
		at(inventory.Levels{Held: 1, Sold: 4, Backordered: 3})
		c.refused(ctx, s, inventory.Request{Lines: []inventory.Line{line("pre", 1)}}, isShort("pre"))
		// Stock added fills the backorders first.
		if n, err := s.Strategy.AddStock(ctx, "pre", 1); err != nil || n != 1 {
			c.failf("AddStock(pre, 1): %d, %v, want 1", n, err)
		}
		at(inventory.Levels{Available: 1, Held: 1, Sold: 4, Backordered: 2})
		c.check(wrapf(s.Strategy.Release(ctx, r2.ID), "Release"))
		at(inventory.Levels{Available: 2, Sold: 4, Backordered: 1})
		if _, err := s.Strategy.AddStock(ctx, "pre", 4); err != nil {
			c.failf("AddStock(pre, 4): %v", err)
		}
		at(inventory.Levels{Available: 6, Sold: 4})
		// SetStock keeps the allowance.
		c.check(s.setStock(ctx, map[string]int64{"pre": 0}))
		at(inventory.Levels{Available: 3, Sold: 4})
		// Without an allowance nothing changes.
		c.check(wrapf(inventory.SetStockWith(ctx, s.Strategy, "plain", 2, inventory.StockOptions{}), "SetStockWith(plain, 2)"))
		c.refused(ctx, s, inventory.Request{Lines: []inventory.Line{line("plain", 3)}}, isShort("plain"))
		c.check(s.checkAvailable(ctx, map[string]int64{"plain": 2}))
		if levels {
			c.levels(ctx, s, "plain", inventory.Levels{Available: 2})
		}
		return c.err()
	}},
	{"HammerLimitPerBuyer", hammerLimit},
}

// timeSlack is how far two readings of one instant may differ by a store's
// precision (microseconds in PostgreSQL, milliseconds in Redis).
const timeSlack = 2 * time.Millisecond

// wrapf returns nil when err is nil, else err prefixed with what was done.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// setWhole sets the stock of SKUs kept whole, not in stock buckets whatever
// the strategy's defaults, so that what a partial line holds does not
// depend on how the units are spread over buckets.
func (s *suite) setWhole(ctx context.Context, levels map[string]int64) error {
	for sku, n := range levels {
		if err := inventory.SetStockWith(ctx, s.Strategy, sku, n, inventory.StockOptions{}); err != nil {
			return fmt.Errorf("SetStockWith(%q, %d): %w", sku, n, err)
		}
	}
	return nil
}

// checkAbsent checks that the store holds no reservation under id.
func (s *suite) checkAbsent(ctx context.Context, id string) error {
	if r, err := s.Strategy.Lookup(ctx, id); !errors.Is(err, inventory.ErrNotFound) {
		return fmt.Errorf("Lookup(%q) of a refused request: got %+v, %v, want ErrNotFound", id, r, err)
	}
	return nil
}

// featureBehaviours are the feature cases as behaviours of RunConformance.
func featureBehaviours() []behaviour {
	out := make([]behaviour, len(featureCases))
	for i, c := range featureCases {
		out[i] = behaviour{c.name, func(ctx context.Context, t *testing.T, s *suite) {
			require.NoError(t, c.check(ctx, s, t.Logf))
		}}
	}
	return out
}

// checker gathers the failures of a feature case.
type checker struct{ errs []error }

func (c *checker) failf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func (c *checker) check(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

func (c *checker) err() error { return errors.Join(c.errs...) }

func (c *checker) eq(what string, got, want any) {
	if !reflect.DeepEqual(got, want) {
		c.failf("%s: got %+v, want %+v", what, got, want)
	}
}

func (c *checker) is(what string, err, target error) {
	if !errors.Is(err, target) {
		c.failf("%s: got %v, want %v", what, err, target)
	}
}

func (c *checker) near(what string, got, want time.Time, slack time.Duration) {
	if d := got.Sub(want); d.Abs() > slack {
		c.failf("%s: got %v, want %v (off by %v)", what, got, want, d)
	}
}

func (c *checker) id(ctx context.Context, s *suite) string {
	id, err := s.NewID(ctx)
	if err != nil {
		c.failf("NewID: %v", err)
	}
	return id
}

// hold reserves req under a new ID and returns the reservation, the zero
// one when it failed.
func (c *checker) hold(ctx context.Context, s *suite, req inventory.Request) inventory.Reservation {
	req.ID = c.id(ctx, s)
	r, err := s.Strategy.Reserve(ctx, req)
	if err != nil {
		c.failf("Reserve(%+v): %v", req, err)
	}
	return r
}

// refused reserves req under a new ID, which must fail as want says and
// leave no reservation.
func (c *checker) refused(ctx context.Context, s *suite, req inventory.Request, want func(error) error) {
	req.ID = c.id(ctx, s)
	r, err := s.Strategy.Reserve(ctx, req)
	if err == nil {
		c.failf("Reserve(%+v) is granted (%+v), want it refused", req, r)
		return
	}
	c.check(wrapf(want(err), "Reserve(%+v)", req))
	c.check(s.checkAbsent(ctx, req.ID))
}

// levels checks the levels of sku and that they agree with Available.
func (c *checker) levels(ctx context.Context, s *suite, sku string, want inventory.Levels) {
	got, err := inventory.StockLevels(ctx, s.Strategy, sku)
	if err != nil {
		c.failf("Levels(%q): %v", sku, err)
		return
	}
	c.eq(fmt.Sprintf("Levels(%q)", sku), got, want)
	c.check(s.checkAvailable(ctx, map[string]int64{sku: got.Available}))
}

// expiry checks the ExpiresAt that Lookup reports for id.
func (c *checker) expiry(ctx context.Context, s *suite, id string, want time.Time, slack time.Duration) {
	got, err := s.Strategy.Lookup(ctx, id)
	if err != nil {
		c.failf("Lookup(%q): %v", id, err)
		return
	}
	c.near(fmt.Sprintf("ExpiresAt of %q looked up", id), got.ExpiresAt, want, slack)
}

// isLimit returns the check of a refusal by the limit of sku.
func isLimit(sku, buyer string, limit, had int64) func(error) error {
	return func(err error) error {
		var le *inventory.LimitError
		switch {
		case !errors.As(err, &le) || !errors.Is(err, inventory.ErrLimitExceeded):
			return fmt.Errorf("got %v, want a *LimitError", err)
		case *le != inventory.LimitError{SKU: sku, Buyer: buyer, Limit: limit, Had: had}:
			return fmt.Errorf("got %+v, want %+v", *le, inventory.LimitError{SKU: sku, Buyer: buyer, Limit: limit, Had: had})
		}
		return nil
	}
}

// isShort returns the check of a refusal for lack of stock of sku.
func isShort(sku string) func(error) error {
	return func(err error) error {
		var ise *inventory.InsufficientStockError
		switch {
		case !errors.As(err, &ise) || !errors.Is(err, inventory.ErrInsufficientStock):
			return fmt.Errorf("got %v, want an *InsufficientStockError", err)
		case ise.SKU != sku:
			return fmt.Errorf("refused sku %q, want %q", ise.SKU, sku)
		}
		return nil
	}
}

// stateError checks that err is a *StateError of op in state.
func stateError(err error, op string, state inventory.State) error {
	var se *inventory.StateError
	switch {
	case !errors.As(err, &se) || !errors.Is(err, inventory.ErrNotHeld):
		return fmt.Errorf("got %v, want a *StateError", err)
	case se.Op != op || se.State != state:
		return fmt.Errorf("got Op %q State %s, want %q %s", se.Op, se.State, op, state)
	}
	return nil
}

// maxHold is the harness's MaxHold, or the default.
func (s *suite) maxHold() time.Duration {
	if s.MaxHold > 0 {
		return s.MaxHold
	}
	return time.Hour
}

// Sizes of HammerLimitPerBuyer: limitWorkers buyers' sessions race as
// limitBuyers buyers for limitStock units of a SKU that sells limitPer per
// buyer, limitOps carts each. The stock exceeds what the buyers may have,
// so that only the limit refuses them.
const (
	limitWorkers = 64
	limitBuyers  = 8
	limitPer     = 2
	limitStock   = limitBuyers*limitPer + 8
	limitOps     = 5
)

// hammerLimit races buyers' sessions for a limited SKU, each session
// reserving, committing, releasing and keeping holds, and checks at the end,
// from the reservations granted, that no buyer holds and has bought more
// than the limit, and that the units add up.
func hammerLimit(ctx context.Context, s *suite, logf func(string, ...any)) error {
	if err := s.setStock(ctx, map[string]int64{"hot": 1}); err != nil {
		return err
	}
	err := inventory.SetStockWith(ctx, s.Strategy, "hot", limitStock, inventory.StockOptions{Limit: limitPer})
	if errors.Is(err, inventory.ErrUnsupported) {
		logf("StockOptions.Limit is not offered")
		return s.checkAvailable(ctx, map[string]int64{"hot": 1})
	}
	if err != nil {
		return fmt.Errorf("SetStockWith(hot, Limit %d): %w", limitPer, err)
	}
	var (
		mu       sync.Mutex
		granted  []inventory.Reservation
		errs     []error
		limited  atomic.Int64
		short    atomic.Int64
		wg       sync.WaitGroup
		unexpect = func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	)
	// retry makes call again while its outcome is unknown or it was cut short.
	retry := func(call func() error) error {
		for {
			err := call()
			if err == nil || !retryable(ctx, err) {
				return err
			}
		}
	}
	for w := range limitWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			buyer := fmt.Sprintf("buyer-%d", w%limitBuyers)
			for range limitOps {
				id, err := s.NewID(ctx)
				if err != nil {
					unexpect(err)
					return
				}
				req := inventory.Request{ID: id, Lines: []inventory.Line{line("hot", 1+rng.Int64N(limitPer))}, Buyer: buyer}
				var r inventory.Reservation
				err = retry(func() (err error) { r, err = s.Strategy.Reserve(ctx, req); return err })
				switch {
				case errors.Is(err, inventory.ErrLimitExceeded):
					limited.Add(1)
					continue
				case errors.Is(err, inventory.ErrInsufficientStock):
					short.Add(1)
					continue
				case err != nil:
					unexpect(fmt.Errorf("Reserve(%+v): %w", req, err))
					continue
				}
				mu.Lock()
				granted = append(granted, r)
				mu.Unlock()
				// Release most, so that buyers come back; commit some, which
				// counts for good; keep the rest.
				switch rng.IntN(8) {
				case 0:
					err = retry(func() error { return s.Strategy.Commit(ctx, id) })
				case 1:
				default:
					err = retry(func() error { return s.Strategy.Release(ctx, id) })
				}
				if err != nil {
					unexpect(fmt.Errorf("settle %q: %w", id, err))
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var held, sold int64
	per := map[string]int64{}
	for _, g := range granted {
		r, err := s.Strategy.Lookup(ctx, g.ID)
		if err != nil {
			return fmt.Errorf("Lookup(%q): %w", g.ID, err)
		}
		n := r.Lines[0].Qty
		switch r.State {
		case inventory.Held:
			held += n
		case inventory.Committed:
			sold += n
		default:
			continue
		}
		per[r.Buyer] += n
	}
	c := &checker{}
	for b, n := range per {
		if n > limitPer {
			c.failf("buyer %q holds and has bought %d units, above the limit %d", b, n, limitPer)
		}
	}
	avail, err := s.Strategy.Available(ctx, "hot")
	if err != nil {
		return fmt.Errorf("Available: %w", err)
	}
	if avail+held+sold != limitStock {
		c.failf("available %d + held %d + sold %d != stock %d", avail, held, sold, limitStock)
	}
	if _, err := inventory.StockLevels(ctx, s.Strategy, "hot"); !errors.Is(err, inventory.ErrUnsupported) {
		c.levels(ctx, s, "hot", inventory.Levels{Available: avail, Held: held, Sold: sold})
	}
	if limited.Load() == 0 {
		c.failf("no Reserve was refused by the limit: the hammer did not test it")
	}
	logf("%d reservations granted, %d refused by the limit, %d for lack of stock; at the end %d available, %d held, %d sold",
		len(granted), limited.Load(), short.Load(), avail, held, sold)
	return c.err()
}
