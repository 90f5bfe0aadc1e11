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

// SetStock sets the available units of sku, creating the SKU if it is new.
// Units held or sold are not affected.
func (s *Store) SetStock(ctx context.Context, sku string, available int64) error {
	if err := inventory.ValidateStock(sku, available); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s, done, err := s.on(ctx, "set stock")
	if err != nil {
		return err
	}
	defer done()
	if _, err := s.db.Exec(ctx, s.q.setStock, sku, available); err != nil {
		return s.afterCommit(ctx, "set stock", sku, err)
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
		var n int64
		err := s.db.QueryRow(ctx, s.q.addStock, sku, delta, int64(inventory.MaxStock)).Scan(&n)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, s.afterCommit(ctx, "add stock", sku, err)
		}
		var avail int64
		err = s.db.QueryRow(ctx, s.q.available, sku).Scan(&avail)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, s.fail(ctx, "add stock", err)
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
	s, done, err := s.on(ctx, "available")
	if err != nil {
		return 0, err
	}
	defer done()
	var n int64
	err = s.db.QueryRow(ctx, s.q.available, sku).Scan(&n)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, &inventory.UnknownSKUError{SKU: sku}
	case err != nil:
		return 0, s.fail(ctx, "available", err)
	}
	return n, nil
}
