package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oversell/inventory"
)

// DefaultMaxHold is the longest a hold may last from the moment it was
// reserved when a strategy's Options.MaxHold is 0.
const DefaultMaxHold = time.Hour

// Extender is what Extend needs of a store.
type Extender interface {
	// ExtendActive moves the expiry of the reservation id, if it is held
	// and active at now, to max(its expiry, min(until, the moment it was
	// reserved plus the store's maximum hold)), in one statement, and
	// reports whether it found it so.
	ExtendActive(ctx context.Context, id string, until, now time.Time) (bool, error)
	// ReturnUnits is Settler.ReturnUnits.
	ReturnUnits(ctx context.Context, op string, r inventory.Reservation, to inventory.State, now time.Time) error
	// Lookup returns the reservation recorded under id, or an error that
	// errors.Is inventory.ErrNotFound.
	Lookup(ctx context.Context, id string) (inventory.Reservation, error)
}

// Extend keeps the hold id on e for ttl more from now, as
// inventory.Extender documents: a held, active reservation is extended and
// returned as it is then; a due hold is expired then and there, as Commit
// does, and reported as an *inventory.StateError with state Expired; any
// other state is an *inventory.StateError with Op "extend"; an unknown ID
// is inventory.ErrNotFound. now is the store's clock reading.
func Extend(ctx context.Context, name string, e Extender, id string, ttl time.Duration, now time.Time) (inventory.Reservation, error) {
	if err := inventory.ValidateExtend(id, ttl); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	for range maxSettleRounds {
		done, err := e.ExtendActive(ctx, id, now.Add(ttl), now)
		if err != nil {
			return inventory.Reservation{}, err
		}
		r, err := e.Lookup(ctx, id)
		if err != nil || done {
			return r, err
		}
		if r.State != inventory.Held {
			return inventory.Reservation{}, &inventory.StateError{ID: id, Op: "extend", State: r.State}
		}
		if now.Before(r.ExpiresAt) {
			continue // held and active again after a race: try again
		}
		err = e.ReturnUnits(ctx, "extend", r, inventory.Expired, now)
		switch {
		case errors.Is(err, ErrMoved):
			continue
		case err != nil:
			return inventory.Reservation{}, err
		}
		return inventory.Reservation{}, &inventory.StateError{ID: id, Op: "extend", State: inventory.Expired}
	}
	return inventory.Reservation{}, fmt.Errorf("%s: extend %q: the reservation kept changing state", name, id)
}

// Row is a stock row as a step that takes units under its row locks reads
// it: the available units, the limit per buyer (0: none) and, for a SKU
// with a limit and a request with a buyer, the buyer's usage.
type Row struct {
	Available int64
	Limit     int64
	Used      int64
}

// Grant decides a line l of a request by buyer (empty: none), with partial
// or not, against the row the step read under its locks, by the rules of
// inventory.StockOptions.Limit and inventory.Request.Partial: it returns the
// units to hold, or the refusal: an *inventory.LimitError when the SKU has a
// limit and the request names no buyer, or the line would take the buyer
// past it; an *inventory.InsufficientStockError when the stock is short.
func Grant(l inventory.Line, buyer string, partial bool, r Row) (int64, error) {
	lo := l.Qty
	if partial {
		lo = max(l.Min, 1)
	}
	want := l.Qty
	if r.Limit > 0 {
		switch {
		case buyer == "":
			return 0, &inventory.LimitError{SKU: l.SKU, Limit: r.Limit}
		case r.Used+lo > r.Limit:
			return 0, &inventory.LimitError{SKU: l.SKU, Buyer: buyer, Limit: r.Limit, Had: r.Used}
		}
		want = min(want, r.Limit-r.Used)
	}
	if partial {
		want = min(want, r.Available)
	}
	if want < lo || r.Available < want {
		return 0, &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: r.Available}
	}
	return want, nil
}
