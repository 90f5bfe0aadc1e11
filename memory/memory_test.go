package memory_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

func TestConformance(t *testing.T) {
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		clk := strategytest.NewClock()
		r := memory.New(&memory.Options{Now: clk.Now})
		return &strategytest.Harness{Strategy: r, Advance: clk.Advance}
	})
}

// newStore returns a Reserver with opts, driven by a manual clock.
func newStore(t *testing.T, opts *memory.Options) (*memory.Reserver, *strategytest.Clock) {
	t.Helper()
	clk := strategytest.NewClock()
	var o memory.Options
	if opts != nil {
		o = *opts
	}
	o.Now = clk.Now
	return memory.New(&o), clk
}

func setStock(t *testing.T, r *memory.Reserver, stock map[string]int64) {
	t.Helper()
	for sku, n := range stock {
		require.NoError(t, r.SetStock(context.Background(), sku, n))
	}
}

func requireAvailable(t *testing.T, r *memory.Reserver, sku string, want int64) {
	t.Helper()
	got, err := r.Available(context.Background(), sku)
	require.NoError(t, err)
	require.Equal(t, want, got, "available %s", sku)
}

func reserve(t *testing.T, r *memory.Reserver, id string, ttl time.Duration, lines ...inventory.Line) inventory.Reservation {
	t.Helper()
	res, err := r.Reserve(context.Background(), inventory.Request{ID: id, Lines: lines, TTL: ttl})
	require.NoError(t, err)
	return res
}

func requireState(t *testing.T, r *memory.Reserver, id string, want inventory.State) {
	t.Helper()
	res, err := r.Lookup(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, want, res.State, "state of %s", id)
}

func requireStateError(t *testing.T, err error, id, op string, state inventory.State) {
	t.Helper()
	require.ErrorIs(t, err, inventory.ErrNotHeld)
	var se *inventory.StateError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, inventory.StateError{ID: id, Op: op, State: state}, *se)
}

func line(sku string, qty int64) inventory.Line { return inventory.Line{SKU: sku, Qty: qty} }

func TestNewTakesDefaultsFromNilOptions(t *testing.T) {
	ctx := context.Background()
	r := memory.New(nil)
	require.NoError(t, r.SetStock(ctx, "a", 1))
	before := time.Now()
	res, err := r.Reserve(ctx, inventory.Request{ID: "o1", Lines: []inventory.Line{line("a", 1)}})
	require.NoError(t, err)
	after := time.Now()
	assert.False(t, res.ExpiresAt.Before(before.Add(15*time.Minute)))
	assert.False(t, res.ExpiresAt.After(after.Add(15*time.Minute)))
}

func TestReserveHoldsUnitsAndSortsLines(t *testing.T) {
	r, clk := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5, "b": 5, "c": 5})
	res := reserve(t, r, "o1", time.Minute, line("c", 3), line("a", 1), line("b", 2))
	assert.Equal(t, inventory.Reservation{
		ID:        "o1",
		Lines:     []inventory.Line{line("a", 1), line("b", 2), line("c", 3)},
		State:     inventory.Held,
		ExpiresAt: clk.Now().Add(time.Minute),
	}, res)
	requireAvailable(t, r, "a", 4)
	requireAvailable(t, r, "b", 3)
	requireAvailable(t, r, "c", 2)
	got, err := r.Lookup(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, res, got)
}

func TestReserveTTLZeroTakesDefaultTTL(t *testing.T) {
	for name, tc := range map[string]struct {
		opts *memory.Options
		want time.Duration
	}{
		"Unset":  {nil, 15 * time.Minute},
		"Option": {&memory.Options{DefaultTTL: 3 * time.Second}, 3 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			r, clk := newStore(t, tc.opts)
			setStock(t, r, map[string]int64{"a": 1})
			res := reserve(t, r, "o1", 0, line("a", 1))
			assert.Equal(t, clk.Now().Add(tc.want), res.ExpiresAt)
		})
	}
}

