package mystore

import (
	"context"

	"github.com/oversell/inventory"
)

// Ledger is what every MySQL strategy offers besides Reserve: migration,
// settlement, expiry, lookup and stock administration, all on the shared
// tables. A strategy embeds it and adds its own Reserve.
type Ledger struct {
	store *Store
}

// Ledger returns the shared methods on s, for a strategy to embed.
func (s *Store) Ledger() Ledger { return Ledger{store: s} }

// Migrate creates or upgrades the database and its tables. It is idempotent
// and safe to run from many processes at once (a named lock serializes
// them).
func (l Ledger) Migrate(ctx context.Context) error { return l.store.Migrate(ctx) }

// Commit sells the units of a held reservation. It is idempotent; commit
// after release or expiry fails with an *inventory.StateError, an unknown ID
// with inventory.ErrNotFound.
func (l Ledger) Commit(ctx context.Context, id string) error { return l.store.Commit(ctx, id) }

// Release returns the units of a held reservation to stock. It is
// idempotent; release after commit or expiry fails with an
// *inventory.StateError, an unknown ID with inventory.ErrNotFound.
func (l Ledger) Release(ctx context.Context, id string) error { return l.store.Release(ctx, id) }

// Cancel releases a held reservation, or records an ID never seen as
// cancelled, so that a later Reserve with it fails with
// inventory.ErrCancelled. It is idempotent; cancel after commit fails with
// an *inventory.StateError.
func (l Ledger) Cancel(ctx context.Context, id string) error { return l.store.Cancel(ctx, id) }

// ExpireDue expires at most limit held reservations whose TTL has passed and
// returns their units. Sweepers in many processes never expire one twice.
func (l Ledger) ExpireDue(ctx context.Context, limit int) (int, error) {
	return l.store.ExpireDue(ctx, limit)
}

// Lookup returns the reservation recorded under id, or inventory.ErrNotFound.
func (l Ledger) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return l.store.Lookup(ctx, id)
}

// Available returns the units of sku that can still be reserved.
func (l Ledger) Available(ctx context.Context, sku string) (int64, error) {
	return l.store.Available(ctx, sku)
}

// SetStock sets the available units of sku, creating the SKU if it is new.
func (l Ledger) SetStock(ctx context.Context, sku string, available int64) error {
	return l.store.SetStock(ctx, sku, available)
}

// AddStock adds delta units (negative to remove) to sku and returns the new
// available number; it never drives it below zero.
func (l Ledger) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	return l.store.AddStock(ctx, sku, delta)
}
