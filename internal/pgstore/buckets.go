package pgstore

import (
	"errors"
	"hash/fnv"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
)

// TakeStep returns the Step of the conditional UPDATE, which serves SKUs
// kept whole and SKUs split into stock buckets (inventory.StockOptions) on
// the same tables, in one round trip:
//
//   - a SKU kept whole loses the line's units in one statement,
//     UPDATE stock SET available = available - n WHERE sku = $1 AND
//     available >= n, under the row lock it waits for, as before;
//   - a SKU in K buckets loses them from one bucket: the one a hash of the
//     reservation ID picks (BucketStart), by the same conditional UPDATE of
//     that bucket's row, waiting for the row as long as another
//     transaction holds it; with K buckets each row has 1/K of the buyers
//     in its queue, in this process and every other. When that bucket is
//     short, the first other one, from there on, that has the units and
//     that no other transaction holds (FOR UPDATE SKIP LOCKED); when none
//     does, the line is refused if one snapshot of every bucket finds the
//     SKU short as a whole, else the SKU's stock row and every bucket are
//     locked in order, waiting, and the units the line lacks are gathered
//     into one bucket. The bucket is recorded with the line so that
//     Release, Cancel and expiry give the units back there, or to another
//     bucket of the SKU when another transaction holds that one (see
//     0012_give_back_free.sql). A buyer waits
//     only for rows that come after every row it holds in the lock order
//     (see 0011_bucket_home.sql), so buyers never deadlock, and it never
//     pauses: there is no round to try again.
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
