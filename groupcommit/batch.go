package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
)

type kind int8

// The kinds of call, numbered as the flush function's result rows are.
const (
	kindReserve kind = 1
	kindCommit  kind = 2
	kindRelease kind = 3
	kindExpire  kind = 4
)

var kindOps = [...]string{kindReserve: "reserve", kindCommit: "commit", kindRelease: "release", kindExpire: "expire"}

// outcome is what a flush decided for one call.
type outcome int8

const (
	// outcomeDone: reserved, committed, released; or the expiry ran.
	outcomeDone outcome = iota
	// outcomeRefused: a reservation refused (err says why).
	outcomeRefused
	// outcomeTaken: the reservation ID was recorded before; the caller
	// looks it up.
	outcomeTaken
	// outcomeNotHeld: a commit or release of a reservation that was not
	// held and active, or a release of one with a line counted against a
	// buyer's limit; the caller settles it on its own.
	outcomeNotHeld
	// outcomeAlone: a reservation with a line of a SKU split into stock
	// buckets that no bucket the flush could take has in full, while the
	// SKU as a whole has the units, or with a line of a SKU with a limit
	// per buyer; the caller takes it on its own, with the shared step,
	// which gathers the units and decides the limit. An expiry that left
	// due holds with a buyer held; the caller expires them on its own.
	outcomeAlone
)

// call is one caller's request, queued for a flush.
type call struct {
	kind  kind
	id    string           // reserve, commit, release
	lines []inventory.Line // reserve: sorted by SKU
	ttl   time.Duration    // reserve
	buyer string           // reserve: Request.Buyer, "" for none
	limit int              // expire

	// Set by the flush before done is closed.
	outcome outcome
	err     error     // the flush failed: submit returns it
	refusal error     // outcomeRefused: why
	exp     time.Time // reserve: expiry recorded
	expired int       // expire: holds this call expired

	done chan struct{} // closed when the outcome is set
	lead chan struct{} // a token when the caller is to flush

	// Under Reserver.mu.
	taken bool // in a flush: its outcome is that flush's
	slot  bool // holds a flusher slot: flushing, or sent a token on lead to
}

// submit queues c and returns once a flush has decided it, flushing itself
// when a flusher slot is free or handed to it; beside a flush in flight, a
// further slot is taken only once splitAt calls are queued (see minSplit).
// A context that ends while c is queued removes it, and submit returns
// ctx's error: nothing changed.
// Once c is in a flush, the outcome is that flush's; a context that ends
// then gets an *inventory.OutcomeUnknownError. An error submit returns is
// the call's answer; otherwise c.outcome and c.err are.
func (r *Reserver) submit(ctx context.Context, c *call) error {
	c.done = make(chan struct{})
	c.lead = make(chan struct{}, 1)
	r.mu.Lock()
	if len(r.queue) >= r.maxPending {
		r.mu.Unlock()
		r.stats.contended.Add(1)
		return fmt.Errorf("groupcommit: %s: %w: %d calls are waiting for a flush", kindOps[c.kind], inventory.ErrContended, r.maxPending)
	}
	r.queue = append(r.queue, c)
	if r.flushing == 0 || r.flushing < r.flushers && len(r.queue) >= r.splitAt {
		r.flushing++
		c.slot = true
		r.mu.Unlock()
		return r.lead(ctx, c)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		// Decided by another flush before it could use a slot handed to it.
		r.mu.Lock()
		r.handOff(c)
		r.mu.Unlock()
		return c.err
	case <-c.lead:
		return r.lead(ctx, c)
	case <-ctx.Done():
		return r.abandon(ctx, c)
	}
}

// abandon is submit's answer for c when ctx ended before its outcome came.
func (r *Reserver) abandon(ctx context.Context, c *call) error {
	r.mu.Lock()
	r.handOff(c) // a slot it was given goes to the next caller
	if !c.taken {
		r.remove(c)
		r.mu.Unlock()
		return ctx.Err()
	}
	r.mu.Unlock()
	select {
	case <-c.done: // decided meanwhile: that is the answer
		return c.err
	default:
	}
	return &inventory.OutcomeUnknownError{Op: kindOps[c.kind], ID: c.id,
		Err: fmt.Errorf("groupcommit: the context ended while the flush carrying the call was in flight: %w", ctx.Err())}
}

