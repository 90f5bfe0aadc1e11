package inventory_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/strategy/strategytest"
)

// countingExpirer records the calls made to an Expirer and what they
// returned. It can be told to fail its first calls.
type countingExpirer struct {
	inventory.Expirer
	failFirst int64 // calls that fail before any reaches Expirer

	calls   atomic.Int64
	expired atomic.Int64
	mu      sync.Mutex
	limits  []int
}

var errSweepBroken = errors.New("expirer broken")

func (c *countingExpirer) ExpireDue(ctx context.Context, limit int) (int, error) {
	call := c.calls.Add(1)
	c.mu.Lock()
	c.limits = append(c.limits, limit)
	c.mu.Unlock()
	if call <= c.failFirst {
		return 0, fmt.Errorf("call %d: %w", call, errSweepBroken)
	}
	n, err := c.Expirer.ExpireDue(ctx, limit)
	c.expired.Add(int64(n))
	return n, err
}

func (c *countingExpirer) seenLimits() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.limits...)
}

// sweepStore is a memory store on a manual clock with due holds o0..o{due-1}
// of one unit of "a" each, committed holds that are just as old, and holds
// that are not due yet.
type sweepStore struct {
	*memory.Reserver
	clk                   *strategytest.Clock
	due, committed, fresh int
}

func newSweepStore(t *testing.T, due, committed, fresh int) *sweepStore {
	t.Helper()
	ctx := context.Background()
	clk := strategytest.NewClock()
	r := memory.New(&memory.Options{Now: clk.Now})
	require.NoError(t, r.SetStock(ctx, "a", int64(due+committed+fresh)))
	hold := func(id string, ttl time.Duration) {
		_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: 1}}, TTL: ttl})
		require.NoError(t, err)
	}
	for i := range due {
		hold(fmt.Sprintf("o%d", i), time.Duration(1+i%5)*time.Second)
	}
	for i := range committed {
		id := fmt.Sprintf("c%d", i)
		hold(id, time.Second)
		require.NoError(t, r.Commit(ctx, id))
	}
	for i := range fresh {
		hold(fmt.Sprintf("f%d", i), time.Hour)
	}
	clk.Advance(time.Minute)
	return &sweepStore{Reserver: r, clk: clk, due: due, committed: committed, fresh: fresh}
}

// requireSwept checks that exactly the due holds were expired.
func (s *sweepStore) requireSwept(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	avail, err := s.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(s.due), avail, "the units of due holds are back, no more")
	for i := range s.due {
		requireState(t, s.Reserver, fmt.Sprintf("o%d", i), inventory.Expired)
	}
	for i := range s.committed {
		requireState(t, s.Reserver, fmt.Sprintf("c%d", i), inventory.Committed)
	}
	for i := range s.fresh {
		requireState(t, s.Reserver, fmt.Sprintf("f%d", i), inventory.Held)
	}
}

func requireState(t *testing.T, r *memory.Reserver, id string, want inventory.State) {
	t.Helper()
	res, err := r.Lookup(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, want, res.State, "state of %s", id)
}

// logRecord is one line of slog's JSON output.
type logRecord struct {
	Level    string `json:"level"`
	Msg      string `json:"msg"`
	Count    int    `json:"count"`
	Error    string `json:"error"`
	Failures int    `json:"failures"`
	Reason   string `json:"reason"`
}

// syncBuffer is a bytes.Buffer safe to write from a sweeper's goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) records(t *testing.T) []logRecord {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logRecord
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var rec logRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "log line %s", sc.Text())
		out = append(out, rec)
	}
	return out
}

func newLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestSweeperSweepExpiresDueHoldsInBatches(t *testing.T) {
	for _, tc := range []struct {
		name      string
		due       int
		wantCalls []int // the count each call returns
	}{
		{"PartialLastBatch", 23, []int{5, 5, 5, 5, 3}},
		{"FullLastBatch", 20, []int{5, 5, 5, 5, 0}},
		{"NothingDue", 0, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSweepStore(t, tc.due, 7, 4)
			exp := &countingExpirer{Expirer: s}
			var logs syncBuffer
			sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{BatchSize: 5, Logger: newLogger(&logs)})

			n, err := sw.Sweep(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tc.due, n)
			assert.Equal(t, int64(len(tc.wantCalls)), exp.calls.Load(), "calls to ExpireDue")
			for _, limit := range exp.seenLimits() {
				assert.Equal(t, 5, limit, "every call asks for one batch")
			}
			s.requireSwept(t)

			recs := logs.records(t)
			if tc.due == 0 {
				assert.Empty(t, recs, "a sweep that expired nothing logs nothing")
			} else if assert.Len(t, recs, 1) {
				assert.Equal(t, logRecord{Level: "INFO", Msg: "inventory: expired holds", Count: tc.due}, recs[0])
			}

			n, err = sw.Sweep(context.Background())
			require.NoError(t, err)
			assert.Zero(t, n, "a second sweep finds nothing")
		})
	}
}