func TestReserveValidatesBeforeContext(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	bad := []inventory.Request{
		{ID: "", Lines: []inventory.Line{line("a", 1)}},
		{ID: "o1"},
		{ID: "o1", Lines: []inventory.Line{line("a", 0)}},
		{ID: "o1", Lines: []inventory.Line{line("a", 1), line("a", 1)}},
		{ID: "o1", Lines: []inventory.Line{line("", 1)}},
		{ID: "o1", Lines: []inventory.Line{line("a", 1)}, TTL: -1},
	}
	for _, req := range bad {
		_, err := r.Reserve(ctx, req)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "%+v", req)
		_, err = r.Reserve(context.Background(), req)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "%+v", req)
	}

	_, err := r.Reserve(ctx, inventory.Request{ID: "o1", Lines: []inventory.Line{line("a", 1)}})
	require.ErrorIs(t, err, context.Canceled)
	requireAvailable(t, r, "a", 5)
	_, err = r.Lookup(context.Background(), "o1")
	require.ErrorIs(t, err, inventory.ErrNotFound)
}

func TestReserveSameIDSameLinesReturnsReservationAsItIsNow(t *testing.T) {
	r, clk := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5, "b": 5})
	first := reserve(t, r, "o1", time.Minute, line("a", 1), line("b", 2))

	clk.Advance(10 * time.Second)
	again := reserve(t, r, "o1", time.Hour, line("b", 2), line("a", 1))
	assert.Equal(t, first, again, "same lines in another order, another TTL")
	requireAvailable(t, r, "a", 4)
	requireAvailable(t, r, "b", 3)

	require.NoError(t, r.Commit(context.Background(), "o1"))
	again = reserve(t, r, "o1", 0, line("a", 1), line("b", 2))
	first.State = inventory.Committed
	assert.Equal(t, first, again, "a committed reservation comes back committed")
	requireAvailable(t, r, "a", 4)
	requireAvailable(t, r, "b", 3)
}

func TestReserveSameIDOverdueReturnsItHeldAndChangesNothing(t *testing.T) {
	r, clk := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5})
	first := reserve(t, r, "o1", time.Minute, line("a", 1))
	clk.Advance(time.Hour)
	again := reserve(t, r, "o1", time.Minute, line("a", 1))
	assert.Equal(t, first, again)
	requireAvailable(t, r, "a", 4)
}

func TestReserveSameIDOtherLinesConflicts(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5, "b": 5})
	first := reserve(t, r, "o1", time.Minute, line("a", 1), line("b", 1))
	for _, lines := range [][]inventory.Line{
		{line("a", 1)},
		{line("a", 2), line("b", 1)},
		{line("a", 1), line("c", 1)},
		{line("a", 1), line("b", 1), line("c", 1)},
	} {
		_, err := r.Reserve(context.Background(), inventory.Request{ID: "o1", Lines: lines})
		assert.ErrorIs(t, err, inventory.ErrConflict, "%v", lines)
	}
	requireAvailable(t, r, "a", 4)
	requireAvailable(t, r, "b", 4)
	got, err := r.Lookup(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, first, got)
}

func TestReserveRefusalFirstFailingLineInSKUOrderDecides(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 1, "c": 1, "d": 9})

	_, err := r.Reserve(context.Background(), inventory.Request{ID: "o1", Lines: []inventory.Line{line("d", 1), line("b", 1), line("a", 2)}})
	var ise *inventory.InsufficientStockError
	require.ErrorAs(t, err, &ise)
	assert.Equal(t, inventory.InsufficientStockError{SKU: "a", Requested: 2, Available: 1}, *ise)
	assert.ErrorIs(t, err, inventory.ErrInsufficientStock)

	_, err = r.Reserve(context.Background(), inventory.Request{ID: "o1", Lines: []inventory.Line{line("d", 1), line("c", 5), line("b", 1), line("a", 1)}})
	var use *inventory.UnknownSKUError
	require.ErrorAs(t, err, &use)
	assert.Equal(t, "b", use.SKU)
	assert.ErrorIs(t, err, inventory.ErrUnknownSKU)

	requireAvailable(t, r, "a", 1)
	requireAvailable(t, r, "c", 1)
	requireAvailable(t, r, "d", 9)
	_, err = r.Lookup(context.Background(), "o1")
	require.ErrorIs(t, err, inventory.ErrNotFound, "a refused request records nothing")
}

func TestReserveRefusedIDMayTryAgain(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 1})
	_, err := r.Reserve(context.Background(), inventory.Request{ID: "o1", Lines: []inventory.Line{line("a", 2)}})
	require.ErrorIs(t, err, inventory.ErrInsufficientStock)
	_, err = r.AddStock(context.Background(), "a", 1)
	require.NoError(t, err)
	res := reserve(t, r, "o1", 0, line("a", 2))
	assert.Equal(t, inventory.Held, res.State)
	requireAvailable(t, r, "a", 0)
}

