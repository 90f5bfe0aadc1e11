package otelinventory

import (
	"context"
	"errors"

	"github.com/oversell/inventory"
)

// An outcome is how a call ended: the value of the outcome attribute.
type outcome int

const (
	outcomeOK outcome = iota // "granted" for Reserve
	outcomeInvalid
	outcomeInsufficientStock
	outcomeUnknownSKU
	outcomeNotFound
	outcomeConflict
	outcomeCancelledID
	outcomeNotHeld
	outcomeContended
	outcomeOutcomeUnknown
	outcomeUnavailable
	outcomeCanceled
	outcomeDeadlineExceeded
	outcomeError
	numOutcomes
)

// outcomeNames are the values of the outcome attribute.
var outcomeNames = [numOutcomes]string{
	"ok", "invalid", "insufficient_stock", "unknown_sku", "not_found", "conflict", "id_cancelled", "not_held",
	"contended", "outcome_unknown", "unavailable", "canceled", "deadline_exceeded", "error",
}

// classify returns the outcome of a call that returned err. The order
// matters where an error matches more than one sentinel: an
// OutcomeUnknownError also unwraps to the transport error behind it, which
// may be a context error, and the answer a caller must act on is that the
// outcome is unknown.
func classify(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, inventory.ErrOutcomeUnknown):
		return outcomeOutcomeUnknown
	case errors.Is(err, inventory.ErrUnavailable):
		return outcomeUnavailable
	case errors.Is(err, inventory.ErrInvalidRequest):
		return outcomeInvalid
	case errors.Is(err, inventory.ErrInsufficientStock):
		return outcomeInsufficientStock
	case errors.Is(err, inventory.ErrUnknownSKU):
		return outcomeUnknownSKU
	case errors.Is(err, inventory.ErrNotFound):
		return outcomeNotFound
	case errors.Is(err, inventory.ErrConflict):
		return outcomeConflict
	case errors.Is(err, inventory.ErrCancelled):
		return outcomeCancelledID
	case errors.Is(err, inventory.ErrNotHeld):
		return outcomeNotHeld
	case errors.Is(err, inventory.ErrContended):
		return outcomeContended
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return outcomeDeadlineExceeded
	default:
		return outcomeError
	}
}

// failed reports whether the outcome is a failure, as opposed to success or
// a refusal that is the store's answer (not enough stock, an ID reused, a
// hold no longer held, a bad request).
func (o outcome) failed() bool {
	switch o {
	case outcomeContended, outcomeOutcomeUnknown, outcomeUnavailable, outcomeCanceled, outcomeDeadlineExceeded, outcomeError:
		return true
	}
	return false
}
