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
	r, pool := tracedReserver(b, rt, 32, benchBuyers, time.Minute)
	e := &benchEnv{r: r, pool: pool, rt: rt}
	for i := range skus {
		sku := strategytest.SKUName(i)
		require.NoError(b, r.SetStock(ctx, sku, benchStock))
		e.skus = append(e.skus, sku)
	}
	return e
}

// tracer watches both clients of a Reserver: the statements and batches
// pgx sends, and the commands go-redis sends.
type tracer interface {
	pgx.QueryTracer
	redis.Hook
}

// tracedReserver returns a migrated Reserver on a PostgreSQL pool of
// maxConns (0: pgx's default) and a Redis client of redisConns (0: go-redis's
// default), both its own and both watched by tr, waiting up to wait for
// locks (0: the default).
func tracedReserver(tb testing.TB, tr tracer, maxConns int32, redisConns int, wait time.Duration) (*Reserver, *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	pc, err := pgxpool.ParseConfig(testsvc.PostgresURL(tb))
	require.NoError(tb, err)
	if maxConns > 0 {
		pc.MaxConns = maxConns
	}
	pc.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)

	opt, err := redis.ParseURL(testsvc.RedisURL(tb))
	require.NoError(tb, err)
	if redisConns > 0 {
		opt.PoolSize = redisConns
	}
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { _ = rdb.Close() })
	loadScripts(tb, rdb)
	rdb.AddHook(tr)

	r, err := New(pool, rdb, &Options{Schema: testsvc.Schema(tb), KeyPrefix: testsvc.RedisPrefix(tb), WaitTimeout: wait})
	require.NoError(tb, err)
	require.NoError(tb, r.Migrate(ctx))
	return r, pool
}

// loadScripts loads every script of the package on c's server, so that the
// first call of each is an EVALSHA that hooks and proxies can match.
func loadScripts(tb testing.TB, c redis.UniversalClient) {
	tb.Helper()
	for _, s := range []*redis.Script{acquireScript, releaseScript, extendScript} {
		require.NoError(tb, s.Load(context.Background(), c).Err())
	}
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
