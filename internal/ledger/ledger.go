// Package ledger holds the rules of the reservation ledger that do not depend
// on SQL, written once for the PostgreSQL and the MySQL stores: the order of
// checks in Reserve, the idempotency of a reservation ID, the state
// transitions of Commit and Release, and which errors pass through to the
// caller unchanged. A store supplies the statements through the Backend and
// Settler interfaces; the rules here decide what to do with their results.
//
// # Reserve
//
// The request is validated (inventory.ErrInvalidRequest), then the context
// checked; the lines are sorted by SKU and the hold's expiry computed. The
// backend then records the reservation and takes its units in one
// transaction, ledger rows first. When the ID is already recorded
// (ErrTaken), the recorded reservation is read: the same lines return it as
// it is now and change nothing; other lines fail with inventory.ErrConflict;
// a tombstone left by Cancel fails with inventory.ErrCancelled.
// A refused line (*RefusedError) becomes the SKU's *inventory.UnknownSKUError
// or *inventory.InsufficientStockError, read by the backend.
//
// # Commit and Release
//
// Held moves to one final state, once. Committed again, or Released again, is
// nil; the other final state is an *inventory.StateError; a hold past its
// expiry is expired then and there (its units return) and reported as an
// *inventory.StateError with state Expired; an unknown ID is
// inventory.ErrNotFound. A statement that finds the state changed under it
// (ErrMoved) makes the rules look again.
//
// # Cancel
//
// The tombstone (a Released reservation without lines) is inserted unless
// the ID is recorded; the insert waits for a transaction recording the same
// ID. When the ID is recorded, a held reservation is released (expired when
// due) as Release does, a committed one is an *inventory.StateError with Op
// "cancel", and any other state is nil.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oversell/inventory"
)

// Errors a backend returns to the rules. They never reach a caller.
var (
	// ErrTaken: the reservation ID is already recorded; nothing changed.
	ErrTaken = errors.New("ledger: reservation id taken")
	// ErrMoved: the reservation is no longer in the state the statement
	// expected; nothing changed.
	ErrMoved = errors.New("ledger: reservation state changed")
)

// RefusedError is what a backend returns for a line it cannot take. Reserve
// rolls back, reads the SKU's stock and returns an *inventory.UnknownSKUError
// or an *inventory.InsufficientStockError in its place.
type RefusedError struct {
	Line inventory.Line
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("ledger: line %q x %d refused", e.Line.SKU, e.Line.Qty)
}

// Final reports whether err is already an answer for the caller, or for the
// rules here: an error of this package or an inventory error, which pass
// through a store's error mapping unchanged.
func Final(err error) bool {
	var refused *RefusedError
	switch {
	case errors.Is(err, ErrTaken), errors.Is(err, ErrMoved), errors.As(err, &refused):
		return true
	case errors.Is(err, inventory.ErrInvalidRequest), errors.Is(err, inventory.ErrInsufficientStock),
		errors.Is(err, inventory.ErrUnknownSKU), errors.Is(err, inventory.ErrNotFound),
		errors.Is(err, inventory.ErrConflict), errors.Is(err, inventory.ErrCancelled), errors.Is(err, inventory.ErrNotHeld),
		errors.Is(err, inventory.ErrContended), errors.Is(err, inventory.ErrOutcomeUnknown),
		errors.Is(err, inventory.ErrUnavailable), errors.Is(err, inventory.ErrLimitExceeded),
		errors.Is(err, inventory.ErrUnsupported):
		return true
	}
	return false
}

// Fail wraps the error of a call that changed nothing, for the store named
// name: errors Final reports pass unchanged; contended (the backend's
// reading of err: a lock it could not get, a transaction the server refused
// under contention) adds inventory.ErrContended; an ended ctx adds its error.
func Fail(ctx context.Context, name, op string, err error, contended bool) error {
	if Final(err) {
		return err
	}
	if contended {
		return fmt.Errorf("%s: %s: %w: %w", name, op, inventory.ErrContended, err)
	}
	if cerr := CtxErr(ctx); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s: %s: %w: %w", name, op, cerr, err)
	}
	return fmt.Errorf("%s: %s: %w", name, op, err)
}

// CtxErr is ctx.Err(), or context.DeadlineExceeded once ctx's deadline has
// passed: a socket deadline taken from ctx can fire (an "i/o timeout" that
// does not wrap the context's error) before the context's own timer does.
func CtxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// Unknown returns the error of a call for id whose commit was sent but whose
// answer was lost: an *inventory.OutcomeUnknownError.
func Unknown(name, op, id string, err error) error {
	return &inventory.OutcomeUnknownError{Op: op, ID: id, Err: fmt.Errorf("%s: %w", name, err)}
}

