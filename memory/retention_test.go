package memory_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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

// sweep runs ExpireDue with no limit: it expires every due hold and forgets
// every settled reservation whose retention has passed.
func sweep(t *testing.T, r *memory.Reserver) int {
	t.Helper()
	n, err := r.ExpireDue(context.Background(), math.MaxInt)
	require.NoError(t, err)
	return n
}

func requireForgotten(t *testing.T, r *memory.Reserver, id string) {
	t.Helper()
	ctx := context.Background()
	_, err := r.Lookup(ctx, id)
	require.ErrorIs(t, err, inventory.ErrNotFound, "lookup %s", id)
	require.ErrorIs(t, r.Commit(ctx, id), inventory.ErrNotFound, "commit %s", id)
	require.ErrorIs(t, r.Release(ctx, id), inventory.ErrNotFound, "release %s", id)
}

// requireStored checks what the store keeps: Held and settled reservations,
// and the settled ones queued to be forgotten.
func requireStored(t *testing.T, r *memory.Reserver, held, settled, queued int) {
	t.Helper()
	h, s, q := r.Stored()
	require.Equal(t, [3]int{held, settled, queued}, [3]int{h, s, q}, "held, settled, queued")
}

func TestRetentionForgetsSettledReservationOnceItPasses(t *testing.T) {
	const retention = time.Hour
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		settle func(t *testing.T, r *memory.Reserver, clk *strategytest.Clock)
		state  inventory.State
		avail  int64 // of 5, after o1 settled
	}{
		{"Committed", func(t *testing.T, r *memory.Reserver, _ *strategytest.Clock) {
			require.NoError(t, r.Commit(ctx, "o1"))
		}, inventory.Committed, 3},
		{"Released", func(t *testing.T, r *memory.Reserver, _ *strategytest.Clock) {
			require.NoError(t, r.Release(ctx, "o1"))
		}, inventory.Released, 5},
		{"ExpiredBySweep", func(t *testing.T, r *memory.Reserver, clk *strategytest.Clock) {
			clk.Advance(time.Minute)
			require.Equal(t, 1, sweep(t, r))
		}, inventory.Expired, 5},
		{"ExpiredByCommit", func(t *testing.T, r *memory.Reserver, clk *strategytest.Clock) {
			clk.Advance(time.Minute)
			require.ErrorIs(t, r.Commit(ctx, "o1"), inventory.ErrNotHeld)
		}, inventory.Expired, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, clk := newStore(t, &memory.Options{Retention: retention})
			setStock(t, r, map[string]int64{"a": 5})
			reserve(t, r, "o1", time.Minute, line("a", 2))
			tc.settle(t, r, clk)
			requireStored(t, r, 0, 1, 1)

			clk.Advance(retention - time.Nanosecond)
			sweep(t, r)
			requireState(t, r, "o1", tc.state)
			again := reserve(t, r, "o1", 0, line("a", 2))
			assert.Equal(t, tc.state, again.State, "a retry within the retention is answered from the record")
			requireAvailable(t, r, "a", tc.avail)

			clk.Advance(time.Nanosecond)
			requireForgotten(t, r, "o1")
			requireStored(t, r, 0, 0, 0)
			requireAvailable(t, r, "a", tc.avail) // sold units stay sold

			res := reserve(t, r, "o1", time.Minute, line("a", 1))
			assert.Equal(t, inventory.Reservation{
				ID:        "o1",
				Lines:     []inventory.Line{line("a", 1)},
				State:     inventory.Held,
				ExpiresAt: clk.Now().Add(time.Minute),
			}, res, "a new reservation, with other lines and no conflict")
			requireAvailable(t, r, "a", tc.avail-1)
			requireStored(t, r, 1, 0, 0)
		})
	}
}

func TestRetentionNeverForgetsHeldReservations(t *testing.T) {
	ctx := context.Background()
	r, clk := newStore(t, &memory.Options{Retention: time.Second})
	setStock(t, r, map[string]int64{"a": 10})
	reserve(t, r, "long", 1000*time.Hour, line("a", 1))
	reserve(t, r, "overdue", time.Minute, line("a", 2))
	reserve(t, r, "settled", time.Minute, line("a", 3))
	require.NoError(t, r.Release(ctx, "settled"))

	clk.Advance(10 * time.Hour)
	requireForgotten(t, r, "settled")
	requireState(t, r, "long", inventory.Held)
	requireState(t, r, "overdue", inventory.Held) // overdue, but not yet expired
	requireStored(t, r, 2, 0, 0)

	// An expired hold settles when it is expired, not at its ExpiresAt, so
	// its retention starts now.
	require.Equal(t, 1, sweep(t, r))
	requireState(t, r, "overdue", inventory.Expired)
	clk.Advance(time.Second - time.Nanosecond)
	sweep(t, r)
	requireState(t, r, "overdue", inventory.Expired)
	clk.Advance(time.Nanosecond)
	sweep(t, r)
	requireForgotten(t, r, "overdue")

	requireState(t, r, "long", inventory.Held)
	require.NoError(t, r.Commit(ctx, "long"))
	requireAvailable(t, r, "a", 9)
}