func TestReserveAllStockIsAllowed(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 3})
	reserve(t, r, "o1", 0, line("a", 3))
	requireAvailable(t, r, "a", 0)
	_, err := r.Reserve(context.Background(), inventory.Request{ID: "o2", Lines: []inventory.Line{line("a", 1)}})
	var ise *inventory.InsufficientStockError
	require.ErrorAs(t, err, &ise)
	assert.Equal(t, int64(0), ise.Available)
}

func TestReservationsShareNoMemoryWithTheStore(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5, "b": 5})
	lines := []inventory.Line{line("b", 1), line("a", 2)}
	res, err := r.Reserve(context.Background(), inventory.Request{ID: "o1", Lines: lines})
	require.NoError(t, err)
	want := []inventory.Line{line("a", 2), line("b", 1)}

	lines[0] = line("z", 9)
	res.Lines[0] = line("y", 8)
	got, err := r.Lookup(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, want, got.Lines)

	got.Lines[1] = line("x", 7)
	again, err := r.Lookup(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, want, again.Lines)

	same, err := r.Reserve(context.Background(), inventory.Request{ID: "o1", Lines: want})
	require.NoError(t, err)
	same.Lines[0].Qty = 100
	again, err = r.Lookup(context.Background(), "o1")
	require.NoError(t, err)
	assert.Equal(t, want, again.Lines)
}

func TestCommitSellsHeldUnitsAndIsIdempotent(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5})
	reserve(t, r, "o1", time.Minute, line("a", 2))
	require.NoError(t, r.Commit(context.Background(), "o1"))
	require.NoError(t, r.Commit(context.Background(), "o1"))
	requireState(t, r, "o1", inventory.Committed)
	requireAvailable(t, r, "a", 3)
}

func TestReleaseReturnsHeldUnitsAndIsIdempotent(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5, "b": 1})
	reserve(t, r, "o1", time.Minute, line("a", 2), line("b", 1))
	require.NoError(t, r.Release(context.Background(), "o1"))
	require.NoError(t, r.Release(context.Background(), "o1"))
	requireState(t, r, "o1", inventory.Released)
	requireAvailable(t, r, "a", 5)
	requireAvailable(t, r, "b", 1)
}

func TestSettleCrossStateFailsWithStateError(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		first func(r *memory.Reserver, clk *strategytest.Clock) error
		then  string
		state inventory.State
		avail int64
	}{
		{"CommitAfterRelease", func(r *memory.Reserver, _ *strategytest.Clock) error { return r.Release(ctx, "o1") }, "commit", inventory.Released, 5},
		{"ReleaseAfterCommit", func(r *memory.Reserver, _ *strategytest.Clock) error { return r.Commit(ctx, "o1") }, "release", inventory.Committed, 3},
		{"CommitAfterExpiry", expireAll, "commit", inventory.Expired, 5},
		{"ReleaseAfterExpiry", expireAll, "release", inventory.Expired, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, clk := newStore(t, nil)
			setStock(t, r, map[string]int64{"a": 5})
			reserve(t, r, "o1", time.Minute, line("a", 2))
			require.NoError(t, tc.first(r, clk))
			var err error
			if tc.then == "commit" {
				err = r.Commit(ctx, "o1")
			} else {
				err = r.Release(ctx, "o1")
			}
			requireStateError(t, err, "o1", tc.then, tc.state)
			requireState(t, r, "o1", tc.state)
			requireAvailable(t, r, "a", tc.avail)
		})
	}
}

func expireAll(r *memory.Reserver, clk *strategytest.Clock) error {
	clk.Advance(time.Minute)
	n, err := r.ExpireDue(context.Background(), 100)
	if err == nil && n != 1 {
		err = fmt.Errorf("expired %d, want 1", n)
	}
	return err
}

