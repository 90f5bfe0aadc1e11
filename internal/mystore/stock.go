package mystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// maxAddRounds bounds the rounds of AddStock whose diagnosis read finds the
// stock moved since its conditional update refused.
const maxAddRounds = 10

// SetStock sets the units on hand of sku, creating the SKU if it is new
// with the limit and backorder of Options.SKUDefaults; a SKU that exists
// keeps its own, and its available units are the units on hand plus its
// backorder. Units held or sold are not affected.
func (s *Store) SetStock(ctx context.Context, sku string, available int64) error {
	if err := inventory.ValidateStock(sku, available); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	bo := s.sku.Backorder
	if _, err := s.db.ExecContext(ctx, s.q.setStock, []byte(sku), available, bo, s.sku.Limit, bo, available, bo, available, available); err != nil {
		return s.afterCommit(ctx, "set stock", sku, err)
	}
	return nil
}

// SetStockWith sets the units on hand of sku and its settings, as
// inventory.StockConfigurer documents: opts.Limit per buyer, and
// opts.Backorder, so that its available units are available +
// opts.Backorder. Held lines still count against their buyer's usage, and
// still return to the stock. Stock buckets (opts.Buckets above 1) are not
// offered: inventory.ErrUnsupported, and nothing changes.
func (s *Store) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	if err := inventory.ValidateStockWith(sku, available, opts); err != nil {
		return err
	}
	if opts.Buckets > 1 {
		return fmt.Errorf("%s: set stock of %q: %w: stock buckets (StockOptions.Buckets %d)", s.name, sku, inventory.ErrUnsupported, opts.Buckets)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := available + opts.Backorder
	if _, err := s.db.ExecContext(ctx, s.q.setWith, []byte(sku), n, opts.Limit, opts.Backorder, n, n, n, opts.Limit, opts.Backorder); err != nil {
		return s.afterCommit(ctx, "set stock", sku, err)
	}
	return nil
}

// AddStock adds delta units to the available units of sku in one conditional
// UPDATE and returns the new number, as ledger.AddRefusal says when it
// cannot.
func (s *Store) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	if err := inventory.ValidateDelta(sku, delta); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for range maxAddRounds {
		if delta != 0 { // an UPDATE that changes nothing reports no row
			r, err := s.db.ExecContext(ctx, s.q.addStock, delta, delta, []byte(sku), delta, int64(inventory.MaxStock))
			if err != nil {
				return 0, s.afterCommit(ctx, "add stock", sku, err)
			}
			if n, err := r.RowsAffected(); err == nil && n == 1 {
				v, err := r.LastInsertId()
				return v, err
			}
		}
		avail, _, err := s.read(ctx, sku)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, s.fail(ctx, "add stock", err)
		}
		if delta == 0 && err == nil {
			return avail, nil
		}
		if err := ledger.AddRefusal(sku, delta, avail, err == nil); err != nil {
			return 0, err
		}
		// The stock moved between the two statements: try again.
	}
	return 0, fmt.Errorf("%s: add stock %q: %w: the stock kept changing", s.name, sku, inventory.ErrContended)
}

// Available returns the available units of sku, or an
// *inventory.UnknownSKUError.
func (s *Store) Available(ctx context.Context, sku string) (int64, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, _, err := s.read(ctx, sku)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, &inventory.UnknownSKUError{SKU: sku}
	case err != nil:
		return 0, s.fail(ctx, "available", err)
	}
	return n, nil
}

// read returns the available units of sku and its limit per buyer.
func (s *Store) read(ctx context.Context, sku string) (int64, int64, error) {
	var n, limit int64
	var err error
	for range maxReadRounds {
		if n, limit, err = s.readOnce(ctx, sku); !lostConn(ctx, err) {
			break
		}
	}
	return n, limit, err
}

func (s *Store) readOnce(ctx context.Context, sku string) (int64, int64, error) {
	st, err := s.Stmt(ctx, s.q.available)
	if err != nil {
		return 0, 0, err
	}
	var n, limit int64
	err = st.QueryRowContext(ctx, []byte(sku)).Scan(&n, &limit)
	return n, limit, err
}

// Levels returns the levels of sku, as inventory.Leveler documents, read in
// one statement, so one snapshot: the available units (the unused backorder
// included); the units of its held reservations (due ones not yet expired
// included); Sold, what the SKU received (the units SetStock, SetStockWith
// and AddStock set and added, its backorder included) less the other two,
// so that Purge, which deletes settled reservations, changes none of it;
// and Backordered, the part of the backorder in use. An unknown sku is an
// *inventory.UnknownSKUError.
func (s *Store) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return inventory.Levels{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Levels{}, err
	}
	var lv inventory.Levels
	var err error
	for range maxReadRounds {
		if lv, err = s.levels(ctx, sku); !lostConn(ctx, err) {
			break
		}
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return inventory.Levels{}, &inventory.UnknownSKUError{SKU: sku}
	case err != nil:
		return inventory.Levels{}, s.fail(ctx, "levels", err)
	}
	return lv, nil
}

func (s *Store) levels(ctx context.Context, sku string) (inventory.Levels, error) {
	st, err := s.Stmt(ctx, s.q.levels)
	if err != nil {
		return inventory.Levels{}, err
	}
	var lv inventory.Levels
	var backorder, received, sold int64
	var before sql.NullInt64
	if err := st.QueryRowContext(ctx, []byte(sku)).Scan(&lv.Available, &backorder, &lv.Held, &received, &before, &sold); err != nil {
		return inventory.Levels{}, err
	}
	if before.Valid {
		sold = before.Int64 + received - lv.Available - lv.Held
	}
	lv.Sold = sold
	lv.Backordered = max(0, backorder-lv.Available)
	return lv, nil
}
