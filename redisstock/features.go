package redisstock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/oversell/inventory"
)

// SetStockWith sets the units on hand of sku and its settings: opts.Backorder
// lets that many units be sold beyond the stock on hand, so that the
// available units are the units on hand plus it (see
// inventory.StockOptions), and opts.Limit is the most units of sku one
// buyer may hold and have committed at once (0: no limit), checked by the
// script that takes the units. Units held or sold are not affected, nor is
// a buyer's usage. opts.Buckets above 1 splits sku into that many stock
// buckets (the hash slots of Options.Buckets are another thing), its units
// spread evenly over them (see the package documentation). A SKU split
// keeps its number of buckets: another (1 included) fails with
// inventory.ErrUnsupported, and so do buckets with a limit or a backorder,
// changing nothing.
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	if err := inventory.ValidateStockWith(sku, available, opts); err != nil {
		return err
	}
	if err := refuseSplitWith(opts); err != nil {
		return fmt.Errorf("set stock of %q: %w", sku, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b := r.bucket(sku)
	if opts.Buckets > 1 {
		_, k, err := r.avail(ctx, sku)
		if err != nil && !errors.Is(err, inventory.ErrUnknownSKU) {
			return fail("set stock", sku, err)
		}
		if err == nil && k > 1 && k != opts.Buckets {
			return fmt.Errorf("redisstock: set stock of %q: %w: a SKU split into %d stock buckets keeps them (StockOptions.Buckets %d)", sku, inventory.ErrUnsupported, k, opts.Buckets)
		}
		return r.setSplit(ctx, sku, available, opts.Buckets)
	}
	rep, err := r.run(ctx, b, []string{r.marker(b), r.stream(b), r.stockKey(sku)}, "stockwith", sku, available, opts.Backorder, opts.Limit)
	if err != nil {
		return fail("set stock", sku, err)
	}
	if rep[0] == "split" {
		return fmt.Errorf("redisstock: set stock of %q: %w: a SKU split into %s stock buckets keeps them (StockOptions.Buckets %d)", sku, inventory.ErrUnsupported, rep[1], opts.Buckets)
	}
	return nil
}

// Levels returns the units of sku available, held, sold and backordered,
// read by one script call on the SKU's bucket, so in one snapshot (see
// inventory.Leveler). Held units include those of carts still being taken
// and of holds past their TTL not yet expired; the units of a reservation
// being committed count as sold once its commit has moved them (Commit
// returns after that).
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return inventory.Levels{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Levels{}, err
	}
	lv, k, err := r.levels(ctx, sku)
	for j := 1; j < k && err == nil; j++ {
		// A split SKU: the sum of its buckets, read one after another.
		var bl inventory.Levels
		bl, _, err = r.levels(ctx, bucketSKU(sku, j))
		lv.Available, lv.Held, lv.Sold = lv.Available+bl.Available, lv.Held+bl.Held, lv.Sold+bl.Sold
	}
	if err != nil {
		return inventory.Levels{}, err
	}
	r.splits.put(sku, k)
	return lv, nil
}

// levels reads the levels of one stock (a SKU or one of its buckets) and,
// for a split SKU's bucket 0, its k.
func (r *Reserver) levels(ctx context.Context, name string) (inventory.Levels, int, error) {
	sku, _ := splitSKU(name)
	b := r.skuBucket(name)
	rep, err := r.run(ctx, b, []string{r.marker(b), r.stockKey(name)}, "levels")
	if err != nil {
		return inventory.Levels{}, 0, failRead("levels", sku, err)
	}
	if rep[0] == "unknown" {
		return inventory.Levels{}, 0, &inventory.UnknownSKUError{SKU: sku}
	}
	if len(rep) < 5 {
		return inventory.Levels{}, 0, fmt.Errorf("redisstock: levels %q: short reply %q", sku, rep)
	}
	var n [4]int64
	for i := range n {
		if n[i], err = strconv.ParseInt(rep[1+i], 10, 64); err != nil {
			return inventory.Levels{}, 0, fmt.Errorf("redisstock: levels %q: reply %q: %w", sku, rep, err)
		}
	}
	a, received, sold, bo := n[0], n[1], n[2], n[3]
	return inventory.Levels{Available: a, Held: received - a - sold, Sold: sold, Backordered: max(0, bo-a)}, parseK(rep, 5), nil
}

// Extend keeps the held reservation id for ttl from now, at most
// Options.MaxHold after it was reserved (see inventory.Extender): one
// script call on the bucket of its record, which moves the expiry and its
// place in the due set and streams the record to the ledger. A hold whose
// TTL has passed is expired then, as Commit does.
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	if err := inventory.ValidateExtend(id, ttl); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	now := r.clock()
	rb := r.bucket(id)
	rep, err := r.run(ctx, rb, []string{r.marker(rb), r.stream(rb), r.recordKey(id), r.dueKey(rb)},
		"extend", id, micros(now.Add(ttl)), micros(now), r.hold.Microseconds())
	if err != nil {
		return inventory.Reservation{}, fail("extend", id, err)
	}
	if rep[0] == "nf" {
		return inventory.Reservation{}, fmt.Errorf("redisstock: extend %q: %w", id, inventory.ErrNotFound)
	}
	res, _, err := parseRecord(id, rep)
	if err != nil {
		return inventory.Reservation{}, err
	}
	if rep[0] == "due" {
		// Past its TTL: expire it and give its units back, as Commit would.
		kind, got, err := r.sweepOne(ctx, "settle", id, 0)
		if err != nil {
			return inventory.Reservation{}, fail("extend", id, err)
		}
		if kind == "nf" {
			return inventory.Reservation{}, fmt.Errorf("redisstock: extend %q: %w", id, inventory.ErrNotFound)
		}
		return inventory.Reservation{}, &inventory.StateError{ID: id, Op: "extend", State: got.State}
	}
	if res.State != inventory.Held {
		return inventory.Reservation{}, &inventory.StateError{ID: id, Op: "extend", State: res.State}
	}
	return externalRes(res), nil
}