func TestSettleOverdueHoldExpiresIt(t *testing.T) {
	for _, op := range []string{"commit", "release"} {
		t.Run(op, func(t *testing.T) {
			ctx := context.Background()
			r, clk := newStore(t, nil)
			settle := r.Commit
			if op == "release" {
				settle = r.Release
			}
			setStock(t, r, map[string]int64{"a": 5})
			reserve(t, r, "o1", time.Minute, line("a", 2))
			reserve(t, r, "o2", time.Minute, line("a", 1))

			clk.Advance(time.Minute - time.Nanosecond)
			require.NoError(t, settle(ctx, "o2"), "active until the last nanosecond")

			clk.Advance(time.Nanosecond) // now == ExpiresAt: overdue
			requireStateError(t, settle(ctx, "o1"), "o1", op, inventory.Expired)
			requireState(t, r, "o1", inventory.Expired)
			want := int64(5 - 1)
			if op == "release" {
				want = 5
			}
			requireAvailable(t, r, "a", want)

			requireStateError(t, settle(ctx, "o1"), "o1", op, inventory.Expired)
			n, err := r.ExpireDue(ctx, 10)
			require.NoError(t, err)
			assert.Zero(t, n, "an expired hold is not expired again")
			requireAvailable(t, r, "a", want)
		})
	}
}

func TestSettleValidatesIDThenContextThenLooksUp(t *testing.T) {
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5})
	reserve(t, r, "o1", time.Minute, line("a", 1))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for name, settle := range map[string]func(context.Context, string) error{"Commit": r.Commit, "Release": r.Release} {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, settle(cancelled, ""), inventory.ErrInvalidRequest)
			assert.ErrorIs(t, settle(context.Background(), string(make([]byte, inventory.MaxIDLen+1))), inventory.ErrInvalidRequest)
			assert.ErrorIs(t, settle(context.Background(), "nope"), inventory.ErrNotFound)
			assert.ErrorIs(t, settle(cancelled, "o1"), context.Canceled)
			requireState(t, r, "o1", inventory.Held)
			requireAvailable(t, r, "a", 4)
		})
	}
}

func TestExpireDueExpiresOnlyDueHoldsUpToLimit(t *testing.T) {
	ctx := context.Background()
	r, clk := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 100, "b": 100})
	for i := range 10 {
		reserve(t, r, fmt.Sprintf("due%d", i), time.Minute, line("a", 1), line("b", 2))
	}
	reserve(t, r, "late", time.Minute+time.Nanosecond, line("a", 1))
	reserve(t, r, "committed", time.Second, line("a", 1))
	reserve(t, r, "released", time.Second, line("a", 1))
	require.NoError(t, r.Commit(ctx, "committed"))
	require.NoError(t, r.Release(ctx, "released"))
	requireAvailable(t, r, "a", 100-10-1-1)

	n, err := r.ExpireDue(ctx, 5)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is due yet")

	clk.Advance(time.Minute) // ExpiresAt == now is due
	n, err = r.ExpireDue(ctx, 4)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	n, err = r.ExpireDue(ctx, 4)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	n, err = r.ExpireDue(ctx, 4)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = r.ExpireDue(ctx, 4)
	require.NoError(t, err)
	assert.Zero(t, n)

	for i := range 10 {
		requireState(t, r, fmt.Sprintf("due%d", i), inventory.Expired)
	}
	requireState(t, r, "late", inventory.Held)
	requireState(t, r, "committed", inventory.Committed)
	requireState(t, r, "released", inventory.Released)
	requireAvailable(t, r, "a", 100-1-1)
	requireAvailable(t, r, "b", 100)
}

func TestExpireDueValidatesLimitThenContext(t *testing.T) {
	r, clk := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 5})
	reserve(t, r, "o1", time.Second, line("a", 1))
	clk.Advance(time.Second)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, limit := range []int{0, -1} {
		_, err := r.ExpireDue(cancelled, limit)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	}
	n, err := r.ExpireDue(cancelled, 1)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, n)
	requireState(t, r, "o1", inventory.Held)
}

func TestExpireDueFromManyGoroutinesExpiresEachHoldOnce(t *testing.T) {
	ctx := context.Background()
	r, clk := newStore(t, nil)
	const holds = 2000
	setStock(t, r, map[string]int64{"a": holds, "b": holds})
	for i := range holds {
		reserve(t, r, fmt.Sprintf("o%d", i), time.Duration(1+i%7)*time.Second, line("a", 1), line("b", 1))
	}
	clk.Advance(time.Minute)
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				n, err := r.ExpireDue(ctx, 1+rand.IntN(7))
				if !assert.NoError(t, err) || n == 0 {
					return
				}
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(holds), total.Load())
	requireAvailable(t, r, "a", holds)
	requireAvailable(t, r, "b", holds)
}

