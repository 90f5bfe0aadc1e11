package memory

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/oversell/inventory"
)

// DefaultTTL is the hold lifetime of a request whose TTL is 0, unless
// Options.DefaultTTL says otherwise.
const DefaultTTL = 15 * time.Minute

// DefaultMaxHold is the longest Extend keeps a hold from the moment it was
// reserved, unless Options.MaxHold says otherwise.
const DefaultMaxHold = time.Hour

// Options configures a Reserver. A nil *Options takes every default.
type Options struct {
	// DefaultTTL is the hold lifetime of a request whose TTL is 0. Zero or
	// negative means the default. Default: 15m.
	DefaultTTL time.Duration
	// Now returns the current time. Reservations expire by it, so tests can
	// drive expiry with a manual clock. Default: time.Now.
	Now func() time.Time
	// Retention is how long a settled reservation (Committed, Released or
	// Expired) is kept after it settled, by Now. An expired hold settles when
	// it is expired (by ExpireDue, Commit or Release), not at its ExpiresAt.
	// Once Retention has passed the reservation is forgotten, lazily: as
	// later calls and ExpireDue take its shard, so it may outlive Retention
	// a little but is never forgotten sooner. Held reservations are never
	// forgotten, and forgetting returns no units: sold units stay sold.
	//
	// A forgotten ID is unknown: Lookup, Commit and Release fail with
	// inventory.ErrNotFound, and a Reserve with that ID is a new reservation
	// that takes stock again. Idempotency on an ID therefore lasts only as
	// long as the retention: keep Retention well above the longest time a
	// client may retry a request or settle its reservation.
	//
	// Zero or negative keeps every reservation for the life of the Reserver.
	// Default: 0.
	Retention time.Duration
	// MaxHold is the longest Extend keeps a hold, counted from the moment
	// it was reserved (see inventory.Extender). Zero or negative means the
	// default. Default: 1h.
	MaxHold time.Duration
}

// numShards is the number of reservation shards; a power of two.
const numShards = 64

// forgetBatch is how many reservations whose retention has passed a call
// forgets in the shard it takes. A settle queues one reservation and first
// forgets up to this many, so the backlog of a shard shrinks as calls come.
const forgetBatch = 4

// cacheLine is the size the hot structures are padded to, so that locks
// taken by different cores do not share a cache line.
const cacheLine = 64

// Reserver is the in-process strategy. It is safe for concurrent use. Make
// one with New; the zero value is not usable.
type Reserver struct {
	ttl       time.Duration
	maxHold   time.Duration
	retention time.Duration // 0: keep settled reservations forever
	now       func() time.Time
	seed      maphash.Seed

	// shards hold the reservations, sharded by a hash of the ID. Each shard
	// is also the expiry queue of its Held reservations and, with a
	// retention, the queue of its settled ones to forget.
	shards []shard

	skuMu sync.RWMutex // guards skus: read lock to look up, write lock to add
	skus  map[string]*stock

	// nextShard spreads the shard ExpireDue starts from, so that sweepers
	// with small limits serve every shard.
	nextShard atomic.Uint32
}

var (
	_ inventory.Strategy        = (*Reserver)(nil)
	_ inventory.StockConfigurer = (*Reserver)(nil)
	_ inventory.Rebalancer      = (*Reserver)(nil)
	_ inventory.Leveler         = (*Reserver)(nil)
	_ inventory.Extender        = (*Reserver)(nil)
)

// New returns an empty Reserver: no SKUs, no reservations.
func New(opts *Options) *Reserver {
	r := &Reserver{
		ttl:     DefaultTTL,
		maxHold: DefaultMaxHold,
		now:     time.Now,
		seed:    maphash.MakeSeed(),
		shards:  make([]shard, numShards),
		skus:    make(map[string]*stock),
	}
	if opts != nil {
		if opts.DefaultTTL > 0 {
			r.ttl = opts.DefaultTTL
		}
		if opts.MaxHold > 0 {
			r.maxHold = opts.MaxHold
		}
		if opts.Now != nil {
			r.now = opts.Now
		}
		r.retention = max(opts.Retention, 0)
	}
	for i := range r.shards {
		r.shards[i].res = make(map[string]*reservation)
	}
	return r
}

