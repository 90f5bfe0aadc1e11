package strategytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oversell/inventory"
)

// HammerConfig describes a hammer run: many buyers racing for scarce stock.
// The zero value of every field but Strategy takes the default. Its fields
// but the functions and the strategy travel as JSON to the workers of a
// ProcsRun.
type HammerConfig struct {
	// Strategy is the strategy under test, with no SKUs yet. Required.
	Strategy inventory.Strategy `json:"-"`
	// NewID returns request IDs. Default: RandomID.
	NewID func(ctx context.Context) (string, error) `json:"-"`
	// Advance moves the strategy's clock, as Harness.Advance. Nil: wall clock.
	Advance func(d time.Duration) `json:"-"`

	// Workers is the number of concurrent buyers. Default: 64.
	Workers int
	// SKUs is the number of SKUs, named "sku-00".."sku-NN". Default: 1.
	SKUs int
	// Zipf skews the choice of SKUs: 0 picks uniformly, s > 1 picks SKU k
	// with probability proportional to 1/(k+1)^s.
	Zipf float64
	// Stock is the initial stock of every SKU. Default: 500.
	Stock int64
	// MaxQty is the largest quantity of a line; each line asks 1..MaxQty.
	// Default: 3.
	MaxQty int64
	// MaxLines is the largest cart; each cart has 1..MaxLines lines, listed in
	// random order. Default: 1.
	MaxLines int

	// SellOut makes every buyer reserve and hold until a one-unit request is
	// refused for lack of stock, so the run ends with every unit granted.
	// Use it with one SKU. When SellOut is false, each buyer makes OpsPerWorker
	// carts (or runs for Duration) and settles each one at random: commit,
	// release, or leave it held to expire, while the stock is topped up and
	// drawn down and holds are expired concurrently.
	SellOut bool
	// Settle, with SellOut, releases a random half of the reservations and
	// commits the rest once the stock is sold out.
	Settle bool
	// OpsPerWorker bounds the carts each buyer makes. Default: 40 when
	// Duration is 0, unlimited otherwise.
	OpsPerWorker int
	// Duration bounds the run. Default: none.
	Duration time.Duration

	// CancelFraction is the fraction of Reserve, Commit and Release calls made
	// with a random deadline of 0..CancelWithin, to cut calls short at random
	// points. Default: 0.
	CancelFraction float64
	// CancelWithin is the longest of those deadlines. Default: 5ms.
	CancelWithin time.Duration

	// SampleEvery is the pause between two reads of Available by the
	// watcher, which reads the SKUs in turn and reports a negative value.
	// Default: 1ms.
	SampleEvery time.Duration
	// SweepEvery is the pause between two rounds of background work while
	// buyers run: move the clock, ExpireDue, and (unless FixedStock) add or
	// remove a few units. Default: 2ms.
	SweepEvery time.Duration

	// Faults tells the hammer that the run injects faults (connections cut,
	// servers restarted): errors outside the contract are counted under
	// "other" instead of being reported as unexpected. The invariant is still
	// checked exactly.
	Faults bool
	// FixedStock keeps the stock still during a run that is not SellOut: no
	// units are added or removed while buyers run. Use it when stock
	// administration calls might fail with an unknown outcome.
	FixedStock bool

	// Observe, if set, is called after every Reserve, Commit and Release with
	// the operation's name, its latency and its error. It must be safe for
	// concurrent use.
	Observe func(op string, latency time.Duration, err error) `json:"-"`

	// HoldTTL is the TTL of the holds a buyer means to settle (and, with
	// SellOut, of every hold). Default: an hour.
	HoldTTL time.Duration

	// Seed makes the choices of the run repeatable. Default: random.
	Seed uint64

	// Buyers, when positive, names a buyer on every cart (Request.Buyer),
	// one of Buyers ("buyer-0".."buyer-N") picked at random, for SKUs with
	// a limit per buyer (StockOptions.Limit). Default: 0, carts without a
	// buyer.
	Buyers int

	// stocked: the SKUs are stocked already, by the process that runs the
	// workers of RunProcs; the hammer neither sets them nor accounts at the
	// end.
	stocked bool
	// onID, if set, is told every request ID before it is first used.
	onID func(id string) error
}

