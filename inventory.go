package inventory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Limits enforced by Request.Validate and by stock administration.
const (
	MaxIDLen  = 128           // bytes in a reservation ID
	MaxSKULen = 128           // bytes in a SKU
	MaxLines  = 100           // lines in one request
	MaxQty    = 1_000_000_000 // units in one line
	MaxStock  = 1 << 53       // units of one SKU a store may hold (available + held + sold)
	// MaxBuckets is the most stock buckets one SKU may be split into
	// (StockOptions.Buckets).
	MaxBuckets = 256
)

// Line asks for Qty units of one SKU.
type Line struct {
	SKU string
	Qty int64
	// Min is, in a request with Partial set, the fewest units of the line
	// that the reservation may hold: 0 means 1. Without Partial it must be
	// 0. In a Reservation it is 0.
	Min int64
}

// Request asks to hold every line of a cart, or none of them.
type Request struct {
	// ID is the idempotency key of the reservation (an order or checkout
	// attempt). Required: 1..MaxIDLen bytes of valid UTF-8 without control
	// characters (see ValidateID).
	ID string
	// Lines are held all together or not at all. 1..MaxLines lines, each SKU
	// once. Their order does not matter.
	Lines []Line
	// TTL is how long the hold lasts unless committed. 0 means the strategy's
	// default.
	TTL time.Duration
	// Buyer names who reserves, for the SKUs that sell a limited number of
	// units per buyer (StockOptions.Limit). Optional: empty, or 1..MaxIDLen
	// bytes by the rule of IDs. A request without a Buyer is refused with
	// ErrLimitExceeded on a SKU with a limit, so that leaving it out never
	// gets round the limit.
	Buyer string
	// Partial asks to hold as much of each line as can be held, from the
	// line's Min up to its Qty, instead of all of it or nothing; the
	// Reservation's Lines report what was held. A line that cannot be held
	// down to its Min refuses the request, as without Partial, and nothing
	// changes. Off by default, and then Reserve is all-or-nothing.
	Partial bool
}

// State is the state of a reservation.
type State int

// The states of a reservation. A reservation starts Held and moves once, to
// one of the other three, which are final.
const (
	Held      State = iota + 1 // units are taken from available and wait for Commit or Release
	Committed                  // units are sold
	Released                   // units went back to stock by Release
	Expired                    // units went back to stock because the TTL passed
)

var stateNames = [...]string{"invalid", "held", "committed", "released", "expired"}

// String returns the lower-case name of the state.
func (s State) String() string {
	if s < Held || s > Expired {
		return stateNames[0]
	}
	return stateNames[s]
}

// Reservation is the record of a request the store accepted.
type Reservation struct {
	ID        string
	Lines     []Line // sorted by SKU; the units held, which with Partial may be fewer than asked for
	State     State
	ExpiresAt time.Time // when a Held reservation stops holding its units
	Buyer     string    // Request.Buyer
	Partial   bool      // Request.Partial
}

