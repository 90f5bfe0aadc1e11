package mystore

import (
	"context"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// Ledger is what every MySQL strategy offers besides Reserve: migration,
// settlement, expiry, retention, lookup and stock administration, all on
// the shared tables. A strategy embeds it and adds its own Reserve.
type Ledger struct {
	ledger.Methods[*Store]
	store *Store
}

// Ledger returns the shared methods on s, for a strategy to embed.
func (s *Store) Ledger() Ledger { return Ledger{Methods: ledger.Of(s), store: s} }

// Purge deletes at most limit settled reservations older than the
// strategy's Options.Retention, oldest first, and reports how many. Held
// reservations are never deleted; without a retention nothing is. Purgers in
// many processes share the work and never delete one twice. A purged ID is
// unknown: a Reserve with it is a new reservation, so idempotency on an ID
// lasts as long as the retention.
func (l Ledger) Purge(ctx context.Context, limit int) (int, error) { return l.store.Purge(ctx, limit) }

// SetStockWith sets the units on hand of sku and its settings: opts.Limit
// caps the units one buyer may hold and buy, opts.Backorder lets that many
// units be sold beyond the stock on hand (see inventory.StockOptions).
// Stock buckets are not offered: opts.Buckets above 1 fails with
// inventory.ErrUnsupported.
func (l Ledger) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	return l.store.SetStockWith(ctx, sku, available, opts)
}

// Levels returns the units of sku available, held, sold and backordered,
// read in one snapshot (see inventory.Leveler).
func (l Ledger) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	return l.store.Levels(ctx, sku)
}

// Extend keeps the held reservation id for ttl from now, at most the
// strategy's Options.MaxHold after it was reserved (see
// inventory.Extender).
func (l Ledger) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	return l.store.Extend(ctx, id, ttl)
}