func TestSetStockCreatesAndOverwritesAvailable(t *testing.T) {
	ctx := context.Background()
	r, _ := newStore(t, nil)
	_, err := r.Available(ctx, "a")
	require.ErrorIs(t, err, inventory.ErrUnknownSKU)
	require.NoError(t, r.SetStock(ctx, "a", 0))
	requireAvailable(t, r, "a", 0)
	require.NoError(t, r.SetStock(ctx, "a", 7))
	reserve(t, r, "o1", time.Minute, line("a", 2))
	require.NoError(t, r.SetStock(ctx, "a", inventory.MaxStock))
	requireAvailable(t, r, "a", inventory.MaxStock)
	require.NoError(t, r.Release(ctx, "o1"), "holds are not affected")
	requireAvailable(t, r, "a", inventory.MaxStock+2)

	for _, tc := range []struct {
		sku string
		n   int64
	}{{"", 1}, {"a", -1}, {"a", inventory.MaxStock + 1}, {"b\x00", 1}} {
		assert.ErrorIs(t, r.SetStock(ctx, tc.sku, tc.n), inventory.ErrInvalidRequest, "%q %d", tc.sku, tc.n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, r.SetStock(cancelled, "new", 1), context.Canceled)
	_, err = r.Available(ctx, "new")
	require.ErrorIs(t, err, inventory.ErrUnknownSKU)
}

func TestAddStockKeepsBounds(t *testing.T) {
	ctx := context.Background()
	r, _ := newStore(t, nil)

	_, err := r.AddStock(ctx, "a", 1)
	var use *inventory.UnknownSKUError
	require.ErrorAs(t, err, &use)
	assert.Equal(t, "a", use.SKU)

	setStock(t, r, map[string]int64{"a": 5})
	n, err := r.AddStock(ctx, "a", 3)
	require.NoError(t, err)
	assert.Equal(t, int64(8), n)
	n, err = r.AddStock(ctx, "a", -8)
	require.NoError(t, err)
	assert.Equal(t, int64(0), n)
	n, err = r.AddStock(ctx, "a", 2)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)

	_, err = r.AddStock(ctx, "a", -3)
	var ise *inventory.InsufficientStockError
	require.ErrorAs(t, err, &ise)
	assert.Equal(t, inventory.InsufficientStockError{SKU: "a", Requested: 3, Available: 2}, *ise)
	requireAvailable(t, r, "a", 2)

	_, err = r.AddStock(ctx, "a", inventory.MaxStock-1)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	requireAvailable(t, r, "a", 2)
	n, err = r.AddStock(ctx, "a", inventory.MaxStock-2)
	require.NoError(t, err)
	assert.Equal(t, int64(inventory.MaxStock), n)

	for _, d := range []int64{inventory.MaxStock + 1, -inventory.MaxStock - 1} {
		_, err = r.AddStock(ctx, "a", d)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	}
	_, err = r.AddStock(ctx, "", 1)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = r.AddStock(cancelled, "a", -1)
	require.ErrorIs(t, err, context.Canceled)
	requireAvailable(t, r, "a", inventory.MaxStock)
}

func TestLookupAndAvailableCheckInput(t *testing.T) {
	ctx := context.Background()
	r, _ := newStore(t, nil)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	_, err := r.Lookup(ctx, "nope")
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	_, err = r.Lookup(cancelled, "")
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	_, err = r.Lookup(cancelled, "nope")
	assert.ErrorIs(t, err, context.Canceled)

	_, err = r.Available(ctx, "nope")
	var use *inventory.UnknownSKUError
	require.ErrorAs(t, err, &use)
	assert.Equal(t, "nope", use.SKU)
	_, err = r.Available(cancelled, "")
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	_, err = r.Available(cancelled, "nope")
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNoOversellUnderContention(t *testing.T) {
	ctx := context.Background()
	r, _ := newStore(t, nil)
	const stock, buyers = 500, 64
	setStock(t, r, map[string]int64{"hot": stock})
	var won, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range buyers {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := r.Reserve(ctx, inventory.Request{ID: fmt.Sprintf("g%d-%d", g, i), Lines: []inventory.Line{line("hot", 1)}})
				if errors.Is(err, inventory.ErrInsufficientStock) {
					refused.Add(1)
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				won.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(stock), won.Load())
	assert.Equal(t, int64(buyers), refused.Load())
	requireAvailable(t, r, "hot", 0)
}

func TestConcurrentSameIDTakesStockOnce(t *testing.T) {
	ctx := context.Background()
	r, _ := newStore(t, nil)
	setStock(t, r, map[string]int64{"a": 100, "b": 100})
	lines := []inventory.Line{line("b", 3), line("a", 2)}
	results := make([]inventory.Reservation, 64)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			res, err := r.Reserve(ctx, inventory.Request{ID: "same", Lines: lines})
			assert.NoError(t, err)
			results[i] = res
		})
	}
	wg.Wait()
	for _, res := range results[1:] {
		assert.Equal(t, results[0], res)
	}
	requireAvailable(t, r, "a", 98)
	requireAvailable(t, r, "b", 97)
}

func TestCrossingCartsDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	r, _ := newStore(t, nil)
	skus := []string{"a", "b", "c", "d"}
	for _, s := range skus {
		require.NoError(t, r.SetStock(ctx, s, 1_000_000))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				lines := make([]inventory.Line, 0, len(skus))
				for k := range skus {
					// Each goroutine names the SKUs in its own rotation.
					lines = append(lines, line(skus[(g+k)%len(skus)], 1))
				}
				id := fmt.Sprintf("g%d-%d", g, i)
				_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: lines})
				if assert.NoError(t, err) {
					assert.NoError(t, r.Release(ctx, id))
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("crossing carts deadlocked")
	}
	for _, s := range skus {
		requireAvailable(t, r, s, 1_000_000)
	}
}

// TestStockBalancesUnderMixedLoad runs buyers that reserve, commit, release
// and let holds lapse while sweepers expire and an admin adds stock, then
// checks per SKU: available + held + sold = stock set + added.
func TestStockBalancesUnderMixedLoad(t *testing.T) {
	ctx := context.Background()
	r, clk := newStore(t, nil)
	skus := []string{"a", "b", "c", "d", "e"}
	const initial = 200
	for _, s := range skus {
		require.NoError(t, r.SetStock(ctx, s, initial))
	}
	var added [5]atomic.Int64
	var ids sync.Map
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // sweeper and clock
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Advance(50 * time.Millisecond)
			_, err := r.ExpireDue(ctx, 3)
			assert.NoError(t, err)
		}
	})
	bg.Go(func() { // admin
		for {
			select {
			case <-stop:
				return
			default:
			}
			k := rand.IntN(len(skus))
			if _, err := r.AddStock(ctx, skus[k], 1); assert.NoError(t, err) {
				added[k].Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 300 {
				id := fmt.Sprintf("g%d-%d", g, i)
				n := 1 + rand.IntN(3)
				lines := make([]inventory.Line, 0, n)
				for _, k := range rand.Perm(len(skus))[:n] {
					lines = append(lines, line(skus[k], int64(1+rand.IntN(3))))
				}
				_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: lines, TTL: time.Duration(1+rand.IntN(20)) * 50 * time.Millisecond})
				if errors.Is(err, inventory.ErrInsufficientStock) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				ids.Store(id, true)
				switch rand.IntN(3) {
				case 0:
					err = r.Commit(ctx, id)
				case 1:
					err = r.Release(ctx, id)
				}
				if err != nil {
					assert.ErrorIs(t, err, inventory.ErrNotHeld)
				}
				// Same request again: must change nothing.
				_, err = r.Reserve(ctx, inventory.Request{ID: id, Lines: lines})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()

	held := map[string]int64{}
	sold := map[string]int64{}
	ids.Range(func(k, _ any) bool {
		res, err := r.Lookup(ctx, k.(string))
		require.NoError(t, err)
		for _, l := range res.Lines {
			switch res.State {
			case inventory.Held:
				held[l.SKU] += l.Qty
			case inventory.Committed:
				sold[l.SKU] += l.Qty
			}
		}
		return true
	})
	for k, s := range skus {
		avail, err := r.Available(ctx, s)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, avail, int64(0))
		assert.Equal(t, initial+added[k].Load(), avail+held[s]+sold[s], "sku %s: available %d held %d sold %d", s, avail, held[s], sold[s])
	}
}

// FuzzRequests feeds arbitrary IDs, SKUs, quantities and TTLs to the
// strategy, as every strategy's tests do.
func FuzzRequests(f *testing.F) {
	strategytest.FuzzRequests(f, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		clk := strategytest.NewClock()
		return &strategytest.Harness{Strategy: memory.New(&memory.Options{Now: clk.Now}), Advance: clk.Advance}
	})
}