// stock is one SKU. Lock order: a reservation shard, then the stocks of a
// reservation in sorted SKU order.
type stock struct {
	stockState
	_ [cacheLine - unsafe.Sizeof(stockState{})%cacheLine]byte
}

type stockState struct {
	mu sync.Mutex
	// available is written only under mu; Available reads it without mu.
	// It counts the unused backorder allowance: the units that can still
	// be reserved are available, and the stock on hand available-backorder.
	available atomic.Int64
	// held is the units of Held reservations. It changes under mu, except
	// in Commit, which moves units from held to sold without mu: Levels
	// reads held, available and received under mu, and sees the one
	// atomic step of a Commit whole or not at all.
	held atomic.Int64
	name string
	// The rest is guarded by mu.
	received  int64 // available + held + sold: changed only by stock administration
	backorder int64 // inventory.StockOptions.Backorder
	limit     int64 // inventory.StockOptions.Limit; 0: none
	// used is, for a SKU that has or had a limit, the units each buyer has
	// held and committed of it while it had one. nil until then.
	used map[string]int64
}

// shard holds the reservations whose ID hashes to it, a min-heap by
// ExpiresAt of those that are Held and, when Options.Retention is set, a
// min-heap by the time to forget them of those that are settled.
type shard struct {
	shardState
	_ [cacheLine - unsafe.Sizeof(shardState{})%cacheLine]byte
}

type shardState struct {
	mu   sync.Mutex
	res  map[string]*reservation
	due  dueHeap
	gone goneHeap // empty unless Options.Retention is set
}

// entry is one line of a reservation.
type entry struct {
	sku string
	qty int64  // the units held
	min int64  // Reserve only: the fewest units a Partial line may hold (max(Min,1))
	s   *stock // nil while a requested SKU is unknown
	// counted says that qty counts against the limit of the SKU for the
	// reservation's buyer (stockState.used), until it is released.
	counted bool
}

// reservation is guarded by the mutex of its shard.
type reservation struct {
	id         string
	entries    []entry // sorted by SKU
	one        [1]entry
	state      inventory.State
	expiresAt  time.Time
	reservedAt time.Time // by Options.Now, for Options.MaxHold
	buyer      string
	partial    bool
	dueIdx     int // index in shard.due while Held
}

func (r *Reserver) shard(id string) *shard {
	return &r.shards[maphash.String(r.seed, id)&(numShards-1)]
}

func (r *Reserver) lookupSKU(sku string) *stock {
	r.skuMu.RLock()
	s := r.skus[sku]
	r.skuMu.RUnlock()
	return s
}

