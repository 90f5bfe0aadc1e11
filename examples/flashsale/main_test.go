package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/strategy"
)

// requireSoldOut checks a sale in which buyers outnumber the units.
func requireSoldOut(t *testing.T, s sale, r result) {
	t.Helper()
	require.NoError(t, r.Skipped, r.Strategy)
	assert.Empty(t, r.Errors, r.Strategy)
	assert.Equal(t, s.Stock, r.Sold, "%s: sold", r.Strategy)
	assert.Equal(t, s.Stock, r.Bought, "%s: buyers told they bought", r.Strategy)
	assert.Equal(t, int64(s.Buyers)-s.Stock, r.Refused, "%s: refused", r.Strategy)
	assert.Zero(t, r.Failed, r.Strategy)
	assert.Zero(t, r.Oversold, r.Strategy)
	assert.Zero(t, r.Lost, r.Strategy)
	assert.Zero(t, r.Held, r.Strategy)
	assert.Zero(t, r.Left, r.Strategy)
	assert.True(t, r.ok(), r.Strategy)
	assert.Positive(t, r.Elapsed, r.Strategy)
}

func TestFlashSaleInProcessSellsExactlyTheStock(t *testing.T) {
	s := sale{Buyers: 2000, Stock: 100, Strategies: []string{"memory"}}
	var out bytes.Buffer
	results, err := s.run(t.Context(), &out)
	require.NoError(t, err)
	require.Len(t, results, 1)
	requireSoldOut(t, s, results[0])
	assert.Contains(t, out.String(), "flash sale: 2000 buyers, 100 units")
	assert.Contains(t, out.String(), "retries")
	assert.Regexp(t, `memory\s+100\s+1900\s+0\s+0\s+0\s+0\s`, out.String())
}

func TestFlashSaleRunsEveryStrategyOnRealServices(t *testing.T) {
	s := sale{Buyers: 200, Stock: 20, Services: strategy.Config{
		Postgres: testsvc.Postgres(t), Redis: testsvc.Redis(t), MySQL: testsvc.MySQL(t),
		LockWait: 30 * time.Second, // a slow machine makes lock waits long, not wrong
	}, Patience: 5 * time.Minute} // several lock waits: buyers are answered, not given up
	var out bytes.Buffer
	results, err := s.run(t.Context(), &out)
	require.NoError(t, err)
	t.Log("\n" + out.String())
	require.Len(t, results, len(strategy.Names()))
	for i, r := range results {
		assert.Equal(t, strategy.Names()[i], r.Strategy)
		requireSoldOut(t, s, r)
	}
	assert.NotContains(t, out.String(), "not run")
	assert.NotContains(t, out.String(), "!!")
}

func TestFlashSaleListsTheStrategiesThatCannotRunWithTheReason(t *testing.T) {
	s := sale{Buyers: 50, Stock: 5}
	var out bytes.Buffer
	results, err := s.run(t.Context(), &out)
	require.NoError(t, err)
	require.Len(t, results, len(strategy.Names()))
	for _, r := range results {
		info, err := strategy.Lookup(r.Strategy)
		require.NoError(t, err)
		if len(info.Services) == 0 {
			requireSoldOut(t, s, r)
			continue
		}
		require.ErrorIs(t, r.Skipped, strategy.ErrServiceNotConfigured, r.Strategy)
		assert.True(t, r.ok())
		assert.Contains(t, out.String(), fmt.Sprintf("  %s: %v\n", r.Strategy, r.Skipped))
	}
	assert.Contains(t, out.String(), "not run:")
}

func TestFlashSaleRefusesNonsense(t *testing.T) {
	var out bytes.Buffer
	_, err := sale{Buyers: 0, Stock: 1}.run(t.Context(), &out)
	require.Error(t, err)
	_, err = sale{Buyers: 1, Stock: 0}.run(t.Context(), &out)
	require.Error(t, err)
	_, err = sale{Buyers: 1, Stock: 1, Strategies: []string{"wishful"}}.run(t.Context(), &out)
	require.ErrorIs(t, err, strategy.ErrUnknownStrategy)
	assert.Empty(t, out.String())
}

