package mystore

import (
	"context"

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