// Reserve holds every line of req, or none; see inventory.Reserver. The
// same ID again returns the reservation as it is now when the lines are the
// same, and fails with ErrConflict otherwise. Concurrent calls with one ID
// take stock once. Once a settled reservation is forgotten (see
// Options.Retention), its ID makes a new reservation.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	sh := r.shard(req.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r.forget(sh)
	if res, ok := sh.res[req.ID]; ok {
		if len(res.entries) == 0 {
			return inventory.Reservation{}, fmt.Errorf("memory: reservation %q: %w", req.ID, inventory.ErrCancelled)
		}
		if req.Buyer == res.buyer && !req.Partial && !res.partial {
			if !res.sameLines(req.Lines) {
				return inventory.Reservation{}, fmt.Errorf("memory: reservation %q: %w", req.ID, inventory.ErrConflict)
			}
			return res.snapshot(), nil
		}
		got := res.snapshot()
		if err := inventory.CheckRepeat("memory", got, req); err != nil {
			return inventory.Reservation{}, err
		}
		return got, nil
	}

	res := &reservation{state: inventory.Held}
	if len(req.Lines) == 1 {
		res.entries = res.one[:]
	} else {
		res.entries = make([]entry, len(req.Lines))
	}
	r.skuMu.RLock()
	for i, l := range req.Lines {
		s := r.skus[l.SKU]
		res.entries[i] = entry{sku: l.SKU, qty: l.Qty, min: max(l.Min, 1), s: s}
		if s != nil {
			res.entries[i].sku = s.name // keep no reference to the caller's memory
		}
	}
	r.skuMu.RUnlock()
	if len(res.entries) > 1 {
		slices.SortFunc(res.entries, compareEntries)
	}
	// Take the stocks in sorted order; the first refused line decides.
	for i := range res.entries {
		e := &res.entries[i]
		if e.s == nil {
			unlockStocks(res.entries[:i])
			return inventory.Reservation{}, &inventory.UnknownSKUError{SKU: e.sku}
		}
		e.s.mu.Lock()
		avail := e.s.available.Load()
		if e.s.limit > 0 {
			if err := e.s.fitLimit(e, req.Buyer, req.Partial); err != nil {
				unlockStocks(res.entries[:i+1])
				return inventory.Reservation{}, err
			}
		}
		if req.Partial {
			e.qty = min(e.qty, max(avail, 0))
			if e.qty < e.min {
				unlockStocks(res.entries[:i+1])
				return inventory.Reservation{}, &inventory.InsufficientStockError{SKU: e.sku, Requested: e.min, Available: avail}
			}
		} else if avail < e.qty {
			unlockStocks(res.entries[:i+1])
			return inventory.Reservation{}, &inventory.InsufficientStockError{SKU: e.sku, Requested: e.qty, Available: avail}
		}
	}
	for i := range res.entries {
		e := &res.entries[i]
		e.s.available.Add(-e.qty)
		e.s.held.Add(e.qty)
		if e.counted {
			e.s.used[req.Buyer] += e.qty
		}
		e.min = 0
		e.s.mu.Unlock()
	}

	ttl := req.TTL
	if ttl == 0 {
		ttl = r.ttl
	}
	res.id = req.ID
	if req.Buyer != "" {
		res.buyer = strings.Clone(req.Buyer)
	}
	res.partial = req.Partial
	res.reservedAt = r.now()
	res.expiresAt = res.reservedAt.Add(ttl)
	sh.res[res.id] = res
	heap.Push(&sh.due, res)
	return res.snapshot(), nil
}

// fitLimit checks the line e of buyer against the limit of s, which has
// one, and marks it counted: without Partial it refuses a line that would
// take the buyer past the limit; with Partial it cuts the line down to what
// is left of the limit, and refuses it when that is below e.min. A request
// without a buyer is refused. s.mu must be held.
func (s *stock) fitLimit(e *entry, buyer string, partial bool) error {
	if buyer == "" {
		return &inventory.LimitError{SKU: e.sku, Limit: s.limit}
	}
	had := s.used[buyer]
	left := s.limit - had
	if partial {
		e.qty = min(e.qty, left)
	}
	if (partial && e.qty < e.min) || (!partial && e.qty > left) {
		return &inventory.LimitError{SKU: e.sku, Buyer: buyer, Limit: s.limit, Had: had}
	}
	if s.used == nil {
		s.used = make(map[string]int64)
	}
	e.counted = true
	return nil
}

// Commit sells the units of a Held reservation; see inventory.Reserver.
func (r *Reserver) Commit(ctx context.Context, id string) error {
	return r.settle(ctx, id, "commit", inventory.Committed)
}

// Release returns the units of a Held reservation to stock; see
// inventory.Reserver.
func (r *Reserver) Release(ctx context.Context, id string) error {
	return r.settle(ctx, id, "release", inventory.Released)
}

// Cancel releases a Held reservation, or records an ID never seen as
// cancelled so that a later Reserve with it fails with
// inventory.ErrCancelled; see inventory.Reserver. A tombstone is a settled
// reservation: Options.Retention forgets it as it forgets the others.
func (r *Reserver) Cancel(ctx context.Context, id string) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r.forget(sh)
	now := r.now()
	res, ok := sh.res[id]
	if !ok {
		res = &reservation{id: id, state: inventory.Released, expiresAt: now}
		sh.res[id] = res
		if r.retention > 0 {
			sh.gone.push(gone{at: now.Add(r.retention), res: res})
		}
		return nil
	}
	switch res.state {
	case inventory.Committed:
		return &inventory.StateError{ID: res.id, Op: "cancel", State: res.state}
	case inventory.Held:
		to := inventory.Released
		if !now.Before(res.expiresAt) {
			to = inventory.Expired
		}
		sh.settle(res, to, now, r.retention)
	}
	return nil
}

