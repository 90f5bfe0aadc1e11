package redislock

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Benchmark shape: about benchBuyers goroutines, benchSKUs SKUs for the
// spread-out case, and stock that never runs out.
const (
	benchBuyers = 64
	benchSKUs   = 256
	benchStock  = 1 << 40
)

// roundTrips counts the round trips a client makes: one per command or
// pipeline to Redis, one per statement or batch to PostgreSQL.
type roundTrips struct {
	redis, pg atomic.Int64
}

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.redis.Add(1)
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.redis.Add(1)
		return next(ctx, cmds)
	}
}

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.pg.Add(1)
	return ctx
}

func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.pg.Add(1)
	return ctx
}

func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// benchEnv is a migrated Reserver on clients of its own whose round trips
// are counted, with SKUs stocked.
type benchEnv struct {
	r    *Reserver
	pool *pgxpool.Pool
	rt   *roundTrips
	skus []string
}

func newBenchEnv(b *testing.B, skus int) *benchEnv {
	b.Helper()
	ctx := context.Background()
	rt := &roundTrips{}

	pc, err := pgxpool.ParseConfig(testsvc.PostgresURL(b))
	require.NoError(b, err)
	pc.MaxConns = 32
	pc.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(b, err)
	b.Cleanup(pool.Close)

	opt, err := redis.ParseURL(testsvc.RedisURL(b))
	require.NoError(b, err)
	opt.PoolSize = benchBuyers
	rdb := redis.NewClient(opt)
	b.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(rt)

	r, err := New(pool, rdb, &Options{Schema: testsvc.Schema(b), KeyPrefix: testsvc.RedisPrefix(b), WaitTimeout: time.Minute})
	require.NoError(b, err)
	require.NoError(b, r.Migrate(ctx))
	for _, s := range []*redis.Script{acquireScript, releaseScript, extendScript} {
		require.NoError(b, s.Load(ctx, rdb).Err())
	}
	e := &benchEnv{r: r, pool: pool, rt: rt}
	for i := range skus {
		sku := strategytest.SKUName(i)
		require.NoError(b, r.SetStock(ctx, sku, benchStock))
		e.skus = append(e.skus, sku)
	}
	return e
}

// run measures op under about benchBuyers goroutines and reports the round
// trips per op; op gets the SKU to use.
func (e *benchEnv) run(b *testing.B, op func(ctx context.Context, id, sku string) error) {
	ctx := context.Background()
	var contended, worker atomic.Int64
	b.SetParallelism((benchBuyers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	e.rt.redis.Store(0)
	e.rt.pg.Store(0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
		prefix := strategytest.RandomID()[:12] + "-"
		n := 0
		for pb.Next() {
			n++
			err := op(ctx, prefix+strconv.Itoa(n), e.skus[rng.IntN(len(e.skus))])
			if errors.Is(err, inventory.ErrContended) {
				contended.Add(1)
				continue
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(e.rt.redis.Load())/float64(b.N), "redis-rt/op")
	b.ReportMetric(float64(e.rt.pg.Load())/float64(b.N), "pg-rt/op")
	if n := contended.Load(); n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "contended/op")
	}
}

// BenchmarkRoundTrips measures Reserve of one unit under about 64
// goroutines and counts its round trips to Redis and PostgreSQL: HotSKU,
// every buyer on one SKU (one Redis lock, one row); ManySKUs, each buyer on
// a SKU picked from 256. BenchmarkReserve (in the external tests) measures
// it beside the bare conditional UPDATE.
func BenchmarkRoundTrips(b *testing.B) {
	for _, c := range []struct {
		name string
		skus int
	}{{"HotSKU", 1}, {"ManySKUs", benchSKUs}} {
		b.Run(c.name, func(b *testing.B) {
			e := newBenchEnv(b, c.skus)
			e.run(b, func(ctx context.Context, id, sku string) error {
				_, err := e.r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: sku, Qty: 1}}})
				return err
			})
		})
	}
}
