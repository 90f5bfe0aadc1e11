package redisstock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Coalescing. Concurrent operations on one bucket queue in the bucket's
// lane; a caller that finds a flusher slot free becomes the leader and
// sends what is queued as one script call ("multi"), which runs the
// operations one after another, each as it would run alone, and returns
// every reply. While a call is in flight the next callers queue, and the
// next leader takes them all. No goroutine of its own: leaders are callers.
//
// Each operation in a batch keeps its own outcome, and stays idempotent
// per reservation ID: a batch go-redis sends again after a lost reply runs
// every operation again, and each finds its effect already there. A batch
// holds keys of one bucket only, one hash slot, so Redis Cluster takes it.

// flushTimeout bounds one batch in flight: it carries other callers'
// operations, so no single caller's context may cut it short.
const flushTimeout = 5 * time.Second

// lane is the queue of one bucket.
type lane struct {
	mu       sync.Mutex
	queue    []*call
	flushing int // flusher slots taken: leaders flushing or told to
}

// call is one operation queued in a lane.
type call struct {
	ctx  context.Context // the caller's
	keys []string
	args []any

	// Set by the flush before done is closed.
	rep []string
	err error

	done chan struct{} // closed when rep and err are set
	lead chan struct{} // a token when the caller is to flush

	// Under lane.mu.
	taken bool // in a batch: its outcome is that batch's
	slot  bool // holds a flusher slot
}

