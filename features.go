package inventory

import (
	"context"
	"fmt"
	"time"
)

// Levels are the units of one SKU by where they are, read in one snapshot,
// so that they agree with each other. For every SKU,
//
//	Available + Held + Sold = stock set + units added + StockOptions.Backorder
//
// and Backordered is the part of Held + Sold beyond the stock on hand, at
// most the Backorder allowance.
type Levels struct {
	// Available is what Reserver.Available reports: the units that can
	// still be reserved, the unused Backorder allowance included.
	Available int64
	// Held is the units of Held reservations, those past their TTL but not
	// yet expired by a sweep or a settle included: their units return only
	// then.
	Held int64
	// Sold is the units of Committed reservations.
	Sold int64
	// Backordered is the units held or sold beyond the stock on hand.
	Backordered int64
}

// Leveler reports the stock levels of a SKU. Call it through StockLevels,
// which refuses clearly on a strategy that does not offer it.
type Leveler interface {
	// Levels returns the levels of sku in one snapshot, or ErrUnknownSKU.
	// An invalid sku fails with ErrInvalidRequest.
	Levels(ctx context.Context, sku string) (Levels, error)
}

// Extender keeps a hold longer. Call it through Extend, which refuses
// clearly on a strategy that does not offer it.
type Extender interface {
	// Extend moves the expiry of the Held reservation id to ttl from now
	// (a buyer on the payment page keeps the units), and returns the
	// reservation as it is then. It never moves the expiry earlier, and
	// never past the strategy's maximum hold (its Options.MaxHold) after
	// the reservation was made: a longer ttl extends to that maximum. It is
	// idempotent: the same call again changes nothing more than the clock
	// has. A reservation that is not Held, or whose TTL has already passed,
	// fails with a *StateError (ErrNotHeld) with Op "extend"; an unknown id
	// with ErrNotFound; a ttl that is not positive, or an invalid id, with
	// ErrInvalidRequest.
	Extend(ctx context.Context, id string, ttl time.Duration) (Reservation, error)
}

// StockLevels returns the levels of sku on r with r's own Levels when r is a
// Leveler; otherwise it validates sku and fails with an error that errors.Is
// ErrUnsupported. Wrappers (token, otelinventory) pass their calls on
// through it.
func StockLevels(ctx context.Context, r any, sku string) (Levels, error) {
	if l, ok := r.(Leveler); ok {
		return l.Levels(ctx, sku)
	}
	if err := ValidateSKU(sku); err != nil {
		return Levels{}, err
	}
	return Levels{}, fmt.Errorf("%w: stock levels (of %q)", ErrUnsupported, sku)
}

// Extend extends the hold id on r with r's own Extend when r is an
// Extender; otherwise it validates its arguments and fails with an error
// that errors.Is ErrUnsupported. Wrappers pass their calls on through it.
func Extend(ctx context.Context, r any, id string, ttl time.Duration) (Reservation, error) {
	if e, ok := r.(Extender); ok {
		return e.Extend(ctx, id, ttl)
	}
	if err := ValidateExtend(id, ttl); err != nil {
		return Reservation{}, err
	}
	return Reservation{}, fmt.Errorf("%w: extending a hold (of %q)", ErrUnsupported, id)
}

// ValidateExtend checks the arguments of Extender.Extend: a valid id and a
// positive ttl.
func ValidateExtend(id string, ttl time.Duration) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if ttl <= 0 {
		return &ValidationError{Field: "ttl", Reason: fmt.Sprintf("%v is not positive", ttl)}
	}
	return nil
}
