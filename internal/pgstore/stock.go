package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// maxAddRounds bounds the rounds of AddStock whose diagnosis read finds the
// stock moved since its conditional update refused.
const maxAddRounds = 10

// SetStock sets the units on hand of sku, creating the SKU if it is new
// with the settings of Options.SKUDefaults; a SKU that exists keeps its
// settings: its buckets, over which the units are spread evenly, its limit
// per buyer, and its backorder, which its available units count on top of
// available. Units held or sold are not affected.
func (s *Store) SetStock(ctx context.Context, sku string, available int64) error {
	if err := inventory.ValidateStock(sku, available); err != nil {
		return err
	}
	return s.setStock(ctx, sku, available, s.sku, true)
}

// SetStockWith sets the units on hand of sku and its settings, as
// inventory.StockConfigurer documents: opts.Buckets buckets (0 or 1: kept
// whole), the units spread evenly over them; opts.Limit per buyer;
// opts.Backorder, so that available units are available + opts.Backorder.
// Held lines still return to the bucket they were taken from (a bucket row
// the SKU no longer has keeps them, and they stay the SKU's: Available
// counts them, Reserve and Rebalance gather them), and still count against
// their buyer's usage. A Limit or Backorder the strategy does not offer
// (Options.Limits, Options.Backorders) fails with inventory.ErrUnsupported.
func (s *Store) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	if err := inventory.ValidateStockWith(sku, available, opts); err != nil {
		return err
	}
	if err := inventory.RefuseUnofferedStock(s.name, sku, opts, s.limits, s.backo); err != nil {
		return err
	}
	return s.setStock(ctx, sku, available, opts, false)
}

func (s *Store) setStock(ctx context.Context, sku string, available int64, opts inventory.StockOptions, keep bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, done, err := s.on(ctx, "set stock")
	if err != nil {
		return err
	}
	defer done()
	if _, err := s.db.Exec(ctx, s.q.setStock, sku, available, int32(max(opts.Buckets, 1)), opts.Limit, opts.Backorder, keep); err != nil {
		return s.afterCommit(ctx, "set stock", sku, err)
	}
	return nil
}

// Rebalance spreads the available units of sku evenly over its buckets
// again, as inventory.Rebalancer documents: buyers take from the buckets
// their reservation IDs pick and fall over to the others, so the buckets
// that sold most are the ones short, and they get units back from the
// others. It locks the SKU's stock row, then its buckets in order, and
// counts and moves only the units of the rows it locked, in one statement:
// buyers meanwhile take from buckets it has not locked yet or wait for none
// (see Reserve), and the SKU has as many units after it as before. A SKU
// kept whole gets back into its row any units given back to buckets it had
// before. An unknown SKU fails with an *inventory.UnknownSKUError.
func (s *Store) Rebalance(ctx context.Context, sku string) error {
	if err := inventory.ValidateSKU(sku); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s, done, err := s.on(ctx, "rebalance")
	if err != nil {
		return err
	}
	defer done()
	var n *int64
	if err := s.db.QueryRow(ctx, s.q.spread, sku, int64(inventory.MaxStock)).Scan(&n); err != nil {
		return s.afterCommit(ctx, "rebalance", sku, err)
	}
	if n == nil {
		return &inventory.UnknownSKUError{SKU: sku}
	}
	return nil
}

// AddStock adds delta units to the available units of sku in one conditional
// UPDATE and returns the new number. An unknown SKU fails with an
// *inventory.UnknownSKUError; a result below zero with an
// *inventory.InsufficientStockError (Requested is -delta); a result above
// inventory.MaxStock with inventory.ErrInvalidRequest. Nothing changes then.
func (s *Store) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	if err := inventory.ValidateDelta(sku, delta); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s, done, err := s.on(ctx, "add stock")
	if err != nil {
		return 0, err
	}
	defer done()
	for range maxAddRounds {
		var n *int64
		if err := s.db.QueryRow(ctx, s.q.addStock, sku, delta, int64(inventory.MaxStock)).Scan(&n); err != nil {
			return 0, s.afterCommit(ctx, "add stock", sku, err)
		}
		if n != nil {
			return *n, nil
		}
		avail, found, err := s.available(ctx, sku)
		if err != nil {
			return 0, s.fail(ctx, "add stock", err)
		}
		if err := ledger.AddRefusal(sku, delta, avail, found); err != nil {
			return 0, err
		}
		// The stock moved between the two statements: try again.
	}
	return 0, fmt.Errorf("%s: add stock %q: %w: the stock kept changing", s.name, sku, inventory.ErrContended)
}

// Available returns the available units of sku, its stock row and every
// bucket read in one snapshot, or an *inventory.UnknownSKUError.
func (s *Store) Available(ctx context.Context, sku string) (int64, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s, done, err := s.on(ctx, "available")
	if err != nil {
		return 0, err
	}
	defer done()
	n, found, err := s.available(ctx, sku)
	switch {
	case err != nil:
		return 0, s.fail(ctx, "available", err)
	case !found:
		return 0, &inventory.UnknownSKUError{SKU: sku}
	}
	return n, nil
}

// available reads the available units of sku, and whether it is known.
func (s *Store) available(ctx context.Context, sku string) (int64, bool, error) {
	var n *int64
	if err := s.db.QueryRow(ctx, s.q.available, sku).Scan(&n); err != nil {
		return 0, false, err
	}
	if n == nil {
		return 0, false, nil
	}
	return *n, true, nil
}

// Levels returns the levels of sku, as inventory.Leveler documents, read in
// one statement, so one snapshot: the available units of its stock row and
// every bucket; the units of its held reservations (due ones not yet
// expired included), found through the index of held reservations; Sold,
// what the SKU received (the units SetStock, SetStockWith and AddStock set
// and added, its backorder included) less the other two, so that Purge,
// which deletes settled reservations, changes none of it; and Backordered,
// the part of the backorder in use. An unknown sku is an
// *inventory.UnknownSKUError.
func (s *Store) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return inventory.Levels{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Levels{}, err
	}
	s, done, err := s.on(ctx, "levels")
	if err != nil {
		return inventory.Levels{}, err
	}
	defer done()
	var lv inventory.Levels
	var received, backorder int64
	err = s.db.QueryRow(ctx, s.q.levels, sku).Scan(&lv.Available, &lv.Held, &received, &backorder)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return inventory.Levels{}, &inventory.UnknownSKUError{SKU: sku}
	case err != nil:
		return inventory.Levels{}, s.fail(ctx, "levels", err)
	}
	lv.Sold = received - lv.Available - lv.Held
	lv.Backordered = max(0, backorder-lv.Available)
	return lv, nil
}
