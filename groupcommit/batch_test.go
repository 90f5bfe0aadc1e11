package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/groupcommit"
	"github.com/oversell/inventory/internal/leakcheck"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// gateSKU is the SKU a gate locks.
const gateSKU = "gate"

// open makes a migrated Reserver with opts (Schema filled in) on pool, in a
// schema of its own, with the gate SKU stocked.
func open(t *testing.T, pool *pgxpool.Pool, opts groupcommit.Options) (*groupcommit.Reserver, string) {
	t.Helper()
	schema := testsvc.Schema(t)
	opts.Schema = schema
	r, err := groupcommit.New(pool, &opts)
	require.NoError(t, err)
	require.NoError(t, r.Migrate(t.Context()))
	require.NoError(t, r.SetStock(t.Context(), gateSKU, 1_000_000))
	return r, schema
}

// gate holds the gate SKU's stock row locked from a transaction of its own,
// so that a flush reserving it waits inside the server, and every call
// queued meanwhile goes into the next flush, in arrival order.
type gate struct {
	t      *testing.T
	tx     pgx.Tx
	r      *groupcommit.Reserver
	result chan error
}

// closeGate locks the gate row and sends a flush that waits on it.
func closeGate(t *testing.T, r *groupcommit.Reserver, schema string) *gate {
	t.Helper()
	ctx := t.Context()
	tx, err := testsvc.Postgres(t).Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{schema, "stock"}.Sanitize()+" WHERE sku = $1 FOR UPDATE", gateSKU)
	require.NoError(t, err)
	g := &gate{t: t, tx: tx, r: r, result: make(chan error, 1)}
	before := r.Stats().Flushes
	go func() {
		_, err := r.Reserve(context.WithoutCancel(ctx), inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: gateSKU, Qty: 1}}})
		g.result <- err
	}()
	waitFor(t, "the gate's flush is sent", func() bool { st := r.Stats(); return st.Flushes > before && st.Pending == 0 })
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	return g
}

// open lets the gate's flush through and waits for it.
func (g *gate) open() {
	g.t.Helper()
	require.NoError(g.t, g.tx.Rollback(g.t.Context()))
	require.NoError(g.t, <-g.result)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting: "+what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queueInOrder starts the calls one by one, each queued before the next
// starts, and returns a function that waits for them all.
func queueInOrder(t *testing.T, r *groupcommit.Reserver, calls ...func()) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	base := r.Stats().Pending
	for i, call := range calls {
		wg.Go(call)
		waitFor(t, fmt.Sprintf("call %d is queued", i), func() bool { return r.Stats().Pending == base+i+1 })
	}
	return wg.Wait
}

// fifoRun queues one flush of reservations, commits and releases that
// compete for scarce stock and returns what each got, in order.
func fifoRun(t *testing.T, lifo bool) (outcomes []string, flushes int64) {
	ctx := t.Context()
	r, schema := open(t, testsvc.Postgres(t), groupcommit.Options{Flushers: 1})
	if lifo {
		groupcommit.DecideLastFirst(r)
	}
	require.NoError(t, r.SetStock(ctx, "a", 5))
	require.NoError(t, r.SetStock(ctx, "b", 5))
	held, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "b", Qty: 1}}})
	require.NoError(t, err)
	toRelease, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "b", Qty: 2}}})
	require.NoError(t, err)

	idA := strategytest.RandomID()
	reqs := []inventory.Request{
		{ID: idA, Lines: []inventory.Line{{SKU: "a", Qty: 3}}},                     // granted, 2 left
		{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 3}}}, // refused: 2 left
		{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "zz", Qty: 1}}},
		{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "b", Qty: 1}, {SKU: "a", Qty: 2}}}, // granted, a at 0
		{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}},                     // refused: 0 left
		{ID: idA, Lines: []inventory.Line{{SKU: "a", Qty: 3}}},                                         // the same ID: the next flush, A's reservation
	}
	outcomes = make([]string, len(reqs)+2)
	g := closeGate(t, r, schema)
	before := r.Stats().Flushes
	var calls []func()
	for i, req := range reqs {
		calls = append(calls, func() {
			res, err := r.Reserve(ctx, req)
			var short *inventory.InsufficientStockError
			switch {
			case errors.As(err, &short):
				outcomes[i] = fmt.Sprintf("insufficient %s %d", short.SKU, short.Available)
			case err != nil:
				outcomes[i] = strategytest.ErrorKind(err)
			default:
				outcomes[i] = "held " + res.State.String()
			}
		})
	}
	calls = append(calls,
		func() { outcomes[len(reqs)] = "commit " + strategytest.ErrorKind(r.Commit(ctx, held.ID)) },
		func() { outcomes[len(reqs)+1] = "release " + strategytest.ErrorKind(r.Release(ctx, toRelease.ID)) },
	)
	wait := queueInOrder(t, r, calls...)
	g.open()
	wait()
	flushes = r.Stats().Flushes - before
	return outcomes, flushes
}