func TestSweeperSweepStopsAtFirstError(t *testing.T) {
	s := newSweepStore(t, 10, 0, 0)
	exp := &countingExpirer{Expirer: s, failFirst: 1}
	sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{BatchSize: 3, Logger: newLogger(&syncBuffer{})})
	n, err := sw.Sweep(context.Background())
	require.ErrorIs(t, err, errSweepBroken)
	assert.Zero(t, n)
	assert.Equal(t, int64(1), exp.calls.Load())
}

func TestSweeperRunSweepsUntilContextEnds(t *testing.T) {
	s := newSweepStore(t, 50, 5, 5)
	exp := &countingExpirer{Expirer: s}
	sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{Interval: time.Millisecond, Jitter: -1, BatchSize: 7, Logger: newLogger(&syncBuffer{})})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()

	require.Eventually(t, func() bool { return exp.expired.Load() == int64(s.due) }, 10*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	s.requireSwept(t)
}

func TestSweeperRunReturnsContextError(t *testing.T) {
	exp := &countingExpirer{Expirer: newSweepStore(t, 0, 0, 0)}
	sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{Interval: time.Hour, Logger: newLogger(&syncBuffer{})})

	t.Run("Deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, sw.Run(ctx), context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 5*time.Second, "Run waits out no interval once ctx is done")
	})
	t.Run("AlreadyCancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, sw.Run(ctx), context.Canceled)
	})
	assert.LessOrEqual(t, exp.calls.Load(), int64(2), "one sweep at the start of each Run, none more within an hour's interval")
}

