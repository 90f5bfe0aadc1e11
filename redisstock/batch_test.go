package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// waitQueued waits until n calls wait in bucket b's lane.
func waitQueued(t *testing.T, r *redisstock.Reserver, b, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return r.Queued(b) == n }, 10*time.Second, time.Millisecond, "%d calls queue", n)
}

// cancelWhileQueued queues a Reserve behind batches in flight, cancels it
// there, lets the lane go, and returns the Reserve's error and the units
// of "a" left afterwards (10 before).
func cancelWhileQueued(t *testing.T, wrong bool) (error, int64) {
	ctx := t.Context()
	in := setup(ctx, t, nil, nil)
	in.SetSendAbandoned(wrong)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	release := in.HoldLane(0)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := in.Reserve(cctx, req(strategytest.RandomID(), line("a", 3)))
		done <- err
	}()
	waitQueued(t, in.Reserver, 0, 1)
	cancel()
	err := <-done
	release()
	// A call behind it flushes the lane: whatever is queued goes now.
	_, rerr := in.Reserve(ctx, req(strategytest.RandomID(), line("a", 1)))
	require.NoError(t, rerr)
	n, aerr := in.Available(ctx, "a")
	require.NoError(t, aerr)
	return err, n + 1
}

// TestCancelWhileQueuedChangesNothing: a caller whose context ends while
// its call waits for a batch gets the context's error, and the call is
// never sent.
func TestCancelWhileQueuedChangesNothing(t *testing.T) {
	t.Parallel()
	err, n := cancelWhileQueued(t, false)
	assert.ErrorIs(t, err, context.Canceled)
	var unknown *inventory.OutcomeUnknownError
	assert.False(t, errors.As(err, &unknown), "nothing was sent: the outcome is known")
	assert.Equal(t, int64(10), n, "the cancelled call took nothing")
}

// TestCancelWhileQueuedCatchesABatcherThatSendsIt shows the check above
// failing for a batcher that answers the cancelled caller but keeps its
// call queued and sends it later.
func TestCancelWhileQueuedCatchesABatcherThatSendsIt(t *testing.T) {
	t.Parallel()
	err, n := cancelWhileQueued(t, true)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, int64(7), n, "the wrong batcher took the units of a call whose caller was told it failed")
}

// batchResult is the answer of one Reserve of a batch.
type batchResult struct {
	res inventory.Reservation
	err error
}

// reserveAsOneBatch queues reservations on in (stock "a" 5) that the stock
// can serve only in part, sends them as one batch, and returns each
// answer, in order, and the units of "a" left.
func reserveAsOneBatch(t *testing.T, in *instance) ([]batchResult, int64) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, in.SetStock(ctx, "a", 5))
	release := in.HoldLane(0)
	reqs := []inventory.Request{
		req("b1", line("a", 2)), req("b2", line("a", 2)), req("b1", line("a", 2)),
		req("b1", line("a", 1)), req("b3", line("a", 2)), req("b4", line("a", 1)),
	}
	out := make([]batchResult, len(reqs))
	var wg sync.WaitGroup
	for i, rq := range reqs {
		wg.Go(func() {
			res, err := in.Reserve(ctx, rq)
			out[i] = batchResult{res, err}
		})
		waitQueued(t, in.Reserver, 0, i+1) // in this order
	}
	release()
	wg.Wait()
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	return out, n
}

// TestBatchKeepsEachOutcome sends reservations the stock can serve only
// in part as one batch, and finds each answered on its own: the first
// ones granted, the rest refused, the duplicate given the first's
// reservation, the conflicting one refused, and a smaller one after the
// refusal granted.
func TestBatchKeepsEachOutcome(t *testing.T) {
	t.Parallel()
	out, n := reserveAsOneBatch(t, setup(t.Context(), t, nil, nil))
	require.NoError(t, out[0].err)
	require.NoError(t, out[1].err)
	require.NoError(t, out[2].err, "the same request again")
	assert.Equal(t, out[0].res, out[2].res)
	assert.ErrorIs(t, out[3].err, inventory.ErrConflict)
	assert.ErrorIs(t, out[4].err, inventory.ErrInsufficientStock)
	require.NoError(t, out[5].err)
	assert.Equal(t, int64(0), n)
}

// TestBatchKeepsEachOutcomeCatchesWrongBatches runs the check above on
// deliberately wrong batch scripts: one whose stock check reads Redis
// instead of the units the batch's earlier requests left (so every
// request sees the stock as the batch found it), and one that answers
// every request after a refusal with that refusal.
func TestBatchKeepsEachOutcomeCatchesWrongBatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, old, wrong string }{
		{"StaleStock", "local s = stockOf(K[first + k - 1])\n", "local s = stockOf(K[first + k - 1])\n    local h = redis.call('HGET', K[first + k - 1], 'a')\n    if s then s = {a = tonumber(h), l = 0} end\n"},
		{"RefusalSpreads", "    out[j] = dispatch()\n", "    out[j] = dispatch()\n    if j > 1 and out[j-1][1] == 'short' then out[j] = out[j-1] end\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, redisstock.ScriptSource, tc.old)
			in := setupBare(t.Context(), t, nil, nil)
			in.SetScriptSource(strings.Replace(redisstock.ScriptSource, tc.old, tc.wrong, 1))
			out, n := reserveAsOneBatch(t, in)
			switch tc.name {
			case "StaleStock":
				assert.NoError(t, out[4].err, "the wrong batch granted what the stock could not serve")
				assert.Equal(t, int64(-2), n, "and oversold")
			case "RefusalSpreads":
				assert.ErrorIs(t, out[5].err, inventory.ErrInsufficientStock, "the wrong batch refused a request the stock could serve")
				assert.Equal(t, int64(0), n, "and took its units all the same")
			}
		})
	}
}

// TestLostBatchReplyAppliesEachOnce drops the reply of a batch of
// reservations: go-redis sends the batch again, and every reservation in
// it takes its units once.
func TestLostBatchReplyAppliesEachOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p, c := proxied(t)
	in := setup(ctx, t, c, &redisstock.Options{})
	require.NoError(t, in.SetStock(ctx, "a", 100))
	release := in.HoldLane(0)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = in.Reserve(ctx, req(fmt.Sprintf("lost-%d", i), line("a", int64(i+1))))
		})
	}
	waitQueued(t, in.Reserver, 0, len(errs))
	dropReply(p, "multi")
	release()
	wg.Wait()
	require.Equal(t, 1, p.Fired(), "the batch's reply was dropped")
	for _, err := range errs {
		require.NoError(t, err)
	}
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(100-15), n, "each reservation took its units once")
}
