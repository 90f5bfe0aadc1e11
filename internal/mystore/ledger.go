package mystore

import "github.com/oversell/inventory/internal/ledger"

// Ledger is what every MySQL strategy offers besides Reserve: migration,
// settlement, expiry, lookup and stock administration, all on the shared
// tables. A strategy embeds it and adds its own Reserve.
type Ledger = ledger.Methods[*Store]

// Ledger returns the shared methods on s, for a strategy to embed.
func (s *Store) Ledger() Ledger { return ledger.Of(s) }