// Backend is what Reserve needs of a store.
type Backend interface {
	// Record records res (its lines sorted by SKU, with the Min of the
	// request, made at now) and takes its units, in one transaction, ledger
	// rows first, and returns the units it held of each line, in the order
	// of res.Lines: each line's Qty, but with res.Partial. It returns
	// ErrTaken when the ID is already recorded, *RefusedError for a line it
	// cannot take and an *inventory.LimitError for one past a limit per
	// buyer; nothing changed then.
	Record(ctx context.Context, res inventory.Reservation, now time.Time) ([]int64, error)
	// Refusal explains a refused line: an *inventory.UnknownSKUError or an
	// *inventory.InsufficientStockError with the SKU's stock as read now.
	Refusal(ctx context.Context, l inventory.Line) error
	// Lookup returns the reservation recorded under id, or an error that
	// errors.Is inventory.ErrNotFound.
	Lookup(ctx context.Context, id string) (inventory.Reservation, error)
}

// maxTakenRounds bounds the rounds of Reserve that find the ID taken and
// then do not find the reservation: that happens only when a purge deleted
// it in between, and the next round records the request anew.
const maxTakenRounds = 3

// Reserve keeps the inventory.Reserver contract on b: see the package
// documentation. ttl is the hold lifetime when req.TTL is 0; now is the
// store's clock reading, at the precision the store keeps.
func Reserve(ctx context.Context, name string, b Backend, req inventory.Request, ttl time.Duration, now time.Time) (inventory.Reservation, error) {
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	if req.TTL != 0 {
		ttl = req.TTL
	}
	res := inventory.Reservation{
		ID:        req.ID,
		Lines:     inventory.SortLines(req.Lines),
		State:     inventory.Held,
		ExpiresAt: now.Add(ttl).Truncate(time.Microsecond),
		Buyer:     req.Buyer,
		Partial:   req.Partial,
	}
	for range maxTakenRounds {
		held, err := b.Record(ctx, res, now)
		var refused *RefusedError
		switch {
		case err == nil:
			return Held(res, held), nil
		case errors.As(err, &refused):
			return inventory.Reservation{}, b.Refusal(ctx, refused.Line)
		case !errors.Is(err, ErrTaken):
			return inventory.Reservation{}, err
		}
		got, err := b.Lookup(ctx, req.ID)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		if err != nil {
			return inventory.Reservation{}, err
		}
		if err := inventory.CheckRepeat(name, got, req); err != nil {
			return inventory.Reservation{}, err
		}
		return got, nil
	}
	return inventory.Reservation{}, fmt.Errorf("%s: reserve %q: the id is taken but no reservation is recorded under it", name, req.ID)
}

// Held returns res as Reserve answers it once its lines are held: each
// line's Qty the units held (held[i], from Backend.Record), its Min 0.
func Held(res inventory.Reservation, held []int64) inventory.Reservation {
	lines := make([]inventory.Line, len(res.Lines))
	for i, l := range res.Lines {
		lines[i] = inventory.Line{SKU: l.SKU, Qty: l.Qty}
		if i < len(held) && held[i] > 0 {
			lines[i].Qty = held[i]
		}
	}
	res.Lines = lines
	return res
}

// Settler is what Settle needs of a store.
type Settler interface {
	// CommitActive commits the reservation if it is held and active at now
	// (expires after it), in one statement, and reports whether it did.
	CommitActive(ctx context.Context, id string, now time.Time) (bool, error)
	// ReturnUnits moves the held reservation r to state to (Released while
	// it is active at now, Expired once it is due) and gives its units back
	// in SKU order, in one transaction. It fails with ErrMoved when r is no
	// longer in that condition.
	ReturnUnits(ctx context.Context, op string, r inventory.Reservation, to inventory.State, now time.Time) error
	// Lookup returns the reservation recorded under id, or an error that
	// errors.Is inventory.ErrNotFound.
	Lookup(ctx context.Context, id string) (inventory.Reservation, error)
}

// maxSettleRounds bounds the rounds of Settle that find the state changed
// under them. States only move forward (held, then one final state), so two
// rounds settle any race; the rest is margin.
const maxSettleRounds = 5