// Reserver holds stock for carts and settles the holds. Every strategy in
// this module implements it, and every implementation keeps this contract,
// which strategytest.RunConformance checks:
//
//   - Reserve is all-or-nothing across the lines of a request. Strategies
//     lock or update lines in sorted SKU order, so crossing carts never
//     deadlock. A refused line makes Reserve fail with an error that
//     errors.Is ErrInsufficientStock (an *InsufficientStockError naming the
//     SKU) or ErrUnknownSKU, and nothing changes.
//   - Reserve is idempotent on Request.ID: the same ID with the same lines
//     returns the first reservation, in whatever state it is now, and changes
//     nothing; with other lines it fails with ErrConflict. Concurrent
//     submissions of one ID take stock once. This lasts as long as the
//     strategy keeps the reservation: for good, unless a strategy documents
//     a retention after which it forgets settled ones (Options.Retention of
//     memory and of the PostgreSQL strategies).
//   - Commit moves Held to Committed (the units are sold); Release moves Held
//     to Released (the units return to available). Each is idempotent on its
//     own final state and fails with ErrNotHeld (a *StateError) on any other:
//     commit after release or expiry, release after commit or expiry. An
//     unknown ID fails with ErrNotFound. A held reservation whose TTL has
//     passed is expired: Commit and Release refuse it even before a sweep.
//   - For every SKU, at every quiet point: available + held + sold equals
//     the stock set plus the units added. Available never drops below zero.
//   - Invalid input fails with ErrInvalidRequest and changes nothing.
//   - A cancelled context, a cut connection or a crash at any point leaves
//     no partial state: a reservation happened whole or not at all. When a
//     strategy cannot tell which, it returns ErrOutcomeUnknown, and a retry
//     with the same ID settles it.
//   - Cancel is the compensation of a saga, safe to send before, after or
//     while its Reserve is on the wire. It releases a held reservation as
//     Release does. For an ID the store has never seen it records the ID as
//     cancelled (a Released reservation without lines, a tombstone), so that
//     a Reserve with that ID arriving later fails with ErrCancelled and takes
//     nothing. Cancel of a released, expired or cancelled ID is nil: it is
//     idempotent, and succeeds whenever no unit is held for the ID. Cancel of
//     a committed reservation fails with ErrNotHeld (a *StateError with Op
//     "cancel"). A Cancel racing a Reserve of the same ID ends in one of two
//     ways: the Reserve took the units and the Cancel gave them back, or the
//     Reserve failed with ErrCancelled; never units held under a cancelled
//     ID. A tombstone lasts as long as the strategy keeps reservations.
//   - Available reports the units of a SKU that can still be reserved, or
//     ErrUnknownSKU.
type Reserver interface {
	Reserve(ctx context.Context, req Request) (Reservation, error)
	Commit(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Cancel(ctx context.Context, id string) error
	Available(ctx context.Context, sku string) (int64, error)
}

// Stocker administers stock. Every strategy implements it.
type Stocker interface {
	// SetStock sets the available units of sku, creating the SKU if it is
	// new. Units already held or sold are not affected. available must be in
	// 0..MaxStock, else ErrInvalidRequest.
	SetStock(ctx context.Context, sku string, available int64) error
	// AddStock adds delta units (negative to remove) to the available units of
	// sku and returns the new number. It never drives available below zero:
	// removing more than is available fails with ErrInsufficientStock and
	// changes nothing. An unknown sku fails with ErrUnknownSKU.
	AddStock(ctx context.Context, sku string, delta int64) (int64, error)
}

// ErrUnsupported reports a per-SKU setting (a field of StockOptions) or an
// operation that the strategy does not offer. Nothing was changed.
var ErrUnsupported = errors.New("inventory: not supported by this strategy")

// StockOptions are the settings of one SKU, set together with its stock
// (StockConfigurer.SetStockWith). The zero value asks for what SetStock
// does: a SKU kept whole. Fields will be added; each one's zero value keeps
// the behaviour of a SKU set with SetStock.
type StockOptions struct {
	// Buckets splits the available units of the SKU into this many stock
	// buckets, each kept and locked on its own, so that several buyers, in
	// one process or many, take units of the SKU at once instead of waiting
	// for one another. Each line of a cart is taken from one bucket; a line
	// is refused only when the SKU as a whole is short, never while another
	// bucket holds the units. Available reports the sum. Units released,
	// cancelled or expired return to the bucket they were taken from.
	// 0..MaxBuckets, else ErrInvalidRequest. 0 and 1 mean one bucket: the
	// SKU kept whole, as SetStock keeps it.
	//
	// These are buckets of one SKU's stock. They are not the hash slots
	// that redisstock.Options.Buckets spreads all the SKUs over.
	Buckets int
	// Limit is the most units of the SKU one buyer (Request.Buyer) may have
	// held and committed at once, checked in the same atomic step that takes
	// the units, across processes. Released, cancelled and expired units
	// stop counting. A line that would take a buyer past it is refused with
	// a *LimitError (ErrLimitExceeded), and so is a line without a Buyer.
	// With Request.Partial the line holds what is left of the limit, down to
	// its Min. 0..MaxQty, else ErrInvalidRequest; 0 means no limit.
	Limit int64
	// Backorder is how many units may be sold beyond the stock on hand, on
	// purpose (pre-orders): Available counts them, and Levels reports the
	// units held and sold beyond the stock as Backordered. Stock added later
	// fills the backorders first. 0..MaxStock, else ErrInvalidRequest; 0
	// keeps the rule that the stock never goes below zero.
	Backorder int64
}

// StockConfigurer sets the stock of a SKU together with its settings. The
// strategies that keep per-SKU settings implement it; call it through
// SetStockWith, which refuses clearly the settings a strategy does not
// offer.
type StockConfigurer interface {
	// SetStockWith sets the available units of sku, as Stocker.SetStock
	// does, and the settings of the SKU to opts: units already held or sold
	// are not affected, and a held line still returns to the stock it was
	// taken from. Invalid arguments fail with ErrInvalidRequest; a setting
	// the strategy does not offer fails with ErrUnsupported. Nothing
	// changes then.
	SetStockWith(ctx context.Context, sku string, available int64, opts StockOptions) error
}

// Rebalancer is implemented by strategies that split a SKU into stock
// buckets (StockOptions.Buckets).
type Rebalancer interface {
	// Rebalance moves available units of sku between its buckets, towards
	// the buckets buyers have drained, without changing how many there are:
	// it is safe while buyers reserve, and never creates or loses a unit.
	// A SKU kept whole has nothing to move. An unknown sku fails with
	// ErrUnknownSKU.
	Rebalance(ctx context.Context, sku string) error
}

// SetStockWith sets the stock and the settings of sku on s: with s's own
// SetStockWith when s is a StockConfigurer; otherwise with SetStock when opts
// asks for nothing SetStock does not do (the zero value, or Buckets 1), and
// else (Buckets above 1, a Limit, a Backorder) it fails with an error that
// errors.Is ErrUnsupported, changing nothing.
func SetStockWith(ctx context.Context, s Stocker, sku string, available int64, opts StockOptions) error {
	if c, ok := s.(StockConfigurer); ok {
		return c.SetStockWith(ctx, sku, available, opts)
	}
	if err := ValidateStockWith(sku, available, opts); err != nil {
		return err
	}
	if opts.Buckets > 1 {
		return fmt.Errorf("%w: stock buckets (StockOptions.Buckets %d)", ErrUnsupported, opts.Buckets)
	}
	if err := RefuseUnofferedStock("inventory", sku, opts, false, false); err != nil {
		return err
	}
	return s.SetStock(ctx, sku, available)
}

// Rebalance moves the available units of sku between its buckets on s, with
// s's own Rebalance when s is a Rebalancer; otherwise it validates sku and
// fails with an error that errors.Is ErrUnsupported, changing nothing.
// Wrappers (token, otelinventory) pass their calls on through it.
func Rebalance(ctx context.Context, s Stocker, sku string) error {
	if r, ok := s.(Rebalancer); ok {
		return r.Rebalance(ctx, sku)
	}
	if err := ValidateSKU(sku); err != nil {
		return err
	}
	return fmt.Errorf("%w: stock buckets (rebalance of %q)", ErrUnsupported, sku)
}

// Expirer returns the units of holds whose TTL has passed. Every strategy
// implements it; a Sweeper calls it periodically.
type Expirer interface {
	// ExpireDue moves at most limit Held reservations whose ExpiresAt has
	// passed to Expired, returns their units to stock, and reports how many it
	// expired. It is safe to call from many goroutines and processes at once:
	// no hold is expired twice. limit must be positive.
	ExpireDue(ctx context.Context, limit int) (int, error)
}

// Strategy is everything a strategy offers: reservations, stock
// administration, expiry, and lookup of a reservation by ID.
type Strategy interface {
	Reserver
	Stocker
	Expirer
	// Lookup returns the reservation with the given ID, or ErrNotFound.
	Lookup(ctx context.Context, id string) (Reservation, error)
}

// Cancelled reports whether r is the tombstone Cancel records for an ID it
// had never seen: Released, without lines.
func (r Reservation) Cancelled() bool { return r.State == Released && len(r.Lines) == 0 }

// CheckRepeat decides a Reserve whose ID the store already holds as got: it
// returns nil when req repeats the request that made got (Reserve then
// answers got), an error that errors.Is ErrCancelled when got is a tombstone
// left by Cancel, and one that errors.Is ErrConflict otherwise. req repeats
// got when it names the same Buyer, sets Partial alike, and: without Partial
// asks for the same lines; with Partial asks for the same SKUs, and each
// line of got holds a Qty within the line of req's max(Min,1)..Qty. name
// prefixes the message ("memory", "sqlcond", ...).
func CheckRepeat(name string, got Reservation, req Request) error {
	switch {
	case got.Cancelled():
		return fmt.Errorf("%s: reserve %q: %w", name, req.ID, ErrCancelled)
	case got.Buyer != req.Buyer:
		return fmt.Errorf("%s: reserve %q: %w: buyer %q, first reserved by buyer %q", name, req.ID, ErrConflict, req.Buyer, got.Buyer)
	case got.Partial != req.Partial:
		return fmt.Errorf("%s: reserve %q: %w: Partial %v, first reserved with Partial %v", name, req.ID, ErrConflict, req.Partial, got.Partial)
	case !req.Partial && !SameLines(got.Lines, req.Lines):
		return fmt.Errorf("%s: reserve %q: %w", name, req.ID, ErrConflict)
	case req.Partial && !heldWithin(got.Lines, req.Lines):
		return fmt.Errorf("%s: reserve %q: %w: the lines held are not within the lines asked for", name, req.ID, ErrConflict)
	}
	return nil
}

// heldWithin reports whether held has a line for each SKU of asked and no
// other, each with a Qty within the asked line's max(Min,1)..Qty.
func heldWithin(held, asked []Line) bool {
	if len(held) != len(asked) {
		return false
	}
	h, a := SortLines(held), SortLines(asked)
	for i := range h {
		if h[i].SKU != a[i].SKU || h[i].Qty < max(a[i].Min, 1) || h[i].Qty > a[i].Qty {
			return false
		}
	}
	return true
}

// RefuseUnoffered is the refusal of a strategy that does not offer limits
// per buyer or partial carts: it returns nil when req uses only what the
// caller offers (buyer: Request.Buyer; partial: Request.Partial); else the
// error of req.Validate when req is invalid, and else an error that errors.Is
// ErrUnsupported naming the field. A strategy calls it at the entry of
// Reserve, before it changes anything; it costs nothing more than two
// comparisons when req uses neither. name prefixes the message ("sqlcond",
// ...).
func RefuseUnoffered(name string, req Request, buyer, partial bool) error {
	if (req.Buyer == "" || buyer) && (!req.Partial || partial) {
		return nil
	}
	if err := req.Validate(); err != nil {
		return err
	}
	switch {
	case req.Buyer != "" && !buyer:
		return fmt.Errorf("%s: reserve %q: %w: Request.Buyer (limits per buyer)", name, req.ID, ErrUnsupported)
	case req.Partial && !partial:
		return fmt.Errorf("%s: reserve %q: %w: Request.Partial (partial carts)", name, req.ID, ErrUnsupported)
	}
	return nil
}

// RefuseUnofferedStock is the refusal of SetStockWith by a strategy that
// does not offer limits per buyer or backorders: it returns nil when opts
// uses only what the caller offers (limit: StockOptions.Limit; backorder:
// StockOptions.Backorder), and else an error that errors.Is ErrUnsupported
// naming the field. name prefixes the message.
func RefuseUnofferedStock(name, sku string, opts StockOptions, limit, backorder bool) error {
	switch {
	case opts.Limit != 0 && !limit:
		return fmt.Errorf("%s: set stock of %q: %w: a limit per buyer (StockOptions.Limit %d)", name, sku, ErrUnsupported, opts.Limit)
	case opts.Backorder != 0 && !backorder:
		return fmt.Errorf("%s: set stock of %q: %w: backorders (StockOptions.Backorder %d)", name, sku, ErrUnsupported, opts.Backorder)
	}
	return nil
}

// SortLines returns a copy of lines sorted by SKU.
func SortLines(lines []Line) []Line {
	out := slices.Clone(lines)
	slices.SortFunc(out, func(a, b Line) int { return cmp.Compare(a.SKU, b.SKU) })
	return out
}

// SameLines reports whether a and b ask for the same units of the same SKUs,
// in any order. Both must be valid (each SKU once).
func SameLines(a, b []Line) bool {
	if len(a) != len(b) {
		return false
	}
	return slices.Equal(SortLines(a), SortLines(b))
}
