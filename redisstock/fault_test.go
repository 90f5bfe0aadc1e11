package redisstock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// proxied returns a client of the shared Redis through a fault proxy, with
// the script loaded so that every call of it is an EVALSHA; each of tune
// adjusts the client's options first.
func proxied(t *testing.T, tune ...func(*redis.Options)) (*faultproxy.Proxy, *redis.Client) {
	t.Helper()
	opt, err := redis.ParseURL(testsvc.RedisURL(t))
	require.NoError(t, err)
	p, err := faultproxy.New(opt.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	opt.Addr = p.Addr()
	for _, f := range tune {
		f(opt)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, redisstock.Script.Load(context.Background(), c).Err())
	return p, c
}

// dropReply arms p to lose the reply of the next call of the script's
// operation op (its name travels as a bulk string), which go-redis sends
// again on a new connection.
func dropReply(p *faultproxy.Proxy, op string) {
	p.Arm(faultproxy.Rule{Pattern: fmt.Appendf(nil, "$%d\r\n%s\r\n", len(op), op), Mode: faultproxy.DropReply, Times: 1})
}

// findIDs returns an ID whose record shares sku's bucket (same) or one
// whose record does not.
func findID(r *redisstock.Reserver, sku string, same bool) string {
	for {
		id := strategytest.RandomID()
		if (r.Bucket(id) == r.Bucket(sku)) == same {
			return id
		}
	}
}

// TestLostRepliesApplyOnce loses the reply of one operation of a Reserve
// or a Release, which go-redis sends again: the units change once. With
// limited, the SKUs sell at most 2 (a) and 3 (b) per buyer and the request
// names a buyer: the buyer's usage counts the re-sent take once, and the
// re-sent give takes it off once.
func TestLostRepliesApplyOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		op      string
		buckets int
		limited bool
	}{
		{"reserve", 1, false}, {"settle", 1, false}, {"give+done", 1, false}, {"settle1", 1, false},
		{"begin", 16, false}, {"take", 16, false}, {"grant", 16, false}, {"settle", 16, false}, {"give", 16, false},
		{"reserve", 1, true}, {"settle", 1, true}, {"give+done", 1, true}, {"settle1", 1, true},
		{"take", 16, true}, {"grant", 16, true}, {"settle", 16, true}, {"give", 16, true},
	} {
		name := fmt.Sprintf("%s/buckets=%d", tc.op, tc.buckets)
		if tc.limited {
			name += "/limited"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			p, c := proxied(t)
			in := setup(ctx, t, c, &redisstock.Options{Buckets: tc.buckets})
			buyer := ""
			if tc.limited {
				buyer = "b1"
				require.NoError(t, in.SetStockWith(ctx, "a", 10, inventory.StockOptions{Limit: 2}))
				require.NoError(t, in.SetStockWith(ctx, "b", 10, inventory.StockOptions{Limit: 3}))
			} else {
				require.NoError(t, in.SetStock(ctx, "a", 10))
				require.NoError(t, in.SetStock(ctx, "b", 10))
			}
			lines := []inventory.Line{{SKU: "a", Qty: 2}}
			if tc.buckets > 1 {
				lines = append(lines, inventory.Line{SKU: "b", Qty: 3})
			}
			id := findID(in.Reserver, "a", tc.buckets == 1)
			release := strings.HasPrefix(tc.op, "settle") || strings.HasPrefix(tc.op, "give")
			// Without its lines at hand, as in another process, a Release
			// settles and gives back in two calls; with them, in one.
			in.SetNoHints(tc.op != "settle1")
			if !release {
				dropReply(p, tc.op)
			}
			_, err := in.Reserve(ctx, inventory.Request{ID: id, Lines: lines, Buyer: buyer})
			require.NoError(t, err)
			if release {
				dropReply(p, tc.op)
				require.NoError(t, in.Release(ctx, id))
			}
			require.Equal(t, 1, p.Fired(), "the reply was dropped")
			want := map[string]int64{"a": 8, "b": 10}
			if tc.buckets > 1 {
				want["b"] = 7
			}
			state := inventory.Held
			if release {
				want = map[string]int64{"a": 10, "b": 10}
				state = inventory.Released
			}
			for sku, n := range want {
				got, err := in.Available(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, n, got, "units of %s changed once", sku)
			}
			res, err := in.Lookup(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, state, res.State)
			if tc.limited {
				// Held, the buyer has the limit of a (2, not 4); released,
				// nothing (not -2, nor 2 left over).
				_, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{line("a", 1)}, Buyer: buyer})
				var le *inventory.LimitError
				if state == inventory.Held {
					require.ErrorAs(t, err, &le, "the buyer has the limit")
					assert.Equal(t, int64(2), le.Had, "the take was counted once")
				} else {
					require.NoError(t, err, "the give took the usage off")
					_, err = in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{line("a", 1)}, Buyer: buyer})
					require.NoError(t, err, "the give took all of the usage off")
					_, err = in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{line("a", 1)}, Buyer: buyer})
					require.ErrorAs(t, err, &le, "the give took the usage off once: the limit holds again")
					assert.Equal(t, int64(2), le.Had)
				}
			}
			// The cleanup drains the writer and reconciles: PostgreSQL
			// applied every event once, and the usage agrees with the
			// ledger's counted lines.
		})
	}
}

