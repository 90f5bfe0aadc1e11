package redisstock_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// instance is a loaded store with a writer running behind it.
type instance struct {
	*redisstock.Reserver
	Writer *redisstock.Writer
	Clock  *strategytest.Clock
	Schema string
	Prefix string
}

// setup makes a migrated, loaded store on rdb (the shared Redis when nil)
// with a writer running until the test ends; when it ends the writer drains
// the streams and the ledger must agree with Redis.
func setup(ctx context.Context, t *testing.T, rdb redis.UniversalClient, opts *redisstock.Options) *instance {
	t.Helper()
	in := setupBare(ctx, t, rdb, opts)
	r := in.Reserver
	in.Writer = r.NewWriter(&redisstock.WriterOptions{Poll: 20 * time.Millisecond})
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = in.Writer.Run(wctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			return
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		require.NoError(t, in.Writer.Drain(dctx), "drain the streams")
		rep, err := r.Reconcile(dctx, nil)
		require.NoError(t, err)
		require.Empty(t, rep.Differences, "the ledger agrees with Redis once the streams are drained")
	})
	return in
}

// setupBare makes a migrated, loaded store with no writer.
func setupBare(ctx context.Context, t *testing.T, rdb redis.UniversalClient, opts *redisstock.Options) *instance {
	t.Helper()
	if rdb == nil {
		rdb = testsvc.Redis(t)
	}
	in := &instance{Clock: strategytest.NewClock(), Schema: testsvc.Schema(t), Prefix: testsvc.RedisPrefix(t)}
	o := redisstock.Options{}
	if opts != nil {
		o = *opts
	}
	o.Schema, o.Now = in.Schema, in.Clock.Now
	if o.KeyPrefix == "" {
		o.KeyPrefix = in.Prefix
	}
	r, err := redisstock.New(testsvc.Postgres(t), rdb, &o)
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.Load(ctx))
	in.Reserver = r
	return in
}

// linesApart and bucketsApart say why the suite's linearizability checks
// of carts over several buckets, and of SKUs whose stock buckets lie in
// several hash slots, are logged rather than asserted.
const (
	linesApart   = "a cart over several buckets takes them one script at a time; Available sees the units of a bucket taken before the cart is refused on the next"
	bucketsApart = "the stock buckets of a SKU lie in several hash slots: Available reads them, and a line falls over from one to the next, one script at a time"
)

func maker(opts *redisstock.Options) strategytest.HarnessMaker {
	return func(ctx context.Context, t *testing.T) *strategytest.Harness {
		in := setup(ctx, t, nil, opts)
		return &strategytest.Harness{Strategy: in.Reserver, Advance: in.Clock.Advance}
	}
}

// TestConformance runs the suite with every key in one slot: each call is
// one script. The strategy offers limits per buyer and partial carts, so
// the suite's LimitPerBuyer, PartialCartHoldsWhatIsThere,
// RepeatsMatchBuyerAndPartial and HammerLimitPerBuyer check them here, in
// TestConformanceBuckets and in TestConformanceCluster (TestOffersLimitsAndPartialCarts
// fails should it refuse them, which the suite would only log).
func TestConformance(t *testing.T) {
	t.Parallel()
	strategytest.RunConformance(t, maker(nil))
}

// TestConformanceBuckets runs the suite with keys spread over many slots,
// so that most carts take their lines bucket by bucket.
func TestConformanceBuckets(t *testing.T) {
	t.Parallel()
	mk := maker(&redisstock.Options{Buckets: 16})
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		h := mk(ctx, t)
		h.LinesTakenApart = linesApart
		return h
	})
}

// TestConformanceStockBuckets runs the suite with every SKU SetStock
// creates split into eight stock buckets (Options.SKUDefaults), on keys in
// one slot and spread over sixteen.
func TestConformanceStockBuckets(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{1, 16} {
		t.Run("Buckets"+strconv.Itoa(slots), func(t *testing.T) {
			t.Parallel()
			mk := maker(&redisstock.Options{Buckets: slots, SKUDefaults: inventory.StockOptions{Buckets: 8}})
			strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
				h := mk(ctx, t)
				if slots > 1 {
					h.LinesTakenApart = linesApart
					h.BucketsApart = bucketsApart
				}
				return h
			})
		})
	}
}

// FuzzRequests feeds arbitrary IDs, SKUs, quantities and TTLs to the
// strategy; plain go test runs its seeds.
func FuzzRequests(f *testing.F) {
	strategytest.FuzzRequests(f, maker(nil))
}

// TestOffersLimitsAndPartialCarts declares what the suite finds out by
// itself: a limit per buyer and a partial cart are offered, with one
// bucket and with many, so the suite's subtests for them check rules
// instead of logging that they are not offered.
func TestOffersLimitsAndPartialCarts(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 16} {
		ctx := t.Context()
		in := setup(ctx, t, nil, &redisstock.Options{Buckets: buckets})
		require.NoError(t, inventory.SetStockWith(ctx, in.Reserver, "lim", 5, inventory.StockOptions{Limit: 2}), "buckets %d", buckets)
		res, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Buyer: "b1", Partial: true,
			Lines: []inventory.Line{{SKU: "lim", Qty: 4}, {SKU: "lim-other", Qty: 1}}})
		require.ErrorIs(t, err, inventory.ErrUnknownSKU, "buckets %d: a partial cart with an unknown SKU is refused, not unsupported", buckets)
		require.NoError(t, in.SetStock(ctx, "lim-other", 1))
		res, err = in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Buyer: "b1", Partial: true,
			Lines: []inventory.Line{{SKU: "lim", Qty: 4}, {SKU: "lim-other", Qty: 1}}})
		require.NoError(t, err, "buckets %d", buckets)
		require.Equal(t, []inventory.Line{{SKU: "lim", Qty: 2}, {SKU: "lim-other", Qty: 1}}, res.Lines, "buckets %d", buckets)
	}
}