func TestBatchDecidesInArrivalOrder(t *testing.T) {
	t.Parallel()
	want := []string{
		"held held", `insufficient a 2`, "unknown_sku", "held held", `insufficient a 0`, "held held",
		"commit ", "release ",
	}
	got, flushes := fifoRun(t, false)
	assert.Equal(t, want, got, "each call's own outcome, decided in arrival order")
	assert.Equal(t, int64(2), flushes, "one flush for all, and one for the repeated ID")

	t.Run("LastFirstIsCaught", func(t *testing.T) {
		t.Parallel()
		got, _ := fifoRun(t, true)
		assert.NotEqual(t, want, got, "a batch decided last call first gives other outcomes")
	})
}

func TestFullQueueFailsFastWithContended(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, schema := open(t, testsvc.Postgres(t), groupcommit.Options{Flushers: 1, MaxPending: 2})
	require.NoError(t, r.SetStock(ctx, "a", 10))
	g := closeGate(t, r, schema)
	req := func() inventory.Request {
		return inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}}
	}
	var errs [2]error
	wait := queueInOrder(t, r,
		func() { _, errs[0] = r.Reserve(ctx, req()) },
		func() { errs[1] = r.Commit(ctx, "nobody") },
	)
	turned := req()
	_, err := r.Reserve(ctx, turned)
	require.ErrorIs(t, err, inventory.ErrContended, "a third call finds the queue full")
	assert.ErrorIs(t, r.Release(ctx, "whoever"), inventory.ErrContended)
	g.open()
	wait()
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], inventory.ErrNotFound)
	_, err = r.Lookup(ctx, turned.ID)
	assert.ErrorIs(t, err, inventory.ErrNotFound, "the refused call changed nothing")
	n, err := r.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(9), n)
	assert.Equal(t, int64(2), r.Stats().Contended)
}

func TestContextEndedWhileQueuedChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, schema := open(t, testsvc.Postgres(t), groupcommit.Options{Flushers: 1})
	require.NoError(t, r.SetStock(ctx, "a", 10))
	g := closeGate(t, r, schema)
	cctx, cancel := context.WithCancel(ctx)
	quit := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 4}}}
	stay := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}}
	var quitErr, stayErr error
	wait := queueInOrder(t, r,
		func() { _, quitErr = r.Reserve(cctx, quit) }, // first in the queue: the one the slot goes to next
		func() { _, stayErr = r.Reserve(ctx, stay) },
	)
	cancel()
	waitFor(t, "the cancelled call leaves the queue", func() bool { return r.Stats().Pending == 1 })
	g.open()
	wait()
	require.ErrorIs(t, quitErr, context.Canceled)
	assert.NotErrorIs(t, quitErr, inventory.ErrOutcomeUnknown, "it never left the queue")
	require.NoError(t, stayErr, "the call behind it is flushed")
	_, err := r.Lookup(ctx, quit.ID)
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	n, err := r.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(9), n)
	assert.Zero(t, r.Stats().InFlight, "every flusher slot is free again")
}

// splitRun holds a flush in flight at the gate, queues a few reservations
// of another SKU behind it, and reports how many were decided while the
// gate held; then, unless always, queues more up to minSplit calls and
// checks that those start a flush of their own beside the held one.
func splitRun(t *testing.T, always bool) (decidedWhileHeld int64) {
	ctx := t.Context()
	r, schema := open(t, testsvc.Postgres(t), groupcommit.Options{Flushers: 2})
	if always {
		groupcommit.SplitAlways(r)
	}
	require.NoError(t, r.SetStock(ctx, "a", 1000))
	g := closeGate(t, r, schema)
	before := r.Stats().Flushes
	var decided atomic.Int64
	var wg sync.WaitGroup
	reserve := func() {
		wg.Go(func() {
			_, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
			assert.NoError(t, err)
			decided.Add(1)
		})
	}
	const few = 3
	for range few {
		reserve()
	}
	waitFor(t, "the few calls are queued or decided", func() bool { return r.Stats().Pending+int(decided.Load()) == few })
	if always {
		// A flush of them beside the held one is sent at once; a loaded
		// machine may take a while to answer it.
		for deadline := time.Now().Add(10 * time.Second); decided.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	} else {
		time.Sleep(200 * time.Millisecond) // time enough for a flush of them to be sent and answered
	}
	decidedWhileHeld = decided.Load()
	if !always && decidedWhileHeld == 0 {
		assert.Equal(t, before, r.Stats().Flushes, "no flush beside the held one for a few calls")
		assert.Equal(t, 1, r.Stats().InFlight)
		for range groupcommit.MinSplit - few {
			reserve()
		}
		waitFor(t, "enough calls to split are decided beside the held flush", func() bool { return decided.Load() == groupcommit.MinSplit })
		assert.Equal(t, before+1, r.Stats().Flushes, "one flush beside the held one took them all")
	}
	g.open()
	wg.Wait()
	assert.Zero(t, r.Stats().InFlight, "every flusher slot is free again")
	n, err := r.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, 1000-decided.Load(), n)
	return decidedWhileHeld
}