// lead flushes batches from the queue, holding a flusher slot, until c is
// decided, then hands the slot to the first caller still waiting.
//
// It takes a connection before it takes a batch, waiting on ctx: until a
// connection is there to send them at once, the calls stay queued, and one
// whose context ends leaves the queue with nothing sent and its context's
// error, the leader's own included. A server that cannot be reached fails
// the calls queued then, with nothing sent.
func (r *Reserver) lead(ctx context.Context, c *call) error {
	for {
		if r.maxWait > 0 {
			r.linger()
		} else {
			r.gather()
		}
		db, release, err := r.store.Acquire(ctx, kindOps[c.kind])
		if err != nil && ctx.Err() != nil {
			return r.abandon(ctx, c)
		}
		r.mu.Lock()
		batch := r.take()
		if len(batch) == 0 {
			// c is in a flush another leader sent: wait for it there.
			r.handOff(c)
			r.mu.Unlock()
			if release != nil {
				release()
			}
			select {
			case <-c.done:
				return c.err
			case <-ctx.Done():
				return r.abandon(ctx, c)
			}
		}
		r.mu.Unlock()
		if err != nil {
			r.fail(batch, err)
		} else {
			r.flush(db, batch)
			release()
		}
		select {
		case <-c.done:
			r.mu.Lock()
			r.handOff(c)
			r.mu.Unlock()
			return c.err
		default: // c did not fit in that flush
		}
	}
}

// linger waits up to maxWait for a full batch.
func (r *Reserver) linger() {
	deadline := time.Now().Add(r.maxWait)
	for {
		r.mu.Lock()
		n := len(r.queue)
		r.mu.Unlock()
		left := time.Until(deadline)
		if n >= r.maxBatch || left <= 0 {
			return
		}
		time.Sleep(min(left, 50*time.Microsecond))
	}
}

// gatherRounds bounds the yields of gather.
const gatherRounds = 8

// gather lets callers that are about to queue do so before a batch is taken:
// it yields the processor while the queue keeps growing, up to gatherRounds
// times. The callers the last flush answered queue their next calls within
// a few yields, so the next batch carries them instead of leaving them to
// the flush after it; when nothing arrives it returns after one yield, and
// it never sleeps.
func (r *Reserver) gather() {
	r.mu.Lock()
	n := len(r.queue)
	r.mu.Unlock()
	for range gatherRounds {
		if n >= r.maxBatch {
			return
		}
		runtime.Gosched()
		r.mu.Lock()
		m := len(r.queue)
		r.mu.Unlock()
		if m == n {
			return
		}
		n = m
	}
}

// take removes the next batch from the queue, in arrival order: up to
// maxBatch calls, leaving for a later flush a call whose ID is already in
// the batch (so that each ID is decided once per flush, in order). Called
// with mu held.
func (r *Reserver) take() []*call {
	var batch []*call
	var ids map[string]struct{}
	keep := r.queue[:0]
	for _, q := range r.queue {
		if len(batch) < r.maxBatch {
			if q.kind == kindExpire {
				batch = append(batch, q)
				q.taken = true
				continue
			}
			if ids == nil {
				ids = make(map[string]struct{}, min(len(r.queue), r.maxBatch))
			}
			if _, dup := ids[q.id]; !dup {
				ids[q.id] = struct{}{}
				batch = append(batch, q)
				q.taken = true
				continue
			}
		}
		keep = append(keep, q)
	}
	clear(r.queue[len(keep):])
	r.queue = keep
	return batch
}

// remove takes c out of the queue. Called with mu held.
func (r *Reserver) remove(c *call) {
	for i, q := range r.queue {
		if q == c {
			copy(r.queue[i:], r.queue[i+1:])
			r.queue[len(r.queue)-1] = nil
			r.queue = r.queue[:len(r.queue)-1]
			return
		}
	}
}

// handOff gives c's flusher slot, if it holds one, to the first queued
// caller that holds none, or frees it: at once when another slot is taken
// and fewer than splitAt calls are queued, since that slot's holder hands
// it on in turn and the calls queued now join its next flush. Called with
// mu held.
func (r *Reserver) handOff(c *call) {
	if !c.slot {
		return
	}
	c.slot = false
	if r.flushing > 1 && len(r.queue) < r.splitAt {
		r.flushing--
		return
	}
	for _, q := range r.queue {
		if !q.slot && !q.taken && q != c {
			q.slot = true
			q.lead <- struct{}{}
			return
		}
	}
	r.flushing--
}

// maxFlushAttempts bounds the sends of one batch that the server refuses
// whole with a retryable error (a deadlock between batches of the same IDs,
// say).
const maxFlushAttempts = 4

// fail answers every call of batch, which nothing was sent for, with err, an
// error of pgstore.Store.Acquire, as each call's own.
func (r *Reserver) fail(batch []*call, err error) {
	for _, c := range batch {
		c.err = err
		var u *inventory.UnavailableError
		if errors.As(err, &u) {
			c.err = &inventory.UnavailableError{Op: kindOps[c.kind], Server: u.Server, Err: u.Err}
		}
		close(c.done)
	}
}

