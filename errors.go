package inventory

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a strategy returns for one of these conditions
// satisfies errors.Is with the matching sentinel; detail travels in the typed
// errors below, which unwrap to them.
var (
	// ErrInvalidRequest reports input that breaks the rules of Request.Validate
	// or of a stock administration call. Nothing was changed.
	ErrInvalidRequest = errors.New("inventory: invalid request")

	// ErrInsufficientStock reports that a line asked for more units than were
	// available. Nothing was changed. See InsufficientStockError.
	ErrInsufficientStock = errors.New("inventory: insufficient stock")

	// ErrUnknownSKU reports a SKU the store has never been stocked with.
	// Nothing was changed.
	ErrUnknownSKU = errors.New("inventory: unknown sku")

	// ErrNotFound reports a reservation ID the store does not know.
	ErrNotFound = errors.New("inventory: reservation not found")

	// ErrConflict reports a reservation ID reused with other lines than the
	// first request that used it. Nothing was changed.
	ErrConflict = errors.New("inventory: reservation id reused with other lines")

	// ErrCancelled reports a Reserve of an ID that Cancel recorded as
	// cancelled before any reservation was made under it. Nothing was
	// changed: the saga gave up on the order, so its late Reserve takes no
	// units.
	ErrCancelled = errors.New("inventory: reservation cancelled")

	// ErrNotHeld reports a Commit or Release of a reservation that is no longer
	// held: commit after release or expiry, release after commit or expiry;
	// also a Cancel of a committed reservation.
	// See StateError.
	ErrNotHeld = errors.New("inventory: reservation not held")

	// ErrContended reports that a lock could not be had in time (a lock
	// timeout, NOWAIT, or a distributed lock wait). Nothing was changed; the
	// caller may retry.
	ErrContended = errors.New("inventory: contended")

	// ErrOutcomeUnknown reports that the store may or may not have applied the
	// change, for example because the connection died after COMMIT was sent.
	// Retry the same call with the same ID to learn which: Reserve, Commit and
	// Release are idempotent.
	ErrOutcomeUnknown = errors.New("inventory: outcome unknown")

	// ErrUnavailable reports that a server the strategy needs (PostgreSQL,
	// MySQL, Redis) could not be reached before anything was sent to it (a
	// refused or timed-out connection, a server that is down), or that the
	// connection to a SQL server broke under a call that commits nothing by
	// itself (a statement of a transaction before its COMMIT, which the
	// server rolls back, or a read). Nothing was changed; the caller may
	// retry, with the same ID, after a pause. See UnavailableError.
	ErrUnavailable = errors.New("inventory: store unavailable")
	// ErrLimitExceeded reports a line that would take a buyer past the
	// SKU's limit per buyer (StockOptions.Limit), or a line of a SKU with a
	// limit in a request without a Buyer. Nothing was changed. The error is
	// a *LimitError.
	ErrLimitExceeded = errors.New("inventory: limit per buyer exceeded")
)

// InsufficientStockError names the line that could not be held.
// It unwraps to ErrInsufficientStock.
type InsufficientStockError struct {
	SKU       string
	Requested int64
	Available int64 // as seen by the strategy when it refused; may be stale
}

func (e *InsufficientStockError) Error() string {
	return fmt.Sprintf("%v for sku %q: requested %d, available %d", ErrInsufficientStock, e.SKU, e.Requested, e.Available)
}

// Unwrap returns ErrInsufficientStock.
func (e *InsufficientStockError) Unwrap() error { return ErrInsufficientStock }

// UnknownSKUError names a SKU the store does not know.
// It unwraps to ErrUnknownSKU.
type UnknownSKUError struct {
	SKU string
}

func (e *UnknownSKUError) Error() string {
	return fmt.Sprintf("%v %q", ErrUnknownSKU, e.SKU)
}

// Unwrap returns ErrUnknownSKU.
func (e *UnknownSKUError) Unwrap() error { return ErrUnknownSKU }

// StateError reports an operation refused because of the state a reservation
// is in. It unwraps to ErrNotHeld.
type StateError struct {
	ID    string
	Op    string // "commit", "release" or "cancel"
	State State  // the state the reservation is in
}

func (e *StateError) Error() string {
	return fmt.Sprintf("%v: cannot %s reservation %q: it is %s", ErrNotHeld, e.Op, e.ID, e.State)
}

// Unwrap returns ErrNotHeld.
func (e *StateError) Unwrap() error { return ErrNotHeld }

// ValidationError says which field of a request is invalid and why.
// It unwraps to ErrInvalidRequest.
type ValidationError struct {
	Field  string // for example "ID", "Lines[3].SKU", "TTL"
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrInvalidRequest, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidRequest.
func (e *ValidationError) Unwrap() error { return ErrInvalidRequest }

// OutcomeUnknownError wraps the transport error after which the outcome of a
// change is unknown. It unwraps to both ErrOutcomeUnknown and Err.
type OutcomeUnknownError struct {
	Op  string // "reserve", "commit", "release", ...
	ID  string
	Err error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("%v: %s %q may or may not have been applied, retry with the same id: %v", ErrOutcomeUnknown, e.Op, e.ID, e.Err)
}

// Unwrap returns ErrOutcomeUnknown and the underlying error.
func (e *OutcomeUnknownError) Unwrap() []error { return []error{ErrOutcomeUnknown, e.Err} }

// UnavailableError wraps the error with which a server could not be reached,
// or with which the connection to it broke before anything was committed.
// It unwraps to both ErrUnavailable and Err.
type UnavailableError struct {
	Op     string // "reserve", "commit", "release", ...
	Server string // "postgres", "mysql", "redis"
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v: %s could not reach %s, nothing changed: %v", ErrUnavailable, e.Op, e.Server, e.Err)
}

// Unwrap returns ErrUnavailable and the underlying error.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// LimitError names the SKU whose limit per buyer refused a line.
// It unwraps to ErrLimitExceeded.
type LimitError struct {
	SKU   string
	Buyer string // empty when the request named no buyer
	Limit int64  // StockOptions.Limit of the SKU
	Had   int64  // units of the SKU the buyer had held and committed, as seen by the strategy
}

func (e *LimitError) Error() string {
	if e.Buyer == "" {
		return fmt.Sprintf("%v: sku %q sells at most %d per buyer, and the request names no buyer", ErrLimitExceeded, e.SKU, e.Limit)
	}
	return fmt.Sprintf("%v: sku %q sells at most %d per buyer, and buyer %q has %d", ErrLimitExceeded, e.SKU, e.Limit, e.Buyer, e.Had)
}

// Unwrap returns ErrLimitExceeded.
func (e *LimitError) Unwrap() error { return ErrLimitExceeded }