func TestRetentionZeroOrNegativeKeepsEveryReservation(t *testing.T) {
	for _, retention := range []time.Duration{0, -time.Hour} {
		t.Run(retention.String(), func(t *testing.T) {
			ctx := context.Background()
			r, clk := newStore(t, &memory.Options{Retention: retention})
			setStock(t, r, map[string]int64{"a": 10})
			reserve(t, r, "c", time.Minute, line("a", 1))
			reserve(t, r, "r", time.Minute, line("a", 1))
			reserve(t, r, "e", time.Minute, line("a", 1))
			require.NoError(t, r.Commit(ctx, "c"))
			require.NoError(t, r.Release(ctx, "r"))
			clk.Advance(time.Minute)
			require.Equal(t, 1, sweep(t, r))

			clk.Advance(100 * 365 * 24 * time.Hour)
			sweep(t, r)
			requireState(t, r, "c", inventory.Committed)
			requireState(t, r, "r", inventory.Released)
			requireState(t, r, "e", inventory.Expired)
			requireStored(t, r, 0, 3, 0)
			again := reserve(t, r, "c", 0, line("a", 1))
			assert.Equal(t, inventory.Committed, again.State)
			requireAvailable(t, r, "a", 9)
		})
	}
}

// TestRetentionShrinksStoreToHeldReservations settles most of many
// reservations, lets the retention pass, and checks that calls alone, or a
// sweep alone, leave only the Held ones, with no unit lost or returned.
func TestRetentionShrinksStoreToHeldReservations(t *testing.T) {
	const n, retention = 1000, time.Hour
	for name, prune := range map[string]func(t *testing.T, r *memory.Reserver){
		// Each call forgets a few in its own shard; one call per ID covers
		// every shard's backlog.
		"ByCalls": func(t *testing.T, r *memory.Reserver) {
			for i := range n {
				_, _ = r.Lookup(context.Background(), fmt.Sprintf("o%d", i))
			}
		},
		"ByExpireDue": func(t *testing.T, r *memory.Reserver) { sweep(t, r) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r, clk := newStore(t, &memory.Options{Retention: retention})
			setStock(t, r, map[string]int64{"a": 10 * n})
			for i := range n {
				id := fmt.Sprintf("o%d", i)
				ttl := time.Minute
				if i%4 == 3 {
					ttl = 1000 * time.Hour
				}
				reserve(t, r, id, ttl, line("a", 1))
				switch i % 4 {
				case 0:
					require.NoError(t, r.Commit(ctx, id))
				case 1:
					require.NoError(t, r.Release(ctx, id))
				}
			}
			clk.Advance(time.Minute)
			require.Equal(t, n/4, sweep(t, r))
			const held, sold = n / 4, n / 4
			requireStored(t, r, held, n-held, n-held)
			requireAvailable(t, r, "a", 10*n-held-sold)

			clk.Advance(retention)
			prune(t, r)
			requireStored(t, r, held, 0, 0)
			requireAvailable(t, r, "a", 10*n-held-sold)
			for i := range n {
				id := fmt.Sprintf("o%d", i)
				if i%4 == 3 {
					requireState(t, r, id, inventory.Held)
				} else {
					requireForgotten(t, r, id)
				}
			}
		})
	}
}

// TestRetentionForgetsByTimeWhenClockMovesBack settles reservations while
// the clock jumps back and forth, then walks the clock forward: at every
// point exactly the reservations whose retention has passed are forgotten,
// whatever order they settled in.
func TestRetentionForgetsByTimeWhenClockMovesBack(t *testing.T) {
	const n, retention = 400, 24 * time.Hour
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	r, clk := newStore(t, &memory.Options{Retention: retention})
	setStock(t, r, map[string]int64{"a": n})
	t0 := clk.Now()
	setClock := func(at time.Time) { clk.Advance(at.Sub(clk.Now())) }

	forgetAt := make(map[string]time.Time, n)
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		reserve(t, r, id, 1000*time.Hour, line("a", 1))
		// Within ±5h of t0, on whole minutes so that some settle together;
		// the clock never gets near a retention's end here.
		at := t0.Add(time.Duration(rng.IntN(601)-300) * time.Minute)
		setClock(at)
		if i%2 == 0 {
			require.NoError(t, r.Commit(ctx, id))
		} else {
			require.NoError(t, r.Release(ctx, id))
		}
		forgetAt[id] = at.Add(retention)
	}
	requireStored(t, r, 0, n, n)

	times := make([]time.Time, 0, n)
	for _, at := range forgetAt {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	checkpoints := []time.Time{times[0].Add(-time.Nanosecond)}
	for k := range 10 {
		checkpoints = append(checkpoints, times[k*n/10])
	}
	checkpoints = append(checkpoints, times[n-1])
	for _, now := range checkpoints {
		setClock(now)
		sweep(t, r)
		kept := 0
		for id, at := range forgetAt {
			_, err := r.Lookup(ctx, id)
			if at.After(now) {
				require.NoError(t, err, "%s forgotten %v early", id, at.Sub(now))
				kept++
			} else {
				require.ErrorIs(t, err, inventory.ErrNotFound, "%s kept %v late", id, now.Sub(at))
			}
		}
		requireStored(t, r, 0, kept, kept)
	}
	requireAvailable(t, r, "a", n/2)
}