func (r *Reserver) settle(ctx context.Context, id, op string, to inventory.State) error {
	if err := inventory.ValidateID(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r.forget(sh)
	res, ok := sh.res[id]
	if !ok {
		return notFound(id)
	}
	switch res.state {
	case to:
		return nil
	case inventory.Held:
		now := r.now()
		if now.Before(res.expiresAt) {
			sh.settle(res, to, now, r.retention)
			return nil
		}
		sh.settle(res, inventory.Expired, now, r.retention)
	}
	return &inventory.StateError{ID: res.id, Op: op, State: res.state}
}

// settle moves a Held reservation to its final state at now, returning its
// units to stock unless it is Committed. With a positive retention it queues
// the reservation to be forgotten once retention has passed. sh.mu must be
// held.
func (sh *shard) settle(res *reservation, to inventory.State, now time.Time, retention time.Duration) {
	if to == inventory.Committed {
		// The units move from held to sold; available, received and the
		// buyer's count stay as they are.
		for _, e := range res.entries {
			e.s.held.Add(-e.qty)
		}
	} else {
		// Lock every stock before changing any, so that no Reserve sees
		// some lines returned and others not.
		for _, e := range res.entries {
			e.s.mu.Lock()
		}
		for _, e := range res.entries {
			e.s.available.Add(e.qty)
			e.s.held.Add(-e.qty)
			if e.counted {
				e.s.unuse(res.buyer, e.qty)
			}
		}
		unlockStocks(res.entries)
	}
	res.state = to
	heap.Remove(&sh.due, res.dueIdx)
	if retention > 0 {
		sh.gone.push(gone{at: now.Add(retention), res: res})
	}
}

// unuse takes n units off what buyer has of s. s.mu must be held.
func (s *stock) unuse(buyer string, n int64) {
	if left := s.used[buyer] - n; left > 0 {
		s.used[buyer] = left
	} else {
		delete(s.used, buyer)
	}
}

// forget drops up to forgetBatch settled reservations of sh whose retention
// has passed. Reserve, Commit, Release and Lookup call it first, so
// forgetting keeps pace with settling without a goroutine of its own.
// Without a retention the queue is empty and it costs nothing. sh.mu must be
// held.
func (r *Reserver) forget(sh *shard) {
	if len(sh.gone) > 0 {
		sh.forgetDue(r.now(), forgetBatch)
	}
}

// forgetDue drops up to limit settled reservations whose time to forget is
// not after now. sh.mu must be held.
func (sh *shard) forgetDue(now time.Time, limit int) {
	for ; limit > 0 && len(sh.gone) > 0 && !sh.gone[0].at.After(now); limit-- {
		res := sh.gone.pop()
		// Only the reservation queued leaves the map, never a newer one
		// under its ID.
		if sh.res[res.id] == res {
			delete(sh.res, res.id)
		}
	}
}

// ExpireDue expires at most limit Held reservations whose ExpiresAt is not
// after now and returns their units to stock; see inventory.Expirer. In each
// shard it visits it also forgets up to limit settled reservations whose
// Options.Retention has passed; those are not counted.
func (r *Reserver) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := r.now()
	start := r.nextShard.Add(1)
	n := 0
	for i := uint32(0); i < numShards && n < limit; i++ {
		sh := &r.shards[(start+i)&(numShards-1)]
		sh.mu.Lock()
		sh.forgetDue(now, limit)
		for n < limit && len(sh.due) > 0 && !sh.due[0].expiresAt.After(now) {
			sh.settle(sh.due[0], inventory.Expired, now, r.retention)
			n++
		}
		sh.mu.Unlock()
	}
	return n, nil
}

// Lookup returns the reservation with the given ID as recorded, or an error
// that errors.Is inventory.ErrNotFound, also for one forgotten after
// Options.Retention. A Held reservation past its ExpiresAt reads Held until a
// Commit, Release or ExpireDue expires it.
func (r *Reserver) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	if err := inventory.ValidateID(id); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r.forget(sh)
	res, ok := sh.res[id]
	if !ok {
		return inventory.Reservation{}, notFound(id)
	}
	return res.snapshot(), nil
}

