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

// SetStock sets the available units of sku, creating the SKU if it is new.
// Units held or sold are not affected.
func (s *Store) SetStock(ctx context.Context, sku string, available int64) error {
	if err := inventory.ValidateStock(sku, available); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, s.q.setStock, []byte(sku), available); err != nil {
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
			r, err := s.db.ExecContext(ctx, s.q.addStock, delta, []byte(sku), delta, int64(inventory.MaxStock))
			if err != nil {
				return 0, s.afterCommit(ctx, "add stock", sku, err)
			}
			if n, err := r.RowsAffected(); err == nil && n == 1 {
				v, err := r.LastInsertId()
				return v, err
			}
		}
		avail, err := s.read(ctx, sku)
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
	n, err := s.read(ctx, sku)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, &inventory.UnknownSKUError{SKU: sku}
	case err != nil:
		return 0, s.fail(ctx, "available", err)
	}
	return n, nil
}

func (s *Store) read(ctx context.Context, sku string) (int64, error) {
	var n int64
	var err error
	for range maxReadRounds {
		if n, err = s.readOnce(ctx, sku); !lostConn(ctx, err) {
			break
		}
	}
	return n, err
}

func (s *Store) readOnce(ctx context.Context, sku string) (int64, error) {
	st, err := s.Stmt(ctx, s.q.available)
	if err != nil {
		return 0, err
	}
	var n int64
	err = st.QueryRowContext(ctx, []byte(sku)).Scan(&n)
	return n, err
}