// TestLostReplyCheckCatchesADoubleApply shows the check above failing for
// a script that is not idempotent: its retry decrements twice.
func TestLostReplyCheckCatchesADoubleApply(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p, c := proxied(t)
	key := testsvc.RedisPrefix(t) + "naive"
	naive := redis.NewScript(`return redis.call('DECRBY', KEYS[1], ARGV[1])`)
	require.NoError(t, naive.Load(ctx, c).Err())
	require.NoError(t, c.Set(ctx, key, 10, 0).Err())
	p.Arm(faultproxy.Rule{Pattern: []byte(naive.Hash()), Mode: faultproxy.DropReply, Times: 1})
	require.NoError(t, naive.Run(ctx, c, []string{key}, 2).Err())
	require.Equal(t, 1, p.Fired())
	n, err := c.Get(ctx, key).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(6), n, "the naive script ran twice: the check would have caught it")
}

func TestHammerWithLostRepliesKeepsTheInvariant(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 8} {
		t.Run(fmt.Sprintf("buckets=%d", buckets), func(t *testing.T) {
			t.Parallel()
			p, c := proxied(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			in := setup(ctx, t, c, &redisstock.Options{Buckets: buckets})
			ops := []string{"reserve", "begin", "take", "grant", "settle", "give", "undo", "give+done", "undo+done", "sell", "sell+done", "abort", "sweep", "multi"}
			if o := os.Getenv("DROP_OPS"); o != "" {
				ops = strings.Split(o, ",")
			}
			go func() {
				// The first reply lost is a reserve's, which every run
				// makes, so that a run too short for the random rules
				// below to meet their operation still loses one.
				dropReply(p, "reserve")
				for p.Fired() == 0 && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				for ctx.Err() == nil {
					dropReply(p, ops[rand.IntN(len(ops))])
					time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond)
				}
			}()
			rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
				Strategy: in.Reserver, Advance: in.Clock.Advance, Workers: 16, SKUs: 4, Stock: 60, MaxLines: 3, OpsPerWorker: 15, Faults: true,
			})
			cancel()
			require.NoError(t, err)
			t.Log(rep, "; replies dropped:", p.Fired())
			for _, e := range rep.Unexpected {
				t.Log("unexpected:", e)
			}
			assert.Positive(t, p.Fired())
			assert.Zero(t, rep.Oversold)
			assert.Zero(t, rep.Lost)
			assert.False(t, rep.NegativeSeen)
			assert.Zero(t, rep.Errors["other"], "errors that errors.Is no inventory sentinel")
			faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.ReplyAfterCommit, Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})
		})
	}
}

// TestHammerWithConnectionsCutKeepsTheInvariant cuts every connection of
// the store's Redis client (the buyers' and the writer's) at random moments
// while buyers reserve, sometimes refusing new ones for a few milliseconds:
// a cut call may have run its script or not, and the retries with the same
// ID apply it once. Nothing is oversold or lost, and once the writer has
// drained the streams the ledger agrees with Redis on every SKU and
// reservation. The check of a retry applied twice is shown failing by
// TestLostReplyCheckCatchesADoubleApply, that of the ledger by
// TestWriterKillCheckCatchesAnAckBeforeCommit.
func TestHammerWithConnectionsCutKeepsTheInvariant(t *testing.T) {
	t.Parallel()
	// Without go-redis's own retries a cut reaches the strategy, which
	// answers it with a sentinel, and the hammer's retry by ID: with them,
	// every cut may be papered over and none seen.
	p, c := proxied(t, func(o *redis.Options) { o.MaxRetries = -1 })
	ctx := t.Context()
	in := setup(ctx, t, c, &redisstock.Options{Buckets: 4})
	// The cuts stop before the hammer's own accounting: they fall among
	// the first cutCalls calls.
	const workers, ops, cutCalls = 16, 15, 150
	var calls atomic.Int64
	var cuts atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// The hammer stocks its SKUs first, unharmed.
		for calls.Load() == 0 {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
		for calls.Load() < cutCalls {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(2+rand.IntN(10)) * time.Millisecond):
			}
			if rand.IntN(4) == 0 {
				p.RefuseFor(5 * time.Millisecond)
			}
			cuts.Add(int64(p.CutAll()))
		}
	})
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: in.Reserver, Advance: in.Clock.Advance, Workers: workers, SKUs: 4, Stock: 60, MaxLines: 3, OpsPerWorker: ops, Faults: true,
		// A cut AddStock may or may not have applied: the stock stays still.
		FixedStock: true,
		Observe:    func(string, time.Duration, error) { calls.Add(1) },
	})
	close(done)
	wg.Wait()
	require.NoError(t, err)
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	// The running writer retries what the cuts broke: wait for it to have
	// nothing left to write.
	require.Eventually(t, func() bool {
		lag, err := in.Writer.Lag(dctx)
		return err == nil && lag == 0
	}, 30*time.Second, 10*time.Millisecond, "the writer catches up")
	diff, err := in.Reconcile(dctx, nil)
	require.NoError(t, err)
	t.Log(rep, "; connections cut:", cuts.Load(), "; ledger differences:", len(diff.Differences))
	assert.Positive(t, cuts.Load(), "connections were cut")
	assert.Positive(t, rep.Errors["unavailable"]+rep.Errors["outcome_unknown"], "some calls failed on a cut")
	assert.Zero(t, rep.Errors["other"], "errors that errors.Is no inventory sentinel")
	assert.Zero(t, rep.Oversold)
	assert.Zero(t, rep.Lost)
	assert.False(t, rep.NegativeSeen)
	assert.Empty(t, rep.Unexpected)
	assert.Empty(t, diff.Differences, "the ledger agrees with Redis")
	faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.ConnCut, Tried: rep.Reserves,
		Oversold: rep.Oversold, Lost: rep.Lost + int64(len(diff.Differences))})
}
