package strategytest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oversell/inventory"
)

// BucketsK is the number of stock buckets the bucket rules split a SKU
// into.
const BucketsK = 8

// BucketStrategy is a strategy that splits SKUs into stock buckets
// (inventory.StockOptions.Buckets).
type BucketStrategy interface {
	inventory.Strategy
	inventory.StockConfigurer
}

// BucketProbe is what the bucket rules (LastUnitIsSold,
// UnitsReturnToTheirBucket) need of a strategy beyond its contract, each
// store its own way: they are the rules of inventory.StockOptions.Buckets,
// written once for every store that offers it, and each store's test runs
// them, and their deliberately wrong twins, with a probe of its own.
type BucketProbe struct {
	Strategy BucketStrategy
	// Advance moves the strategy's clock on.
	Advance func(d time.Duration)
	// Buckets returns the available units of each of the BucketsK buckets
	// of sku.
	Buckets func(ctx context.Context, sku string) ([]int64, error)
	// IDStartingAt returns an ID, made from tag, whose reservation takes
	// from bucket k first.
	IDStartingAt func(k int, tag string) string
}

// LastUnitIsSold sells a SKU of eight buckets of one unit each to its last unit,
// each buyer starting from a bucket already empty, then a line of all eight
// units of another such SKU; it returns what went wrong.
func LastUnitIsSold(ctx context.Context, p *BucketProbe) error {
	b := p.Strategy
	if err := b.SetStockWith(ctx, "last", BucketsK, inventory.StockOptions{Buckets: BucketsK}); err != nil {
		return err
	}
	for sold := range BucketsK {
		per, err := p.Buckets(ctx, "last")
		if err != nil {
			return err
		}
		empty := -1
		for k, n := range per {
			if n == 0 {
				empty = k
				break
			}
		}
		if empty < 0 {
			empty = (sold + 1) % BucketsK // nothing sold yet: any bucket but the one the rest start from
		}
		id := p.IDStartingAt(empty, RandomID())
		if _, err := b.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "last", Qty: 1}}}); err != nil {
			return fmt.Errorf("unit %d of %d, buckets %v, the buyer starting at empty bucket %d: %w", sold+1, BucketsK, per, empty, err)
		}
	}
	if n, err := b.Available(ctx, "last"); err != nil || n != 0 {
		return fmt.Errorf("after the last unit: available %d, %v", n, err)
	}
	_, err := b.Reserve(ctx, inventory.Request{ID: RandomID(), Lines: []inventory.Line{{SKU: "last", Qty: 1}}})
	if !errors.Is(err, inventory.ErrInsufficientStock) {
		return fmt.Errorf("a unit past the last: %v, want insufficient stock", err)
	}

	if err := b.SetStockWith(ctx, "whole", BucketsK, inventory.StockOptions{Buckets: BucketsK}); err != nil {
		return err
	}
	id := RandomID()
	if _, err := b.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "whole", Qty: BucketsK}}}); err != nil {
		return fmt.Errorf("a line of every unit, one in each bucket: %w", err)
	}
	if err := b.Release(ctx, id); err != nil {
		return err
	}
	if n, err := b.Available(ctx, "whole"); err != nil || n != BucketsK {
		return fmt.Errorf("after releasing the line of every unit: available %d, %v", n, err)
	}
	return nil
}

// UnitsReturnToTheirBucket takes a line from a SKU of eight buckets of ten units, then
// gives it back by Release, by Cancel and by expiry, and checks each time
// that the units left one bucket and came back to it; it returns what went
// wrong.
func UnitsReturnToTheirBucket(ctx context.Context, p *BucketProbe) error {
	b := p.Strategy
	const per = 10
	if err := b.SetStockWith(ctx, "ret", BucketsK*per, inventory.StockOptions{Buckets: BucketsK}); err != nil {
		return err
	}
	for _, how := range []string{"release", "cancel", "expire"} {
		req := inventory.Request{ID: RandomID(), Lines: []inventory.Line{{SKU: "ret", Qty: 3}}, TTL: time.Minute}
		if _, err := b.Reserve(ctx, req); err != nil {
			return err
		}
		held, err := p.Buckets(ctx, "ret")
		if err != nil {
			return err
		}
		taken := 0
		for _, n := range held {
			if n != per {
				taken++
				if n != per-3 {
					return fmt.Errorf("%s: buckets %v after a line of 3 from buckets of %d", how, held, per)
				}
			}
		}
		if taken != 1 {
			return fmt.Errorf("%s: the line of 3 left %d buckets: %v", how, taken, held)
		}
		switch how {
		case "release":
			err = b.Release(ctx, req.ID)
		case "cancel":
			err = b.Cancel(ctx, req.ID)
		case "expire":
			p.Advance(2 * time.Minute)
			_, err = b.ExpireDue(ctx, 10)
		}
		if err != nil {
			return err
		}
		back, err := p.Buckets(ctx, "ret")
		if err != nil {
			return err
		}
		for k, n := range back {
			if n != per {
				return fmt.Errorf("%s: buckets %v after the line came back (bucket %d is off), taken from %v", how, back, k, held)
			}
		}
	}
	return nil
}
