package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/soak"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Shape of the benchmarks.
const (
	// BenchBuyers is the number of goroutines the benchmarks aim at, and the
	// size of their pool.
	BenchBuyers = 64
	// BenchSKUs is the number of SKUs of ManySKUs.
	BenchSKUs = 256
)

// RunBenchmarks measures Reserve of the strategy made by mk with about
// BenchBuyers parallel buyers on a pool of as many connections, beside the
// bare conditional UPDATE
//
//	UPDATE stock SET available = available - $1 WHERE sku = $2 AND available >= $1
//
// issued straight through pgx on the same table in the same run:
//
//   - HotSKU: every operation takes one unit of one SKU.
//   - ManySKUs: every operation takes one unit of a SKU picked uniformly out
//     of BenchSKUs.
//
// Each has a BareUpdate and a Reserve sub-benchmark; Reserve reports x-bare,
// its throughput as a multiple of the BareUpdate run just before it. Stock
// never runs out.
func RunBenchmarks(b *testing.B, mk Maker) {
	ctx := b.Context()
	pool := Pool(b, PoolConfig{MaxConns: BenchBuyers})
	s := New(ctx, b, mk, pool)
	const hot = "hot"
	require.NoError(b, s.SetStock(ctx, hot, inventory.MaxStock))
	many := make([]string, BenchSKUs)
	for i := range many {
		many[i] = strategytest.SKUName(i)
		require.NoError(b, s.SetStock(ctx, many[i], inventory.MaxStock))
	}
	bare := "UPDATE " + pgx.Identifier{s.Schema, "stock"}.Sanitize() + " SET available = available - $1 WHERE sku = $2 AND available >= $1"
	prefix := strategytest.RandomID()[:12] + "-"

	for _, shape := range []struct {
		name string
		pick func(rng *rand.Rand) string
	}{
		{"HotSKU", func(*rand.Rand) string { return hot }},
		{"ManySKUs", func(rng *rand.Rand) string { return many[rng.IntN(len(many))] }},
	} {
		b.Run(shape.name, func(b *testing.B) {
			var bareNs float64
			b.Run("BareUpdate", func(b *testing.B) {
				bareNs = parallel(b, func(ctx context.Context, rng *rand.Rand, _ string) error {
					tag, err := pool.Exec(ctx, bare, int64(1), shape.pick(rng))
					if err == nil && tag.RowsAffected() != 1 {
						err = fmt.Errorf("bare update changed %d rows", tag.RowsAffected())
					}
					return err
				}, prefix)
			})
			b.Run("Reserve", func(b *testing.B) {
				ns := parallel(b, func(ctx context.Context, rng *rand.Rand, id string) error {
					_, err := s.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: shape.pick(rng), Qty: 1}}})
					return err
				}, prefix)
				if bareNs > 0 && ns > 0 {
					b.ReportMetric(bareNs/ns, "x-bare")
				}
			})
		})
	}
}

// parallel runs op from about BenchBuyers goroutines and returns the time
// per operation. Each call gets a new request ID.
func parallel(b *testing.B, op func(ctx context.Context, rng *rand.Rand, id string) error, prefix string) float64 {
	ctx := b.Context()
	var worker atomic.Uint64
	b.SetParallelism((BenchBuyers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		rng := rand.New(rand.NewPCG(w, uint64(time.Now().UnixNano())))
		base := []byte(prefix + strconv.FormatUint(uint64(time.Now().UnixNano()), 36) + "-" + strconv.FormatUint(w, 36) + "-")
		var n uint64
		for pb.Next() {
			n++
			if err := op(ctx, rng, string(strconv.AppendUint(base, n, 36))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// BenchHarness returns a maker for strategytest.RunBenchmarks: a strategy
// made by mk on pool, in a schema of its own, with a manual clock.
func BenchHarness(pool *pgxpool.Pool, mk Maker) strategytest.BenchHarnessMaker {
	return func(ctx context.Context, b *testing.B) *strategytest.Harness {
		s := New(ctx, b, mk, pool)
		return &strategytest.Harness{Strategy: s.Strategy, Advance: s.Clock.Advance}
	}
}

// expireSizes are the ledger RunExpireBenchmark builds: settled
// reservations, and held ones already due. INVENTORY_TEST_SOAK=1 builds
// the big one.
var expireSizes = soak.Pick(
	struct{ settled, due int }{200_000, 20_000},
	struct{ settled, due int }{1_000_000, 100_000},
)

// RunExpireBenchmark times ExpireDue(ctx, 1000) of the strategy made by mk
// on a big ledger whose statistics are stale: settled reservations are added
// in bulk and analyzed, autovacuum is off for the tables, and then held,
// due ones are added in bulk, as a flash sale that leaves its carts
// abandoned does between two runs of autoanalyze: the statistics say no
// reservation is held. Each operation is one
// call, which must expire 1000 holds. A plan that trusts the statistics
// (one held row, say) would nest loops over every due hold per hold; the
// time per call shows whether the expiry's plan holds up anyway.
func RunExpireBenchmark(b *testing.B, mk Maker) {
	ctx := b.Context()
	const perCall, skus = 1000, 100
	pool := Pool(b, PoolConfig{MaxConns: 4})
	s := New(ctx, b, mk, pool)
	for i := range skus {
		require.NoError(b, s.SetStock(ctx, strategytest.SKUName(i), 0))
	}
	res := pgx.Identifier{s.Schema, "reservation"}.Sanitize()
	lines := pgx.Identifier{s.Schema, "reservation_line"}.Sanitize()
	tables := []string{res, lines, pgx.Identifier{s.Schema, "stock"}.Sanitize()}
	for _, tbl := range tables {
		_, err := pool.Exec(ctx, "ALTER TABLE "+tbl+" SET (autovacuum_enabled = false)")
		require.NoError(b, err)
	}
	now := s.Clock.Now()
	size := expireSizes
	add := func(prefix string, state inventory.State, n int, exp time.Duration) {
		_, err := pool.Exec(ctx, `INSERT INTO `+res+` (id, state, expires_at, created_at)
SELECT $1 || g, $2, $3::timestamptz + g * interval '1 microsecond', $3::timestamptz - interval '2 hours' FROM generate_series(1, $4) AS g`,
			prefix, int16(state), now.Add(exp), n)
		require.NoError(b, err)
		_, err = pool.Exec(ctx, `INSERT INTO `+lines+` (reservation_id, sku, qty)
SELECT $1 || g, 'sku-' || lpad((g % $3)::text, 2, '0'), 1 FROM generate_series(1, $2) AS g`, prefix, n, skus)
		require.NoError(b, err)
	}
	start := time.Now()
	add("s-", inventory.Committed, size.settled, time.Hour)
	for _, tbl := range tables { // the statistics see settled reservations only
		_, err := pool.Exec(ctx, "ANALYZE "+tbl)
		require.NoError(b, err)
	}
	add("h-", inventory.Held, size.due, -time.Hour)
	b.Logf("ledger: %d settled, then ANALYZE, then %d held and due, in %s", size.settled, size.due, time.Since(start).Round(time.Millisecond))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if (i+1)*perCall > size.due {
			b.Fatalf("the ledger holds %d due holds, too few for %d calls of %d", size.due, i+1, perCall)
		}
		n, err := s.ExpireDue(ctx, perCall)
		require.NoError(b, err)
		require.Equal(b, perCall, n, "holds expired by one call")
	}
}
