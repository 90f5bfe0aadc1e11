package redisstock

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// Script is the package's script, for tests that load it or match its calls.
var Script = script

// ScriptSource is the source of the package's script.
var ScriptSource = scriptSrc

// SetScriptSource makes r run the script src instead of the package's: a
// deliberately wrong variant of it.
func (r *Reserver) SetScriptSource(src string) { r.script = redis.NewScript(src) }

// SetBeforeGrant sets the hook that runs between the last take and the
// grant of a cart that spans buckets.
func (r *Reserver) SetBeforeGrant(f func(id string) error) { r.beforeGrant = f }

// Bucket returns the bucket of a SKU or an ID.
func (r *Reserver) Bucket(name string) int { return r.bucket(name) }

// Wipe deletes every key of the store, as a Redis that lost its data.
func (r *Reserver) Wipe(ctx context.Context) error { return r.wipe(ctx, r.rdb) }

// HoldLane takes every flusher slot of bucket b's lane, as batches in
// flight would, so that calls queue; the returned function hands the slots
// on to the queued callers.
func (r *Reserver) HoldLane(b int) func() {
	l := &r.lanes[b]
	l.mu.Lock()
	n := r.flushers - l.flushing
	l.flushing = r.flushers
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for range n {
			l.handOff(&call{slot: true})
		}
	}
}

// Queued returns how many calls wait in bucket b's lane.
func (r *Reserver) Queued(b int) int {
	l := &r.lanes[b]
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// SetSendAbandoned makes the batcher send calls whose context ended while
// they were queued: deliberately wrong.
func (r *Reserver) SetSendAbandoned(on bool) { r.sendAbandoned = on }

// SetBeforeCommit sets a hook that runs before each batch's transaction.
func (w *Writer) SetBeforeCommit(f func()) { w.beforeCommit = f }

// SetNoReplayGuard makes the writers made after it write again a
// reservation Purge deleted when a batch that wrote it is applied again:
// deliberately wrong.
func (r *Reserver) SetNoReplayGuard(on bool) { r.noReplayGuard = on }

// SetAfterCommit sets a hook that runs after each batch's COMMIT, before
// its entries are acknowledged.
func (w *Writer) SetAfterCommit(f func()) { w.afterCommit = f }

// SetAckFirst makes the writer acknowledge a batch before its COMMIT:
// deliberately wrong.
func (w *Writer) SetAckFirst(on bool) { w.ackFirst = on }

// SetKeepOrphans makes Load leave takes without their reservation in the
// ledger, as the store did before it kept redisstock_hold: deliberately
// wrong.
func (r *Reserver) SetKeepOrphans(on bool) { r.keepOrphans = on }

// SetIgnoreSequence makes the writer apply events without checking the
// bucket's sequence, as it did before it kept one: deliberately wrong.
func (w *Writer) SetIgnoreSequence(on bool) { w.ignoreSeq = on }

// WentBack returns how many times the writer found Redis behind PostgreSQL.
func (w *Writer) WentBack() int64 { return w.wentBack.Load() }

// SetUnpinned makes Load and the writer's steps send each command over
// whichever connection the pool hands out, as the store did before it
// pinned one: deliberately wrong.
func (r *Reserver) SetUnpinned(on bool) { r.unpinned = on }

// SetIgnoreEpoch makes the writer apply the events of a Redis whose marker
// carries another Load's epoch than the one PostgreSQL follows:
// deliberately wrong.
func (r *Reserver) SetIgnoreEpoch(on bool) { r.ignoreEpoch = on }

// SetBeforeLoadStock sets a hook that runs in Load after the wipe and
// before the stock is written.
func (r *Reserver) SetBeforeLoadStock(f func()) { r.beforeLoadStock = f }

// SetLoadNoWait makes Load commit without waiting for WaitReplicas
// replicas: deliberately wrong.
func (r *Reserver) SetLoadNoWait(on bool) { r.loadNoWait = on }

// SetNoHints makes Commit and Release settle and finish in two calls, as
// for a reservation another process reserved.
func (r *Reserver) SetNoHints(on bool) { r.noHints = on }

// PutHint plants the lines Commit and Release take for id's: a wrong one
// stands for a guess gone stale.
func (r *Reserver) PutHint(id string, lines []inventory.Line) { r.hints.put(id, lines, "") }

// SetNoFallover makes a line refused by its stock bucket refused, however
// many units the SKU's other buckets hold: deliberately wrong.
func (r *Reserver) SetNoFallover(on bool) { r.noFallover = on }

// SetGiveToFirst makes units given back return to bucket 0 of their SKU:
// deliberately wrong.
func (r *Reserver) SetGiveToFirst(on bool) { r.giveToFirst = on }

// BucketUnits returns the available units of each stock bucket of sku.
func (r *Reserver) BucketUnits(ctx context.Context, sku string) ([]int64, error) {
	_, avail, err := r.bucketUnits(ctx, sku)
	return avail, err
}

// StartBucket returns the stock bucket a one-line cart of sku under id
// takes from first.
func (r *Reserver) StartBucket(id, sku string) int {
	_, j := splitSKU(r.place(id, []inventory.Line{{SKU: sku, Qty: 1}})[0].SKU)
	return j
}

// SetLoadNoSplit makes Load leave out the number of stock buckets of split
// SKUs: deliberately wrong.
func (r *Reserver) SetLoadNoSplit(on bool) { r.loadNoSplit = on }

// SetMoveCut makes a move between stock buckets end after step ("out":
// the units taken and the move recorded; "in": the units added too) as a
// crash would; "" lets moves finish.
func (r *Reserver) SetMoveCut(step string) { r.moveCut = step }

// SetPlainMove makes a move two AddStocks of the buckets, with no record
// of the units on the way: deliberately wrong.
func (r *Reserver) SetPlainMove(on bool) { r.plainMove = on }

// SetPlainMoveIn makes the finish of a move add its units whatever its
// token says: deliberately wrong.
func (r *Reserver) SetPlainMoveIn(on bool) { r.plainMoveIn = on }

// MoveRecords returns how many moves between stock buckets are recorded
// and not finished.
func (r *Reserver) MoveRecords(ctx context.Context) (int, error) {
	n := 0
	for b := range r.buckets {
		ids, err := r.rdb.ZRange(ctx, r.dueKey(b), 0, -1).Result()
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			if len(id) > 0 && id[0] == moveMember[0] {
				n++
			}
		}
	}
	return n, nil
}