func TestSweepersRunningAtOnceNeverExpireAHoldTwice(t *testing.T) {
	t.Run("Sweep", func(t *testing.T) {
		s := newSweepStore(t, 3000, 100, 100)
		var total atomic.Int64
		var wg sync.WaitGroup
		for i := range 8 {
			sw := inventory.NewSweeper(s, &inventory.SweeperOptions{BatchSize: 1 + i*3, Logger: newLogger(&syncBuffer{})})
			wg.Go(func() {
				for range 3 {
					n, err := sw.Sweep(context.Background())
					assert.NoError(t, err)
					total.Add(int64(n))
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int64(s.due), total.Load())
		s.requireSwept(t)
	})

	t.Run("Run", func(t *testing.T) {
		s := newSweepStore(t, 2000, 50, 50)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		exps := []*countingExpirer{{Expirer: s}, {Expirer: s}}
		var wg sync.WaitGroup
		for _, exp := range exps {
			sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{Interval: time.Millisecond, BatchSize: 16, Logger: newLogger(&syncBuffer{})})
			wg.Go(func() { assert.ErrorIs(t, sw.Run(ctx), context.Canceled) })
		}
		expired := func() int64 { return exps[0].expired.Load() + exps[1].expired.Load() }
		require.Eventually(t, func() bool { return expired() >= int64(s.due) }, 10*time.Second, time.Millisecond)
		// Let both keep sweeping a little: nothing more may come back.
		time.Sleep(20 * time.Millisecond)
		cancel()
		wg.Wait()
		assert.Equal(t, int64(s.due), expired())
		s.requireSwept(t)
	})
}

func TestSweeperRunLogsFailureAndKeepsGoing(t *testing.T) {
	s := newSweepStore(t, 12, 3, 3)
	exp := &countingExpirer{Expirer: s, failFirst: 2}
	var logs syncBuffer
	sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{Interval: time.Millisecond, Jitter: -1, BatchSize: 5, Logger: newLogger(&logs)})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	require.Eventually(t, func() bool { return exp.expired.Load() == int64(s.due) }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	s.requireSwept(t)

	var failures, expired, recovered, other []logRecord
	for _, rec := range logs.records(t) {
		switch rec.Msg {
		case "inventory: sweep failed":
			failures = append(failures, rec)
		case "inventory: expired holds":
			expired = append(expired, rec)
		case "inventory: sweeps recovered":
			recovered = append(recovered, rec)
		default:
			other = append(other, rec)
		}
	}
	require.Len(t, failures, 2, "each failed sweep is logged")
	for i, rec := range failures {
		assert.Equal(t, "WARN", rec.Level)
		assert.Equal(t, fmt.Sprintf("call %d: %v", i+1, errSweepBroken), rec.Error)
		assert.Equal(t, i+1, rec.Failures, "failures in a row")
	}
	assert.Equal(t, []logRecord{{Level: "INFO", Msg: "inventory: sweeps recovered", Failures: 2}}, recovered,
		"the first sweep after the failures says so, once")
	assert.Equal(t, []logRecord{
		{Level: "INFO", Msg: "inventory: sweeper started"},
		{Level: "INFO", Msg: "inventory: sweeper stopped", Reason: context.Canceled.Error()},
	}, other, "start and stop are the only other records")
	require.NotEmpty(t, expired, "the sweeper went on after the failures")
	sum := 0
	for _, rec := range expired {
		sum += rec.Count
	}
	assert.Equal(t, s.due, sum)
}

func TestSweeperWithoutExpirerFailsInsteadOfPanicking(t *testing.T) {
	s := inventory.NewSweeper(nil, nil)
	n, err := s.Sweep(t.Context())
	assert.Zero(t, n)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	require.ErrorIs(t, s.Run(t.Context()), inventory.ErrInvalidRequest, "Run returns at once")
}

// TestSweeperLogsNothingByDefault checks that a Sweeper without a Logger
// stays silent, even when the process has a default logger: it neither
// writes to slog.Default nor fails.
func TestSweeperLogsNothingByDefault(t *testing.T) {
	var logs syncBuffer
	prev := slog.Default()
	slog.SetDefault(newLogger(&logs))
	t.Cleanup(func() { slog.SetDefault(prev) })

	s := newSweepStore(t, 6, 0, 0)
	exp := &countingExpirer{Expirer: s, failFirst: 1}
	sw := inventory.NewSweeper(exp, &inventory.SweeperOptions{Interval: time.Millisecond, Jitter: -1, BatchSize: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	require.Eventually(t, func() bool { return exp.expired.Load() == int64(s.due) }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	s.requireSwept(t)
	assert.Empty(t, logs.records(t), "a failure, a recovery, expired holds, a start and a stop: all silent")
}

// backlogPurger is an Expirer that is a Purger too, with a backlog of
// reservations to purge; it can be told to fail its next Purge.
type backlogPurger struct {
	inventory.Expirer
	mu      sync.Mutex
	backlog int
	limits  []int
	fail    bool
}

func (b *backlogPurger) Purge(_ context.Context, limit int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limits = append(b.limits, limit)
	if b.fail {
		b.fail = false
		return 0, errSweepBroken
	}
	n := min(limit, b.backlog)
	b.backlog -= n
	return n, nil
}

func TestSweeperSweepPurgesInBatchesAfterExpiry(t *testing.T) {
	s := newSweepStore(t, 3, 0, 0)
	p := &backlogPurger{Expirer: s, backlog: 12, fail: true}
	var logs syncBuffer
	sw := inventory.NewSweeper(p, &inventory.SweeperOptions{BatchSize: 5, Logger: newLogger(&logs)})

	n, err := sw.Sweep(context.Background())
	require.ErrorIs(t, err, errSweepBroken, "a failed Purge fails the sweep")
	assert.Equal(t, 3, n, "after the expiry")
	s.requireSwept(t)

	n, err = sw.Sweep(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Zero(t, p.backlog, "the backlog purged")
	assert.Equal(t, []int{5, 5, 5, 5}, p.limits, "a failed batch, then 5, 5 and a short one")
	recs := logs.records(t)
	if assert.Len(t, recs, 2) {
		assert.Equal(t, logRecord{Level: "INFO", Msg: "inventory: expired holds", Count: 3}, recs[0])
		assert.Equal(t, logRecord{Level: "INFO", Msg: "inventory: purged settled reservations", Count: 12}, recs[1])
	}
}