// Beside a flush in flight, a further one starts only for a batch worth its
// fixed cost: a few calls wait for the next flush, which takes them all, and
// minSplit calls start one at once.
func TestFewCallsWaitForTheFlushInFlight(t *testing.T) {
	t.Parallel()
	assert.Zero(t, splitRun(t, false), "a few calls were flushed beside the held flush")

	t.Run("SplittingForAnyCallIsCaught", func(t *testing.T) {
		t.Parallel()
		assert.NotZero(t, splitRun(t, true), "a flush for any call queued decides them while the gate holds")
	})
}

// The scheme starts no goroutine of its own: once the last call has
// returned, none of the goroutines its calls started is left.
func TestNoGoroutineLeftAfterTheLastCall(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 4})
	r, _ := open(t, pool, groupcommit.Options{})
	require.NoError(t, r.SetStock(ctx, "a", 1000))
	_, err := r.Available(ctx, "a") // warm the pool before counting goroutines
	require.NoError(t, err)
	scope := leakcheck.New()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			scope.Do(ctx, func(ctx context.Context) {
				for range 10 {
					res, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
					if assert.NoError(t, err) {
						assert.NoError(t, r.Release(ctx, res.ID))
					}
					_, err = r.ExpireDue(ctx, 10)
					assert.NoError(t, err)
				}
			})
		})
	}
	wg.Wait()
	st := r.Stats()
	assert.Zero(t, st.Pending)
	assert.Zero(t, st.InFlight)
	t.Logf("%d flushes carried %d calls (mean batch %.1f)", st.Flushes, st.Calls, st.MeanBatch())
	scope.Check(t, 5*time.Second)
	n, err := r.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(1000), n)
}

func TestOptions(t *testing.T) {
	pool := testsvc.Postgres(t)
	_, err := groupcommit.New(pool, &groupcommit.Options{MaxBatch: -1})
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	_, err = groupcommit.New(pool, &groupcommit.Options{Schema: string(make([]byte, 64))})
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	_, err = groupcommit.New(nil, nil)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	r, err := groupcommit.New(pool, nil)
	require.NoError(t, err)
	assert.Len(t, r.Metrics(), 7)
}

// A batch whose requests all fit is granted whole, counting the units its
// releases give back; a request for a SKU that is not stocked is refused
// however well the others fit; one unit more than the stock refuses the last
// request in arrival order.
func TestBatchThatFitsIsGrantedWhole(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, schema := open(t, testsvc.Postgres(t), groupcommit.Options{Flushers: 1})
	line := func(sku string, qty int64) []inventory.Line { return []inventory.Line{{SKU: sku, Qty: qty}} }
	for _, tc := range []struct {
		name  string
		lines [][]inventory.Line
		want  []string
		left  int64
	}{
		{"Exactly", [][]inventory.Line{line("a", 3), line("a", 4)}, []string{"held", "held"}, 0},
		{"ExactlyBesideAnUnknownSKU", [][]inventory.Line{line("a", 3), line("nowhere", 1), line("a", 4)}, []string{"held", "unknown_sku", "held"}, 0},
		{"OneUnitMore", [][]inventory.Line{line("a", 3), line("a", 5)}, []string{"held", "insufficient"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, r.SetStock(ctx, "a", 7))
			back, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: line("a", 2)})
			require.NoError(t, err) // 5 left; 7 once the batch releases it
			got := make([]string, len(tc.lines))
			var released error
			calls := []func(){func() { released = r.Release(ctx, back.ID) }}
			for i, lines := range tc.lines {
				calls = append(calls, func() {
					_, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: lines})
					got[i] = "held"
					if err != nil {
						got[i] = strategytest.ErrorKind(err)
					}
				})
			}
			g := closeGate(t, r, schema)
			wait := queueInOrder(t, r, calls...)
			g.open()
			wait()
			require.NoError(t, released)
			assert.Equal(t, tc.want, got, "outcomes in arrival order")
			n, err := r.Available(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, tc.left, n, "available after the batch")
			_, err = r.Available(ctx, "nowhere")
			assert.ErrorIs(t, err, inventory.ErrUnknownSKU, "the batch stocked no SKU")
		})
	}
}