// flush applies batch in one statement, one round trip, on db, and closes
// the done channel of every call in it with its outcome set.
func (r *Reserver) flush(db pgstore.DB, batch []*call) {
	ctx, cancel := context.WithTimeout(context.Background(), r.flushTimeout)
	defer cancel()
	start := time.Now()
	var err error
	for attempt := 1; ; attempt++ {
		r.stats.flushes.Add(1)
		err = r.send(ctx, db, batch)
		if err == nil || attempt == maxFlushAttempts || !pgstore.Retryable(err) {
			break
		}
		r.stats.retries.Add(1)
	}
	r.stats.calls.Add(int64(len(batch)))
	r.stats.busyNs.Add(int64(time.Since(start)))
	for _, c := range batch {
		if err != nil {
			c.err = r.store.CommitError(ctx, kindOps[c.kind], c.id, err)
		}
		close(c.done)
	}
}

// args are the parameters of the flush function for one batch.
type args struct {
	now   time.Time
	rID   []string
	rExp  []time.Time
	rOff  []int32
	rBuy  []string
	lSKU  []int32
	lQty  []int64
	skus  []string
	cID   []string
	xID   []string
	limit int64

	reserves, commits, releases, expires []*call
}

func (r *Reserver) build(batch []*call) *args {
	if r.lifo { // a deliberately wrong order, for the tests to catch
		batch = slices.Clone(batch)
		slices.Reverse(batch)
	}
	a := &args{now: r.store.Now(), rID: []string{}, rExp: []time.Time{}, rOff: []int32{}, rBuy: []string{}, lSKU: []int32{}, lQty: []int64{},
		skus: []string{}, cID: []string{}, xID: []string{}}
	skuIdx := map[string]int32{}
	for _, c := range batch {
		switch c.kind {
		case kindReserve:
			a.reserves = append(a.reserves, c)
			c.exp = a.now.Add(c.ttl).Truncate(time.Microsecond)
			a.rID = append(a.rID, c.id)
			a.rExp = append(a.rExp, c.exp)
			a.rBuy = append(a.rBuy, c.buyer)
			a.rOff = append(a.rOff, int32(len(a.lSKU)+1))
			for _, l := range c.lines {
				k, ok := skuIdx[l.SKU]
				if !ok {
					a.skus = append(a.skus, l.SKU)
					k = int32(len(a.skus))
					skuIdx[l.SKU] = k
				}
				a.lSKU = append(a.lSKU, k)
				a.lQty = append(a.lQty, l.Qty)
			}
		case kindCommit:
			a.commits = append(a.commits, c)
			a.cID = append(a.cID, c.id)
		case kindRelease:
			a.releases = append(a.releases, c)
			a.xID = append(a.xID, c.id)
		case kindExpire:
			a.expires = append(a.expires, c)
			a.limit += int64(c.limit)
		}
	}
	a.rOff = append(a.rOff, int32(len(a.lSKU)+1))
	a.limit = min(a.limit, 1<<31-1)
	return a
}

// send runs the flush function once for batch and sets the outcome of every
// call from its result.
func (r *Reserver) send(ctx context.Context, db pgstore.DB, batch []*call) error {
	a := r.build(batch)
	for _, c := range batch {
		c.outcome, c.err, c.refusal = outcomeDone, nil, nil
	}
	for _, c := range a.commits {
		c.outcome = outcomeNotHeld
	}
	for _, c := range a.releases {
		c.outcome = outcomeNotHeld
	}
	rows, err := db.Query(ctx, r.flushSQL, a.rID, a.rExp, a.rOff, a.lSKU, a.lQty, a.skus, a.cID, a.now, a.xID, a.limit, r.home, a.rBuy)
	if err != nil {
		return err
	}
	defer rows.Close()
	expired := 0
	for rows.Next() {
		var k, out int16
		var idx int32
		var sku *string
		var avail *int64
		if err := rows.Scan(&k, &idx, &out, &sku, &avail); err != nil {
			return err
		}
		switch kind(k) {
		case kindReserve:
			c := a.reserves[idx-1]
			switch out {
			case 1:
				c.outcome = outcomeTaken
			case 2:
				c.outcome = outcomeRefused
				c.refusal = &inventory.InsufficientStockError{SKU: *sku, Requested: qtyOf(c.lines, *sku), Available: *avail}
			case 3:
				c.outcome = outcomeRefused
				c.refusal = &inventory.UnknownSKUError{SKU: *sku}
			case 5:
				c.outcome = outcomeAlone
			}
		case kindCommit:
			a.commits[idx-1].outcome = outcomeDone
		case kindRelease:
			a.releases[idx-1].outcome = outcomeDone
		case kindExpire:
			expired = int(*avail)
			if out == 5 {
				for _, c := range a.expires {
					c.outcome = outcomeAlone
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// The expired holds go to the callers in arrival order, each up to its
	// limit.
	for _, c := range a.expires {
		c.expired = min(c.limit, expired)
		expired -= c.expired
	}
	return nil
}

func qtyOf(lines []inventory.Line, sku string) int64 {
	for _, l := range lines {
		if l.SKU == sku {
			return l.Qty
		}
	}
	return 0
}
