package ledger

import (
	"context"

	"github.com/oversell/inventory"
)

// Store is what a ledger store (the PostgreSQL one, the MySQL one) offers a
// strategy besides Reserve, which each strategy writes itself.
type Store interface {
	Migrate(ctx context.Context) error
	Commit(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Cancel(ctx context.Context, id string) error
	ExpireDue(ctx context.Context, limit int) (int, error)
	Lookup(ctx context.Context, id string) (inventory.Reservation, error)
	Available(ctx context.Context, sku string) (int64, error)
	SetStock(ctx context.Context, sku string, available int64) error
	AddStock(ctx context.Context, sku string, delta int64) (int64, error)
}

// Methods is what every SQL strategy offers besides Reserve: migration,
// settlement, expiry, lookup and stock administration, all on its store's
// tables. A strategy embeds it (through its store's Ledger) and adds its own
// Reserve, so that these methods are written once for every store.
type Methods[S Store] struct {
	store S
}

// Of returns the methods of s, for a strategy to embed.
func Of[S Store](s S) Methods[S] { return Methods[S]{store: s} }

// Migrate creates or upgrades the schema and its tables. It is idempotent and
// safe to run from many processes at once (a lock in the server serializes
// them).
func (m Methods[S]) Migrate(ctx context.Context) error { return m.store.Migrate(ctx) }

// Commit sells the units of a held reservation. It is idempotent; commit
// after release or expiry fails with an *inventory.StateError, an unknown ID
// with inventory.ErrNotFound.
func (m Methods[S]) Commit(ctx context.Context, id string) error { return m.store.Commit(ctx, id) }

// Release returns the units of a held reservation to stock. It is
// idempotent; release after commit or expiry fails with an
// *inventory.StateError, an unknown ID with inventory.ErrNotFound.
func (m Methods[S]) Release(ctx context.Context, id string) error { return m.store.Release(ctx, id) }

// Cancel releases a held reservation, or records an ID never seen as
// cancelled, so that a later Reserve with it fails with
// inventory.ErrCancelled. It is idempotent; cancel after commit fails with
// an *inventory.StateError.
func (m Methods[S]) Cancel(ctx context.Context, id string) error { return m.store.Cancel(ctx, id) }

// ExpireDue expires at most limit held reservations whose TTL has passed and
// returns their units. Sweepers in many processes never expire one twice.
func (m Methods[S]) ExpireDue(ctx context.Context, limit int) (int, error) {
	return m.store.ExpireDue(ctx, limit)
}

// Lookup returns the reservation recorded under id, or inventory.ErrNotFound.
func (m Methods[S]) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return m.store.Lookup(ctx, id)
}

// Available returns the units of sku that can still be reserved.
func (m Methods[S]) Available(ctx context.Context, sku string) (int64, error) {
	return m.store.Available(ctx, sku)
}

// SetStock sets the available units of sku, creating the SKU if it is new.
func (m Methods[S]) SetStock(ctx context.Context, sku string, available int64) error {
	return m.store.SetStock(ctx, sku, available)
}

// AddStock adds delta units (negative to remove) to sku and returns the new
// available number; it never drives it below zero.
func (m Methods[S]) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	return m.store.AddStock(ctx, sku, delta)
}