// Available returns the units of sku that can be reserved now.
func (r *Reserver) Available(ctx context.Context, sku string) (int64, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s := r.lookupSKU(sku)
	if s == nil {
		return 0, &inventory.UnknownSKUError{SKU: sku}
	}
	return s.available.Load(), nil
}

// SetStock sets the available units of sku, creating it if it is new; see
// inventory.Stocker. A SKU keeps its settings (see SetStockWith): with a
// backorder allowance B, Available reports available + B.
func (r *Reserver) SetStock(ctx context.Context, sku string, available int64) error {
	if err := inventory.ValidateStock(sku, available); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := r.stockOf(sku)
	s.mu.Lock()
	s.setAvailable(available + s.backorder)
	s.mu.Unlock()
	return nil
}

// stockOf returns the stock of sku, creating it if it is new.
func (r *Reserver) stockOf(sku string) *stock {
	s := r.lookupSKU(sku)
	if s == nil {
		r.skuMu.Lock()
		if s = r.skus[sku]; s == nil {
			s = &stock{}
			s.name = strings.Clone(sku)
			r.skus[s.name] = s
		}
		r.skuMu.Unlock()
	}
	return s
}

// setAvailable sets the available units of s to n, and received by the
// same change. s.mu must be held.
func (s *stock) setAvailable(n int64) {
	s.received += n - s.available.Load()
	s.available.Store(n)
}

// SetStockWith sets the available units of sku as SetStock does, and its
// settings, accepting every setting of inventory.StockOptions: with
// opts.Backorder B, Available reports available + B, and units held and
// sold beyond the stock on hand are backordered (see Levels); with
// opts.Limit, a buyer may hold and commit that many units at most. The
// units each buyer has, counted while the SKU has a limit, carry over a
// change of the limit. Stock buckets change nothing here: a SKU's units are
// one counter under a mutex of its own, which buyers in one process hold
// for nanoseconds, so the SKU behaves as the buckets promise (a line is
// refused only when the SKU as a whole is short) without splitting it.
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	if err := inventory.ValidateStockWith(sku, available, opts); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := r.stockOf(sku)
	s.mu.Lock()
	s.backorder = opts.Backorder
	s.limit = opts.Limit
	s.setAvailable(available + opts.Backorder)
	s.mu.Unlock()
	return nil
}