func TestRetryRepeatsWhatIsSafeUntilThePatienceRunsOut(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{&inventory.OutcomeUnknownError{Op: "reserve", ID: "x", Err: errors.New("connection reset")}, "outcome_unknown"},
		{fmt.Errorf("lock: %w", inventory.ErrContended), "contended"},
		{&inventory.UnavailableError{Err: errors.New("connection refused")}, "unavailable"},
	} {
		c := &client{patience: 60 * time.Millisecond}
		var calls atomic.Int64
		start := time.Now()
		err := c.retry(ctx, func() error { calls.Add(1); return tc.err })
		took := time.Since(start)
		assert.Equal(t, tc.err, err, "the last error, once the buyer gives up")
		assert.GreaterOrEqual(t, calls.Load(), int64(3), "%v: sent again while patience lasts", tc.err)
		assert.Equal(t, map[string]int64{tc.kind: calls.Load() - 1}, c.retries, "%v", tc.err)
		assert.Less(t, took, 60*time.Millisecond+time.Second, "%v: no attempt starts after the patience ran out", tc.err)
	}

	for _, final := range []error{&inventory.InsufficientStockError{SKU: sku, Requested: 1}, inventory.ErrNotHeld, errors.New("boom")} {
		c := &client{patience: time.Minute}
		var calls atomic.Int64
		err := c.retry(ctx, func() error { calls.Add(1); return final })
		assert.Equal(t, final, err)
		assert.Equal(t, int64(1), calls.Load(), "%v: not retried", final)
		assert.Empty(t, c.retries)
	}

	// A lock that stays busy for a while: the buyer waits it out.
	c := &client{patience: time.Minute}
	var calls atomic.Int64
	err := c.retry(ctx, func() error {
		if calls.Add(1) <= 7 {
			return inventory.ErrContended
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(8), calls.Load())
	assert.Equal(t, map[string]int64{"contended": 7}, c.retries)
}

// busyStore turns away every buyer's first Reserve calls as contended and
// their first Commit as unavailable, as a store under a rush does.
type busyStore struct {
	inventory.Strategy
	contended int // Reserve calls turned away per ID
	mu        sync.Mutex
	reserves  map[string]int
	commits   map[string]bool
}

func (b *busyStore) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	b.mu.Lock()
	b.reserves[req.ID]++
	busy := b.reserves[req.ID] <= b.contended
	b.mu.Unlock()
	if busy {
		return inventory.Reservation{}, fmt.Errorf("lock of %s: %w", sku, inventory.ErrContended)
	}
	return b.Strategy.Reserve(ctx, req)
}

func (b *busyStore) Commit(ctx context.Context, id string) error {
	b.mu.Lock()
	first := !b.commits[id]
	b.commits[id] = true
	b.mu.Unlock()
	if first {
		return &inventory.UnavailableError{Err: errors.New("dial tcp: connection refused")}
	}
	return b.Strategy.Commit(ctx, id)
}

func TestBuyersRetryABusyStoreAndTheSaleSaysSo(t *testing.T) {
	s := sale{Buyers: 200, Stock: 20}
	busy := &busyStore{Strategy: memory.New(nil), contended: 6, reserves: map[string]int{}, commits: map[string]bool{}}
	r, err := s.hold(t.Context(), busy)
	require.NoError(t, err)
	requireSoldOut(t, s, r)
	assert.Equal(t, map[string]int64{"contended": 200 * 6, "unavailable": 20}, r.Retries)
}

// phantomStock sells units it does not have: when the stock runs out, it
// adds a unit and sells that. Its Reserve calls run one at a time, so that
// no buyer takes the unit another one added for itself.
type phantomStock struct {
	inventory.Strategy
	mu *sync.Mutex
}

func (p phantomStock) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	res, err := p.Strategy.Reserve(ctx, req)
	if errors.Is(err, inventory.ErrInsufficientStock) {
		if _, err := p.AddStock(ctx, req.Lines[0].SKU, req.Lines[0].Qty); err != nil {
			return res, err
		}
		return p.Strategy.Reserve(ctx, req)
	}
	return res, err
}

func TestFlashSaleCountsOversoldUnitsFromTheLedger(t *testing.T) {
	s := sale{Buyers: 40, Stock: 10}
	r, err := s.hold(t.Context(), phantomStock{Strategy: memory.New(nil), mu: new(sync.Mutex)})
	require.NoError(t, err)
	assert.Equal(t, int64(40), r.Sold)
	assert.Equal(t, int64(30), r.Oversold)
	assert.Zero(t, r.Refused)
	assert.False(t, r.ok())
}

func TestErrorKindNamesEveryContractError(t *testing.T) {
	assert.Equal(t, "outcome_unknown", errorKind(&inventory.OutcomeUnknownError{Err: context.Canceled}))
	assert.Equal(t, "contended", errorKind(inventory.ErrContended))
	assert.Equal(t, "unavailable", errorKind(&inventory.UnavailableError{Err: errors.New("refused")}))
	assert.Equal(t, "not_held", errorKind(&inventory.StateError{State: inventory.Expired}))
	assert.Equal(t, "not_found", errorKind(inventory.ErrNotFound))
	assert.Equal(t, "canceled", errorKind(context.Canceled))
	assert.Equal(t, "other", errorKind(errors.New("boom")))
}