// Report is what a hammer run found. A correct strategy reports Oversold,
// Lost and NegativeSeen as zero and Unexpected as empty.
type Report struct {
	Reserves int64 // Reserve calls
	Granted  int64 // units granted by successful Reserve calls (first grants, not idempotent replays)
	Refused  int64 // Reserve calls refused for lack of stock
	Errors   map[string]int64
	// Unexpected holds errors outside the contract (a deadlock, a constraint
	// violation, a wrong error type); at most 20 are kept.
	Unexpected []error

	// Per-SKU accounting at the end: Total is the stock set plus units added;
	// the rest are read from the strategy (Available) and its ledger (Lookup).
	SKUs []SKUReport

	Oversold     int64 // units sold or held beyond what existed, over all SKUs
	Lost         int64 // units that vanished: neither available, held nor sold
	NegativeSeen bool  // Available was seen below zero during the run

	Released int64 // units released by Settle
	// Deadlined is the number of calls made with a short deadline
	// (HammerConfig.CancelFraction).
	Deadlined int64
	Elapsed   time.Duration

	added []int64 // per SKU, units added while running (for RunProcs)
}

// SKUReport is the end state of one SKU.
type SKUReport struct {
	SKU       string
	Total     int64 // stock set + units added
	Available int64
	Held      int64
	Sold      int64
}

// OK reports whether the run found nothing wrong.
func (r *Report) OK() bool {
	return r.Oversold == 0 && r.Lost == 0 && !r.NegativeSeen && len(r.Unexpected) == 0
}

// String summarises the report on one line.
func (r *Report) String() string {
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	errs := ""
	for _, k := range keys {
		errs += fmt.Sprintf(" %s=%d", k, r.Errors[k])
	}
	return fmt.Sprintf("reserves=%d granted=%d refused=%d oversold=%d lost=%d negative=%v unexpected=%d elapsed=%s errors:%s",
		r.Reserves, r.Granted, r.Refused, r.Oversold, r.Lost, r.NegativeSeen, len(r.Unexpected), r.Elapsed.Round(time.Millisecond), errs)
}

// ErrorKind names the class of err as the hammer counts it: "insufficient",
// "unknown_sku", "contended", "outcome_unknown", "not_held", "not_found",
// "conflict", "invalid", "unavailable", "canceled", or "other".
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, inventory.ErrInsufficientStock):
		return "insufficient"
	case errors.Is(err, inventory.ErrUnknownSKU):
		return "unknown_sku"
	case errors.Is(err, inventory.ErrContended):
		return "contended"
	case errors.Is(err, inventory.ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, inventory.ErrNotHeld):
		return "not_held"
	case errors.Is(err, inventory.ErrNotFound):
		return "not_found"
	case errors.Is(err, inventory.ErrConflict):
		return "conflict"
	case errors.Is(err, inventory.ErrInvalidRequest):
		return "invalid"
	case errors.Is(err, inventory.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "other"
}

// SKUName returns the name the hammer gives SKU i.
func SKUName(i int) string { return fmt.Sprintf("sku-%02d", i) }

type hammer struct {
	cfg   HammerConfig
	skus  []string
	total []atomic.Int64 // per SKU: stock set + added

	deadline time.Time
	stop     atomic.Bool

	mu         sync.Mutex
	errs       map[string]int64
	unexpected []error

	reserves, granted, refused, released, deadlined atomic.Int64
	negative                                        atomic.Bool
}