// Levels returns the levels of sku, read under its mutex; see
// inventory.Leveler.
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	if err := inventory.ValidateSKU(sku); err != nil {
		return inventory.Levels{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Levels{}, err
	}
	s := r.lookupSKU(sku)
	if s == nil {
		return inventory.Levels{}, &inventory.UnknownSKUError{SKU: sku}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	avail, held := s.available.Load(), s.held.Load()
	return inventory.Levels{
		Available:   avail,
		Held:        held,
		Sold:        s.received - avail - held,
		Backordered: max(0, s.backorder-avail),
	}, nil
}

// Extend moves the expiry of a Held reservation to ttl from now, never
// earlier than it was and never past Options.MaxHold after it was reserved;
// see inventory.Extender. A hold whose TTL has passed is expired on the
// spot, as Commit does, and refused.
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	if err := inventory.ValidateExtend(id, ttl); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r.forget(sh)
	res, ok := sh.res[id]
	if !ok {
		return inventory.Reservation{}, notFound(id)
	}
	if res.state == inventory.Held {
		now := r.now()
		if !now.Before(res.expiresAt) {
			sh.settle(res, inventory.Expired, now, r.retention)
		} else {
			if to := minTime(now.Add(ttl), res.reservedAt.Add(r.maxHold)); to.After(res.expiresAt) {
				res.expiresAt = to
				heap.Fix(&sh.due, res.dueIdx)
			}
			return res.snapshot(), nil
		}
	}
	return inventory.Reservation{}, &inventory.StateError{ID: res.id, Op: "extend", State: res.state}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Rebalance checks that sku is known and changes nothing: memory keeps a
// SKU whole (see SetStockWith).
func (r *Reserver) Rebalance(ctx context.Context, sku string) error {
	_, err := r.Available(ctx, sku)
	return err
}

// AddStock adds delta units to the available units of sku and returns the
// new number; see inventory.Stocker. A result above inventory.MaxStock fails
// with ErrInvalidRequest and changes nothing.
func (r *Reserver) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	if err := inventory.ValidateDelta(sku, delta); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s := r.lookupSKU(sku)
	if s == nil {
		return 0, &inventory.UnknownSKUError{SKU: sku}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	avail := s.available.Load()
	n := avail + delta
	switch {
	case n < 0:
		return 0, &inventory.InsufficientStockError{SKU: sku, Requested: -delta, Available: avail}
	case n-s.backorder > inventory.MaxStock:
		return 0, &inventory.ValidationError{Field: "delta", Reason: fmt.Sprintf("%d on hand plus %d exceeds %d", avail-s.backorder, delta, int64(inventory.MaxStock))}
	}
	s.setAvailable(n)
	return n, nil
}

// sameLines reports whether lines, valid and in any order, ask for the
// units res holds.
func (res *reservation) sameLines(lines []inventory.Line) bool {
	if len(lines) != len(res.entries) {
		return false
	}
	for _, l := range lines {
		i, ok := slices.BinarySearchFunc(res.entries, l.SKU, func(e entry, sku string) int { return cmp.Compare(e.sku, sku) })
		if !ok || res.entries[i].qty != l.Qty {
			return false
		}
	}
	return true
}

// snapshot returns a copy of res that shares no memory the caller could
// change.
func (res *reservation) snapshot() inventory.Reservation {
	lines := make([]inventory.Line, len(res.entries))
	for i, e := range res.entries {
		lines[i] = inventory.Line{SKU: e.sku, Qty: e.qty}
	}
	return inventory.Reservation{ID: res.id, Lines: lines, State: res.state, ExpiresAt: res.expiresAt, Buyer: res.buyer, Partial: res.partial}
}

func compareEntries(a, b entry) int { return cmp.Compare(a.sku, b.sku) }

func unlockStocks(entries []entry) {
	for _, e := range entries {
		e.s.mu.Unlock()
	}
}

func notFound(id string) error {
	return fmt.Errorf("memory: reservation %q: %w", id, inventory.ErrNotFound)
}

// dueHeap is a min-heap of Held reservations by ExpiresAt, for
// container/heap. Each reservation knows its index, so a settled one leaves
// the heap at once.
type dueHeap []*reservation

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].expiresAt.Before(h[j].expiresAt) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].dueIdx = i
	h[j].dueIdx = j
}

func (h *dueHeap) Push(x any) {
	res := x.(*reservation)
	res.dueIdx = len(*h)
	*h = append(*h, res)
}

func (h *dueHeap) Pop() any {
	old := *h
	n := len(old) - 1
	res := old[n]
	old[n] = nil
	res.dueIdx = -1
	*h = old[:n]
	return res
}

// gone is a settled reservation waiting to be forgotten at at.
type gone struct {
	at  time.Time
	res *reservation
}

// goneHeap is a min-heap of settled reservations by the time to forget them.
// It is a heap, not a FIFO, because Options.Now may move backwards. A
// settled reservation never changes again, so it leaves only from the top
// and needs no index. It sifts by itself rather than through container/heap,
// whose Push would box every gone in an interface: an allocation per settle.
type goneHeap []gone

// push adds g to the heap.
func (h *goneHeap) push(g gone) {
	q := append(*h, g)
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q[i].at.Before(q[parent].at) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
	*h = q
}

// pop removes the top of a non-empty heap and returns its reservation.
func (h *goneHeap) pop() *reservation {
	q := *h
	res := q[0].res
	n := len(q) - 1
	q[0] = q[n]
	q[n] = gone{} // let the forgotten reservation be collected
	q = q[:n]
	for i := 0; ; {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < n && q[c].at.Before(q[least].at) {
				least = c
			}
		}
		if least == i {
			break
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
	*h = q
	return res
}