// TestRetentionStockBalancesUnderMixedLoad has buyers reserve, commit,
// release and look up a few IDs each, again and again, while a sweeper
// expires holds and the clock moves forward and sometimes back, with a
// retention short enough that IDs are forgotten and reserved anew. It checks
// per SKU: available + held + sold = stock set, and that the store empties
// once everything has settled and the retention has passed.
func TestRetentionStockBalancesUnderMixedLoad(t *testing.T) {
	const (
		buyers, idsEach, rounds = 16, 8, 400
		initial                 = 5000
		retention               = 200 * time.Millisecond
	)
	ctx := context.Background()
	r, clk := newStore(t, &memory.Options{Retention: retention})
	skus := []string{"a", "b", "c", "d", "e"}
	sold := map[string]*atomic.Int64{}
	for _, s := range skus {
		require.NoError(t, r.SetStock(ctx, s, initial))
		sold[s] = new(atomic.Int64)
	}

	// Each buyer owns its IDs, each with fixed lines, so that a Reserve of an
	// ID is either answered from its record or, once forgotten, a new hold.
	type owned struct {
		id    string
		lines []inventory.Line
	}
	var all []owned
	mine := make([][]owned, buyers)
	for g := range mine {
		for j := range idsEach {
			n := 1 + rand.IntN(3)
			o := owned{id: fmt.Sprintf("g%d-%d", g, j)}
			for _, k := range rand.Perm(len(skus))[:n] {
				o.lines = append(o.lines, line(skus[k], int64(1+rand.IntN(3))))
			}
			mine[g] = append(mine[g], o)
			all = append(all, o)
		}
	}

	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // sweeper and clock
		for {
			select {
			case <-stop:
				return
			default:
			}
			if rand.IntN(5) == 0 {
				clk.Advance(-30 * time.Millisecond)
			} else {
				clk.Advance(50 * time.Millisecond)
			}
			_, err := r.ExpireDue(ctx, 3)
			assert.NoError(t, err)
		}
	})
	var renewed, forgotten atomic.Int64 // IDs reserved anew; calls that found their ID forgotten
	var wg sync.WaitGroup
	for g := range buyers {
		wg.Go(func() {
			expiresAt := map[string]time.Time{} // of the last reservation seen per ID
			for range rounds {
				o := mine[g][rand.IntN(idsEach)]
				res, err := r.Reserve(ctx, inventory.Request{ID: o.id, Lines: o.lines, TTL: time.Duration(1+rand.IntN(10)) * 50 * time.Millisecond})
				if errors.Is(err, inventory.ErrInsufficientStock) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				if last, ok := expiresAt[o.id]; ok && !last.Equal(res.ExpiresAt) {
					renewed.Add(1)
				}
				expiresAt[o.id] = res.ExpiresAt
				switch rand.IntN(4) {
				case 0:
					// Only this buyer settles its IDs, so a nil from a
					// reservation read Held means this Commit sold it.
					err = r.Commit(ctx, o.id)
					if err == nil && res.State == inventory.Held {
						for _, l := range o.lines {
							sold[l.SKU].Add(l.Qty)
						}
					}
				case 1:
					err = r.Release(ctx, o.id)
				case 2:
					_, err = r.Lookup(ctx, o.id)
				}
				switch {
				case errors.Is(err, inventory.ErrNotFound):
					forgotten.Add(1)
				case err != nil:
					assert.ErrorIs(t, err, inventory.ErrNotHeld)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	t.Logf("%d IDs reserved anew after they were forgotten; %d calls found their ID forgotten", renewed.Load(), forgotten.Load())

	held := map[string]int64{}
	for _, o := range all {
		res, err := r.Lookup(ctx, o.id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		if res.State == inventory.Held {
			for _, l := range res.Lines {
				held[l.SKU] += l.Qty
			}
		}
	}
	for _, s := range skus {
		avail, err := r.Available(ctx, s)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, avail, int64(0))
		assert.Equal(t, int64(initial), avail+held[s]+sold[s].Load(), "sku %s: available %d held %d sold %d", s, avail, held[s], sold[s].Load())
	}
	_, settled, queued := r.Stored()
	assert.Equal(t, settled, queued, "every settled reservation is queued to be forgotten")

	clk.Advance(time.Hour) // past every TTL
	sweep(t, r)
	clk.Advance(retention)
	sweep(t, r)
	requireStored(t, r, 0, 0, 0)
	for _, s := range skus {
		requireAvailable(t, r, s, initial-sold[s].Load())
	}
}