// Hammer runs buyers against cfg.Strategy as cfg describes and reports what
// it found. It stocks the SKUs itself. It returns an error only when the run
// could not be set up or checked (ctx ended, the strategy could not be
// stocked or read at the end); what the strategy did wrong is in the Report.
func Hammer(ctx context.Context, cfg HammerConfig) (*Report, error) {
	if cfg.Strategy == nil {
		return nil, errors.New("strategytest: HammerConfig.Strategy is nil")
	}
	if cfg.NewID == nil {
		cfg.NewID = func(context.Context) (string, error) { return RandomID(), nil }
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.SKUs <= 0 {
		cfg.SKUs = 1
	}
	if cfg.Stock <= 0 {
		cfg.Stock = 500
	}
	if cfg.MaxQty <= 0 {
		cfg.MaxQty = 3
	}
	if cfg.MaxLines <= 0 {
		cfg.MaxLines = 1
	}
	cfg.MaxLines = min(cfg.MaxLines, cfg.SKUs)
	if cfg.OpsPerWorker <= 0 && cfg.Duration == 0 && !cfg.SellOut {
		cfg.OpsPerWorker = 40
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = time.Millisecond
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 2 * time.Millisecond
	}
	if cfg.CancelWithin <= 0 {
		cfg.CancelWithin = 5 * time.Millisecond
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.HoldTTL <= 0 {
		cfg.HoldTTL = time.Hour
	}

	h := &hammer{
		cfg:   cfg,
		total: make([]atomic.Int64, cfg.SKUs),
		errs:  make(map[string]int64),
	}
	for i := range cfg.SKUs {
		sku := SKUName(i)
		h.skus = append(h.skus, sku)
		h.total[i].Store(cfg.Stock)
		if cfg.stocked {
			continue
		}
		if err := cfg.Strategy.SetStock(ctx, sku, cfg.Stock); err != nil {
			return nil, fmt.Errorf("strategytest: stock %s: %w", sku, err)
		}
	}

	start := time.Now()
	if cfg.Duration > 0 {
		h.deadline = start.Add(cfg.Duration)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var bg sync.WaitGroup
	bg.Go(func() { h.sample(runCtx) })
	if !cfg.SellOut {
		bg.Go(func() { h.churn(runCtx) })
	}

	var wg sync.WaitGroup
	held := make([][]inventory.Reservation, cfg.Workers)
	ids := make([][]string, cfg.Workers) // per buyer, the IDs that may be in the ledger
	for w := range cfg.Workers {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
		wg.Go(func() { held[w] = h.buyer(runCtx, rng, &ids[w]) })
	}
	wg.Wait()

	if cfg.SellOut && cfg.Settle {
		rng := rand.New(rand.NewPCG(cfg.Seed, 1<<32))
		for w := range held {
			for _, r := range held[w] {
				if rng.IntN(2) == 0 {
					h.settle(runCtx, rng, r, "release")
				} else {
					h.settle(runCtx, rng, r, "commit")
				}
			}
		}
	}
	cancel()
	bg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	rep := &Report{
		Reserves:     h.reserves.Load(),
		Granted:      h.granted.Load(),
		Refused:      h.refused.Load(),
		Errors:       h.errs,
		Unexpected:   h.unexpected,
		NegativeSeen: h.negative.Load(),
		Released:     h.released.Load(),
		Deadlined:    h.deadlined.Load(),
		Elapsed:      time.Since(start),
	}
	if cfg.stocked {
		rep.added = h.added()
		return rep, nil
	}
	totals := make([]int64, len(h.total))
	for i := range h.total {
		totals[i] = h.total[i].Load()
	}
	if err := account(ctx, cfg.Strategy, h.skus, totals, rep, slices.Concat(ids...)); err != nil {
		return rep, err
	}
	return rep, nil
}

// added returns, per SKU, the units the run added (or removed, negative).
func (h *hammer) added() []int64 {
	out := make([]int64, len(h.total))
	for i := range h.total {
		out[i] = h.total[i].Load() - h.cfg.Stock
	}
	return out
}

// lookupWorkers is how many Lookup calls account makes at once.
const lookupWorkers = 16

// account reads the end state of skus, whose totals (stock set plus units
// added) are given, from s and the reservations ids, and checks available +
// held + sold = total.
func account(ctx context.Context, s inventory.Strategy, skus []string, totals []int64, rep *Report, ids []string) error {
	held := make(map[string]int64)
	sold := make(map[string]int64)
	var mu sync.Mutex
	var firstErr error
	next := make(chan string)
	var wg sync.WaitGroup
	for range lookupWorkers {
		wg.Go(func() {
			for id := range next {
				r, err := s.Lookup(ctx, id)
				mu.Lock()
				switch {
				case errors.Is(err, inventory.ErrNotFound):
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("strategytest: lookup %q: %w", id, err)
					}
				default:
					for _, l := range r.Lines {
						switch r.State {
						case inventory.Held:
							held[l.SKU] += l.Qty
						case inventory.Committed:
							sold[l.SKU] += l.Qty
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	for i, sku := range skus {
		avail, err := s.Available(ctx, sku)
		if err != nil {
			return fmt.Errorf("strategytest: available %s: %w", sku, err)
		}
		sr := SKUReport{SKU: sku, Total: totals[i], Available: avail, Held: held[sku], Sold: sold[sku]}
		rep.SKUs = append(rep.SKUs, sr)
		if avail < 0 {
			rep.NegativeSeen = true
		}
		switch d := sr.Available + sr.Held + sr.Sold - sr.Total; {
		case d > 0:
			rep.Oversold += d
		case d < 0:
			rep.Lost -= d
		}
	}
	return nil
}

func (h *hammer) count(err error) {
	kind := ErrorKind(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs[kind]++
	if (kind == "other" && !h.cfg.Faults) || kind == "invalid" || kind == "conflict" || kind == "unknown_sku" {
		if len(h.unexpected) < 20 {
			h.unexpected = append(h.unexpected, err)
		}
	}
}

func (h *hammer) unexpectedf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs["other"]++
	if len(h.unexpected) < 20 {
		h.unexpected = append(h.unexpected, fmt.Errorf(format, args...))
	}
}

func (h *hammer) done(ctx context.Context) bool {
	return h.stop.Load() || ctx.Err() != nil || (!h.deadline.IsZero() && time.Now().After(h.deadline))
}

// callCtx returns the context for one call: sometimes with a short deadline.
func (h *hammer) callCtx(ctx context.Context, rng *rand.Rand) (context.Context, context.CancelFunc) {
	if h.cfg.CancelFraction > 0 && rng.Float64() < h.cfg.CancelFraction {
		h.deadlined.Add(1)
		return context.WithTimeout(ctx, time.Duration(rng.Int64N(int64(h.cfg.CancelWithin)+1)))
	}
	return ctx, func() {}
}

func (h *hammer) observe(op string, start time.Time, err error) {
	if h.cfg.Observe != nil {
		h.cfg.Observe(op, time.Since(start), err)
	}
}

// retryable reports whether a call that failed with err may have been cut
// short, so the same call should be made again with the same ID.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch ErrorKind(err) {
	case "contended", "outcome_unknown", "canceled":
		return true
	}
	return false
}

func (h *hammer) pickSKUs(rng *rand.Rand, n int, zipf *rand.Zipf) []int {
	if n >= len(h.skus) {
		return rng.Perm(len(h.skus))
	}
	picked := make([]int, 0, n)
	seen := make(map[int]bool, n)
	for len(picked) < n {
		var i int
		if zipf != nil {
			i = int(zipf.Uint64())
		} else {
			i = rng.IntN(len(h.skus))
		}
		if !seen[i] {
			seen[i] = true
			picked = append(picked, i)
		}
	}
	return picked
}

// buyer makes carts until told to stop and returns the reservations it holds
// (with SellOut; otherwise it settles its own).
func (h *hammer) buyer(ctx context.Context, rng *rand.Rand, ids *[]string) []inventory.Reservation {
	var zipf *rand.Zipf
	if h.cfg.Zipf > 1 && len(h.skus) > 1 {
		zipf = rand.NewZipf(rng, h.cfg.Zipf, 1, uint64(len(h.skus)-1))
	}
	var mine []inventory.Reservation
	maxQty := h.cfg.MaxQty
	for op := 0; h.cfg.OpsPerWorker <= 0 || op < h.cfg.OpsPerWorker; op++ {
		if h.done(ctx) {
			break
		}
		idx := h.pickSKUs(rng, 1+rng.IntN(h.cfg.MaxLines), zipf)
		req := inventory.Request{Lines: make([]inventory.Line, len(idx))}
		if h.cfg.Buyers > 0 {
			req.Buyer = "buyer-" + strconv.Itoa(rng.IntN(h.cfg.Buyers))
		}
		for k, i := range idx {
			req.Lines[k] = inventory.Line{SKU: h.skus[i], Qty: 1 + rng.Int64N(maxQty)}
		}
		if !h.cfg.SellOut && rng.IntN(4) == 0 {
			req.TTL = time.Second // short: left to expire
			if h.cfg.Advance == nil {
				req.TTL = 50 * time.Millisecond
			}
		} else {
			req.TTL = h.cfg.HoldTTL
		}
		id, err := h.cfg.NewID(ctx)
		if err != nil {
			h.unexpectedf("new id: %w", err)
			return mine
		}
		if h.cfg.onID != nil {
			if err := h.cfg.onID(id); err != nil {
				h.unexpectedf("record id: %w", err)
				return mine
			}
		}
		req.ID = id
		*ids = append(*ids, id) // it may be in the ledger from here on
		res, err := h.reserve(ctx, rng, req)
		switch {
		case err == nil:
		case errors.Is(err, inventory.ErrInsufficientStock):
			if h.cfg.SellOut {
				if len(req.Lines) == 1 && req.Lines[0].Qty == 1 {
					return mine
				}
				maxQty = max(1, req.Lines[0].Qty-1)
			}
			continue
		default:
			continue
		}
		if h.cfg.SellOut {
			mine = append(mine, res)
			continue
		}
		switch n := rng.IntN(10); {
		case n < 4:
			h.settle(ctx, rng, res, "commit")
		case n < 7:
			h.settle(ctx, rng, res, "release")
		}
	}
	return mine
}

// reserve makes one Reserve call, retrying with the same ID when the outcome
// is unknown or the call was cut short.
func (h *hammer) reserve(ctx context.Context, rng *rand.Rand, req inventory.Request) (inventory.Reservation, error) {
	for attempt := 0; ; attempt++ {
		h.reserves.Add(1)
		cctx, cancel := h.callCtx(ctx, rng)
		start := time.Now()
		res, err := h.cfg.Strategy.Reserve(cctx, req)
		cancel()
		h.observe("reserve", start, err)
		if err == nil {
			// A retry may find its first attempt applied and already
			// expired: this loop's retry, or the client library's own (go-redis
			// sends a command again when its reply was lost, and the clock
			// may move past the hold's TTL in between), which a strategy
			// answers with the reservation in its state now, as the
			// contract says.
			okState := res.State == inventory.Held || ((attempt > 0 || h.cfg.Faults) && res.State == inventory.Expired)
			if res.ID != req.ID || !inventory.SameLines(res.Lines, req.Lines) || !okState {
				h.unexpectedf("reserve %q returned %+v for %+v", req.ID, res, req.Lines)
				return res, errors.New("strategytest: wrong reservation")
			}
			for _, l := range res.Lines {
				h.granted.Add(l.Qty)
			}
			return res, nil
		}
		h.count(err)
		if errors.Is(err, inventory.ErrInsufficientStock) {
			h.refused.Add(1)
			return res, err
		}
		if !retryable(ctx, err) || h.done(ctx) && ErrorKind(err) == "contended" {
			return res, err
		}
	}
}

// settle commits or releases r, retrying with the same ID when the outcome
// is unknown or the call was cut short.
func (h *hammer) settle(ctx context.Context, rng *rand.Rand, r inventory.Reservation, op string) {
	call := h.cfg.Strategy.Commit
	if op == "release" {
		call = h.cfg.Strategy.Release
	}
	for {
		cctx, cancel := h.callCtx(ctx, rng)
		if h.cfg.SellOut {
			// The settle phase checks exact counts: no deadlines there.
			cctx, cancel = ctx, func() {}
		}
		start := time.Now()
		err := call(cctx, r.ID)
		cancel()
		h.observe(op, start, err)
		if err == nil {
			if op == "release" {
				for _, l := range r.Lines {
					h.released.Add(l.Qty)
				}
			}
			return
		}
		h.count(err)
		if errors.Is(err, inventory.ErrNotHeld) && !h.cfg.SellOut {
			return // expired under us: the contract's answer
		}
		if !retryable(ctx, err) {
			if errors.Is(err, inventory.ErrNotHeld) || errors.Is(err, inventory.ErrNotFound) {
				h.unexpectedf("%s %q: %w", op, r.ID, err)
			}
			return
		}
	}
}

// sample reads Available of the SKUs in turn until ctx ends, watching for a
// negative value.
func (h *hammer) sample(ctx context.Context) {
	t := time.NewTicker(h.cfg.SampleEvery)
	defer t.Stop()
	for i := 0; ; i = (i + 1) % len(h.skus) {
		n, err := h.cfg.Strategy.Available(ctx, h.skus[i])
		if err == nil && n < 0 {
			h.negative.Store(true)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// churn moves the clock, expires due holds, and tops up or draws down stock
// while the buyers run.
func (h *hammer) churn(ctx context.Context) {
	rng := rand.New(rand.NewPCG(h.cfg.Seed, 1<<33))
	t := time.NewTicker(h.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if h.cfg.Advance != nil {
			h.cfg.Advance(500 * time.Millisecond)
		}
		// No cancellation either: a sweep cut short when the run ends may
		// still commit in the server after the call returned, and a sweep
		// that lands while the run is being accounted counts its holds
		// twice, as held and as available.
		if _, err := h.cfg.Strategy.ExpireDue(context.WithoutCancel(ctx), 50); err != nil && ctx.Err() == nil {
			h.count(fmt.Errorf("expire due: %w", err))
		}
		if h.cfg.FixedStock {
			continue
		}
		i := rng.IntN(len(h.skus))
		delta := rng.Int64N(7) - 3
		if delta == 0 {
			continue
		}
		// Admin calls get no deadline: the run's accounting needs their outcome.
		_, err := h.cfg.Strategy.AddStock(context.WithoutCancel(ctx), h.skus[i], delta)
		switch {
		case err == nil:
			h.total[i].Add(delta)
		case errors.Is(err, inventory.ErrInsufficientStock):
		default:
			h.count(fmt.Errorf("add stock: %w", err))
		}
	}
}