// run runs one operation of the script on bucket b, coalesced with the
// operations other callers run on b at the same time. A context that ends
// while the call is queued takes it out: the error is the context's, and
// nothing changed. One that ends while its batch is in flight gets an
// error that wraps the context's (the operation may have run).
func (r *Reserver) run(ctx context.Context, b int, keys []string, args ...any) ([]string, error) {
	if r.maxBatch <= 1 {
		return r.exec(ctx, keys, args...)
	}
	if err := ctx.Err(); err != nil {
		return nil, &notSentError{err}
	}
	c := &call{ctx: ctx, keys: keys, args: args, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	l := &r.lanes[b]
	l.mu.Lock()
	l.queue = append(l.queue, c)
	if l.flushing < r.flushers {
		l.flushing++
		c.slot = true
		l.mu.Unlock()
		return r.lead(ctx, l, c)
	}
	l.mu.Unlock()
	select {
	case <-c.done:
		l.mu.Lock()
		l.handOff(c)
		l.mu.Unlock()
		return c.rep, c.err
	case <-c.lead:
		return r.lead(ctx, l, c)
	case <-ctx.Done():
		return l.abandon(ctx, c, r.sendAbandoned)
	}
}

// abandon is run's answer for c when ctx ended before its outcome came. A
// call not yet in a batch leaves the queue (with wrong set it stays, to be
// sent later: a deliberately wrong batcher).
func (l *lane) abandon(ctx context.Context, c *call, wrong bool) ([]string, error) {
	l.mu.Lock()
	l.handOff(c)
	if !c.taken {
		if !wrong {
			l.remove(c)
		}
		l.mu.Unlock()
		return nil, &notSentError{ctx.Err()}
	}
	l.mu.Unlock()
	select {
	case <-c.done:
		return c.rep, c.err
	default:
	}
	return nil, fmt.Errorf("redisstock: the context ended while the batch carrying the call was in flight: %w", ctx.Err())
}

// lead flushes batches from the lane, holding a flusher slot, until c is
// decided, then hands the slot on.
func (r *Reserver) lead(ctx context.Context, l *lane, c *call) ([]string, error) {
	for {
		l.mu.Lock()
		if !c.taken && ctx.Err() != nil {
			l.mu.Unlock()
			return l.abandon(ctx, c, r.sendAbandoned)
		}
		batch := l.take(r.maxBatch, r.sendAbandoned)
		if len(batch) == 0 {
			// c is in a batch another leader sent, or its context ended.
			l.handOff(c)
			l.mu.Unlock()
			select {
			case <-c.done:
				return c.rep, c.err
			case <-ctx.Done():
				return l.abandon(ctx, c, r.sendAbandoned)
			}
		}
		l.mu.Unlock()
		r.flush(ctx, c, batch)
		select {
		case <-c.done:
			l.mu.Lock()
			l.handOff(c)
			l.mu.Unlock()
			return c.rep, c.err
		default: // c did not fit in that batch
		}
	}
}

// take removes up to max calls from the queue, in arrival order, leaving
// those whose context has ended to their callers (all, with wrong set).
// Called with mu held.
func (l *lane) take(max int, wrong bool) []*call {
	var batch []*call
	keep := l.queue[:0]
	for _, q := range l.queue {
		if len(batch) < max && (wrong || !q.abandoned()) {
			q.taken = true
			batch = append(batch, q)
			continue
		}
		keep = append(keep, q)
	}
	clear(l.queue[len(keep):])
	l.queue = keep
	return batch
}

// remove takes c out of the queue. Called with mu held.
func (l *lane) remove(c *call) {
	for i, q := range l.queue {
		if q == c {
			copy(l.queue[i:], l.queue[i+1:])
			l.queue[len(l.queue)-1] = nil
			l.queue = l.queue[:len(l.queue)-1]
			return
		}
	}
}

// handOff gives c's flusher slot, if it holds one, to the first queued
// caller that holds none, or frees it. Called with mu held.
func (l *lane) handOff(c *call) {
	if !c.slot {
		return
	}
	c.slot = false
	for _, q := range l.queue {
		if !q.slot && !q.taken && q != c {
			q.slot = true
			q.lead <- struct{}{}
			return
		}
	}
	l.flushing--
}

// flush sends batch, led by the call c whose context is ctx, and closes the
// done channel of every call in it with its reply or error set. A batch of
// one is the operation alone, under its caller's context when that is the
// leader's.
func (r *Reserver) flush(ctx context.Context, c *call, batch []*call) {
	defer func() {
		for _, q := range batch {
			close(q.done)
		}
	}()
	if len(batch) == 1 && batch[0] == c {
		c.rep, c.err = r.exec(ctx, c.keys, c.args...)
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	if len(batch) == 1 {
		q := batch[0]
		q.rep, q.err = r.exec(fctx, q.keys, q.args...)
		return
	}
	nk, na := 0, 2
	for _, q := range batch {
		nk += len(q.keys)
		na += 2 + len(q.args)
	}
	keys := make([]string, 0, nk)
	args := make([]any, 0, na)
	args = append(args, "multi", len(batch))
	for _, q := range batch {
		keys = append(keys, q.keys...)
		args = append(args, len(q.keys), len(q.args))
		args = append(args, q.args...)
	}
	writes := false
	for _, q := range batch {
		op, _ := q.args[0].(string)
		writes = writes || !reads[op]
	}
	v, err := r.eval(fctx, writes, keys, args)
	var list []any
	if err == nil {
		var ok bool
		if list, ok = v.([]any); !ok || len(list) != len(batch) {
			err = fmt.Errorf("redisstock: a batch of %d operations got a reply of %T", len(batch), v)
		}
	}
	if err != nil {
		var re redis.Error
		if errors.As(err, &re) {
			// The script failed part way: the operations before the failure
			// ran. The error must not read as one that changed nothing.
			err = fmt.Errorf("redisstock: a batch of %d operations failed part way (some may have run): %s", len(batch), err.Error())
		}
		for _, q := range batch {
			q.err = err
		}
		return
	}
	for i, q := range batch {
		q.rep, q.err = strs(list[i], q.keys[0])
	}
}

// abandoned reports whether the context of c's caller has ended: it is
// not sent, and its caller takes it out of the queue.
func (c *call) abandoned() bool { return c.ctx.Err() != nil }

// notSentError is the error of a call whose caller's context ended before
// the call was sent: nothing changed, and the caller gets the context's
// error as it is.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }
