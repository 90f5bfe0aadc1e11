package inventory

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// SweeperOptions configures a Sweeper. A nil *SweeperOptions takes every
// default.
type SweeperOptions struct {
	// Interval is the pause between sweeps. Default: 10s.
	Interval time.Duration
	// Jitter spreads sweeps of many processes apart: each pause is Interval
	// plus or minus a random part of up to Jitter*Interval. Default: 0.2.
	// Negative means none.
	Jitter float64
	// BatchSize is the limit passed to each ExpireDue and Purge call. A sweep
	// keeps calling each while full batches come back. Default: 500.
	BatchSize int
	// Logger receives the sweeper's state changes (started, stopped, failing,
	// recovered), one record per failed sweep and one per sweep that expired
	// holds, with the count: never a record per reservation. Default: nil,
	// which logs nothing.
	Logger *slog.Logger
}

// Purger deletes settled reservations whose retention has passed. A strategy
// that keeps its reservations in a store that grows (the PostgreSQL ledger)
// implements it next to Expirer, and the Sweeper calls it after each sweep's
// expiry.
type Purger interface {
	// Purge deletes at most limit settled reservations (Committed, Released,
	// Expired, cancelled) that settled longer ago than the strategy's
	// retention, and reports how many. It never deletes a Held reservation
	// and moves no unit. A purged ID is unknown, so idempotency on an ID
	// lasts as long as the retention. It is safe to call from many
	// goroutines and processes at once: no reservation is purged twice.
	// Without a retention it deletes nothing. limit must be positive.
	Purge(ctx context.Context, limit int) (int, error)
}

// Purge purges at most limit settled reservations past their retention on
// s, with s's own Purge when s is a Purger. A strategy that keeps no
// retention deletes nothing: Purge reports 0 after checking limit.
// Wrappers (token, otelinventory) pass their calls on through it.
func Purge(ctx context.Context, s any, limit int) (int, error) {
	if p, ok := s.(Purger); ok {
		return p.Purge(ctx, limit)
	}
	if err := ValidateLimit(limit); err != nil {
		return 0, err
	}
	return 0, nil
}

// Sweeper returns the units of abandoned holds to stock by calling ExpireDue
// periodically, and, when the Expirer is a Purger too, deletes the settled
// reservations whose retention has passed by calling Purge after each
// expiry. Many sweepers, in many processes, may run against the same store at
// once: every Expirer expires each hold at most once, and every Purger
// purges each reservation at most once.
type Sweeper struct {
	exp       Expirer
	interval  time.Duration
	jitter    float64
	batchSize int
	log       *slog.Logger
}

// NewSweeper returns a Sweeper for e. Call Run to start it.
func NewSweeper(e Expirer, opts *SweeperOptions) *Sweeper {
	s := &Sweeper{exp: e, interval: 10 * time.Second, jitter: 0.2, batchSize: 500, log: slog.New(slog.DiscardHandler)}
	if opts != nil {
		if opts.Interval > 0 {
			s.interval = opts.Interval
		}
		if opts.Jitter > 0 {
			s.jitter = min(opts.Jitter, 1)
		} else if opts.Jitter < 0 {
			s.jitter = 0
		}
		if opts.BatchSize > 0 {
			s.batchSize = opts.BatchSize
		}
		if opts.Logger != nil {
			s.log = opts.Logger
		}
	}
	return s
}

// errNoExpirer is what a Sweeper made with a nil Expirer returns.
var errNoExpirer = &ValidationError{Field: "Expirer", Reason: "nil"}

// Run sweeps at once and then every interval until ctx ends, then returns
// ctx's error. A failed sweep is logged and tried again at the next interval;
// the first sweep that succeeds after failures is logged too. A Sweeper made
// with a nil Expirer returns an error that errors.Is ErrInvalidRequest at
// once.
func (s *Sweeper) Run(ctx context.Context) error {
	if s.exp == nil {
		return errNoExpirer
	}
	s.log.InfoContext(ctx, "inventory: sweeper started", slog.Duration("interval", s.interval), slog.Int("batch_size", s.batchSize))
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0 // consecutive failed sweeps
	for {
		select {
		case <-ctx.Done():
			s.log.InfoContext(context.WithoutCancel(ctx), "inventory: sweeper stopped", slog.Any("reason", ctx.Err()))
			return ctx.Err()
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			s.log.WarnContext(ctx, "inventory: sweep failed", slog.Int("expired", n), slog.Int("failures", failures), slog.Any("error", err))
		case err == nil && failures > 0:
			s.log.InfoContext(ctx, "inventory: sweeps recovered", slog.Int("failures", failures))
			failures = 0
		}
		t.Reset(s.pause())
	}
}

// Sweep expires every hold that is due now, in batches, then, when the
// Expirer is a Purger, purges every settled reservation whose retention has
// passed, in batches, and returns how many holds it expired. It stops at the
// first error, returning the count so far.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	if s.exp == nil {
		return 0, errNoExpirer
	}
	total, err := s.batches(ctx, s.exp.ExpireDue)
	if total > 0 {
		s.log.InfoContext(ctx, "inventory: expired holds", slog.Int("count", total))
	}
	if err != nil {
		return total, err
	}
	if p, ok := s.exp.(Purger); ok {
		purged, err := s.batches(ctx, p.Purge)
		if purged > 0 {
			s.log.InfoContext(ctx, "inventory: purged settled reservations", slog.Int("count", purged))
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// batches calls f with the batch size while full batches come back, and
// returns the sum of the counts.
func (s *Sweeper) batches(ctx context.Context, f func(context.Context, int) (int, error)) (int, error) {
	total := 0
	for {
		n, err := f(ctx, s.batchSize)
		total += n
		if err != nil || n < s.batchSize {
			return total, err
		}
	}
}

func (s *Sweeper) pause() time.Duration {
	if s.jitter == 0 {
		return s.interval
	}
	f := 1 + s.jitter*(2*rand.Float64()-1)
	return time.Duration(float64(s.interval) * f)
}