// Settle moves the reservation id to Committed or Released on s, as the
// package documentation says. now is the store's clock reading.
func Settle(ctx context.Context, name string, s Settler, id string, to inventory.State, now time.Time) error {
	op := "commit"
	if to == inventory.Released {
		op = "release"
	}
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if to == inventory.Committed {
		// The common case, in one statement: units stay taken.
		if done, err := s.CommitActive(ctx, id, now); err != nil || done {
			return err
		}
	}
	for range maxSettleRounds {
		r, err := s.Lookup(ctx, id)
		if err != nil {
			return err
		}
		if r.State == to {
			return nil
		}
		if r.State != inventory.Held {
			return &inventory.StateError{ID: id, Op: op, State: r.State}
		}
		due := !now.Before(r.ExpiresAt)
		switch {
		case due:
			err = s.ReturnUnits(ctx, op, r, inventory.Expired, now)
		case to == inventory.Committed:
			var done bool
			if done, err = s.CommitActive(ctx, id, now); err == nil && !done {
				err = ErrMoved
			}
		default:
			err = s.ReturnUnits(ctx, op, r, inventory.Released, now)
		}
		switch {
		case errors.Is(err, ErrMoved):
			continue // settled by someone else meanwhile: look again
		case err != nil:
			return err
		case due:
			return &inventory.StateError{ID: id, Op: op, State: inventory.Expired}
		}
		return nil
	}
	return fmt.Errorf("%s: %s %q: the reservation kept changing state", name, op, id)
}

// Canceller is what Cancel needs of a store.
type Canceller interface {
	// Tombstone records id as a Released reservation without lines, made
	// at now, unless the ID is recorded, in one statement that waits for a
	// transaction recording the same ID, and reports whether it did.
	Tombstone(ctx context.Context, id string, now time.Time) (bool, error)
	// ReturnUnits is Settler.ReturnUnits.
	ReturnUnits(ctx context.Context, op string, r inventory.Reservation, to inventory.State, now time.Time) error
	// Lookup returns the reservation recorded under id, or an error that
	// errors.Is inventory.ErrNotFound.
	Lookup(ctx context.Context, id string) (inventory.Reservation, error)
}

// Cancel releases the reservation id on c, or records its tombstone, as the
// package documentation says. now is the store's clock reading.
func Cancel(ctx context.Context, name string, c Canceller, id string, now time.Time) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for range maxSettleRounds {
		done, err := c.Tombstone(ctx, id, now)
		if err != nil || done {
			return err
		}
		r, err := c.Lookup(ctx, id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue // recorded by a Reserve that was refused and rolled back: free again
		}
		if err != nil {
			return err
		}
		switch r.State {
		case inventory.Committed:
			return &inventory.StateError{ID: id, Op: "cancel", State: r.State}
		case inventory.Held:
			to := inventory.Released
			if !now.Before(r.ExpiresAt) {
				to = inventory.Expired
			}
			err = c.ReturnUnits(ctx, "cancel", r, to, now)
			if errors.Is(err, ErrMoved) {
				continue // settled by someone else meanwhile: look again
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("%s: cancel %q: the reservation kept changing state", name, id)
}

// Check returns the refusal of the first line, in the order given, that the
// stock read (available units per SKU) cannot serve: an
// *inventory.UnknownSKUError or an *inventory.InsufficientStockError. Nil
// when every line can be taken.
func Check(read map[string]int64, lines []inventory.Line) error {
	for _, l := range lines {
		n, ok := read[l.SKU]
		switch {
		case !ok:
			return &inventory.UnknownSKUError{SKU: l.SKU}
		case n < l.Qty:
			return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
		}
	}
	return nil
}

// AddRefusal explains why the conditional update of AddStock(sku, delta)
// matched no row, given the SKU's stock as read after it (found false: no
// such SKU): an *inventory.UnknownSKUError, an
// *inventory.InsufficientStockError (Requested is -delta), or
// inventory.ErrInvalidRequest for a result over inventory.MaxStock. Nil
// means the stock moved between the two statements: try again.
func AddRefusal(sku string, delta, avail int64, found bool) error {
	switch {
	case !found:
		return &inventory.UnknownSKUError{SKU: sku}
	case avail+delta < 0:
		return &inventory.InsufficientStockError{SKU: sku, Requested: -delta, Available: avail}
	case avail+delta > inventory.MaxStock:
		return &inventory.ValidationError{Field: "delta", Reason: fmt.Sprintf("available would be %d, over %d", avail+delta, int64(inventory.MaxStock))}
	}
	return nil
}
