package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
)

// errBusy: the stock buckets that have the units of a line are held by
// other transactions; the reservation rolled back and may be sent again.
var errBusy = errors.New("pgstore: the stock buckets with the units are held by other transactions")

// Bounds of the rounds of Reserve that find the buckets busy. Each round
// waits a random pause up to the round's bound, from busyPause to
// maxBusyPause, so that rounds of buyers who found each other's buckets held
// do not meet again.
const (
	maxBusyRounds = 200
	busyPause     = 50 * time.Microsecond
	maxBusyPause  = 2 * time.Millisecond
)

// TakeStep returns the Step of the conditional UPDATE, which serves SKUs
// kept whole and SKUs split into stock buckets (inventory.StockOptions) on
// the same tables, in one round trip:
//
//   - a SKU kept whole loses the line's units in one statement,
//     UPDATE stock SET available = available - n WHERE sku = $1 AND
//     available >= n, under the row lock it waits for, as before;
//   - a SKU in K buckets loses them from one bucket: the first, from a hash
//     of the reservation ID on, that has them and that no other transaction
//     holds (FOR UPDATE SKIP LOCKED), recorded with the line so that
//     Release, Cancel and expiry give them back there. When none does, the
//     line is refused if one snapshot of every bucket finds the SKU short
//     as a whole; else the buckets nobody holds are gathered to serve it,
//     and if others hold the units the reservation rolls back and is sent
//     again after a short random pause (up to 200 rounds, then
//     inventory.ErrContended). A buyer never waits for a bucket's lock, so
//     bucket rows are never waited for out of order.
//
// It is a RequestStep: a line of a SKU with a limit per buyer, or of a
// request with a Buyer or Partial, is taken by one function call in the
// same batch that checks the limit and the buyer's usage under the row
// locks, sizes a partial line, and counts the units against the buyer
// (see 0008_levels_limits.sql); a line of a SKU kept whole without a
// limit, in a request without either, is still the one conditional UPDATE.
//
// Store.Reserve must run it: it needs the ID of the reservation.
func (s *Store) TakeStep() Step { return &takeStep{sql: s.q.take, line: s.q.takeLine} }

type takeStep struct{ sql, line string }

// Queue cannot take units without the reservation's ID: Store.Reserve calls
// QueueTake instead. A Finish that fails keeps it from taking any.
func (t *takeStep) Queue(*pgx.Batch, []inventory.Line) Finish {
	return func(*pgx.Batch) error { return errors.New("pgstore: TakeStep runs only in Store.Reserve") }
}

func (t *takeStep) QueueTake(b *pgx.Batch, r *Take) Finish {
	start := int64(BucketStart(r.ID))
	plain := r.Buyer == "" && !r.Partial
	for i, l := range r.Lines {
		if plain {
			b.Queue(t.sql, r.ID, l.SKU, l.Qty, start).Fn = func(br pgx.BatchResults) error {
				_, err := br.Exec()
				return takeError(err, l, "")
			}
			continue
		}
		b.Queue(t.line, r.ID, l.SKU, l.Qty, start, nullable(r.Buyer), l.Min, r.Partial).Fn = func(br pgx.BatchResults) error {
			var n int64
			if err := br.QueryRow().Scan(&n); err != nil {
				return takeError(err, l, r.Buyer)
			}
			r.Held[i] = n
			return nil
		}
	}
	return nil
}

// takeError maps the error of the statement that took line l for buyer.
func takeError(err error, l inventory.Line, buyer string) error {
	switch {
	case hasCode(err, codeRefused):
		return &aborted{err: &RefusedError{Line: l}}
	case hasCode(err, codeBusy):
		return &aborted{err: errBusy}
	case hasCode(err, codeLimit):
		return &aborted{err: limitError(err, l.SKU, buyer)}
	}
	return err
}

// BucketStart is the bucket, modulo a SKU's number of buckets, from which a
// reservation with this ID looks for units: a hash of the ID, so that
// buyers spread over the buckets.
func BucketStart(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32() & (1<<31 - 1)
}

// recordBusy runs record until it does not find the buckets busy, pausing
// between rounds.
func (s *Store) recordBusy(ctx context.Context, res inventory.Reservation, now time.Time, step Step) ([]int64, error) {
	pause := busyPause
	for range maxBusyRounds {
		held, err := s.record(ctx, res, now, step)
		if !errors.Is(err, errBusy) {
			return held, err
		}
		t := time.NewTimer(rand.N(pause) + 1)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: reserve %q: %w", s.name, res.ID, ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, maxBusyPause)
	}
	return nil, fmt.Errorf("%s: reserve %q: %w: %w", s.name, res.ID, inventory.ErrContended, errBusy)
}
