package sqlcond_test

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"

	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/strategy/strategytest"
)

// BenchmarkReserve measures Reserve beside the bare conditional UPDATE, in
// the same run; Reserve reports its throughput as a multiple of it (x-bare).
func BenchmarkReserve(b *testing.B) {
	pgtest.RunBenchmarks(b, newStrategy)
}

// BenchmarkSuite runs the benchmarks every strategy shares (a Reserve and a
// Release per operation).
func BenchmarkSuite(b *testing.B) {
	pool := pgtest.Pool(b, pgtest.PoolConfig{MaxConns: pgtest.BenchBuyers})
	strategytest.RunBenchmarks(b, pgtest.BenchHarness(pool, newStrategy))
}

// BenchmarkExpireDueStaleStatistics times one ExpireDue(1000) on a big
// ledger whose held, due rows were added after the last ANALYZE.
func BenchmarkExpireDueStaleStatistics(b *testing.B) {
	pgtest.RunExpireBenchmark(b, newStrategy)
}

// BenchmarkRandomCancellations runs 8 buyers whose calls get deadlines of 0
// to 5 ms, on a pool of 8 connections, with pgconn's two ways of ending a
// query whose context ends: closing the connection (pgx's default), and
// sending a cancel request and keeping the connection
// (pgconn.CancelRequestContextWatcherHandler). It reports the calls that
// succeeded per second and the connections the pool had to open per 1000
// calls.
func BenchmarkRandomCancellations(b *testing.B) {
	for _, mode := range []struct {
		name  string
		build func(*pgconn.PgConn) ctxwatch.Handler
	}{
		{"CloseConn", nil},
		{"CancelRequest", func(c *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: c, CancelRequestDelay: 0, DeadlineDelay: time.Second}
		}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := b.Context()
			pool := pgtest.Pool(b, pgtest.PoolConfig{MaxConns: 8, Configure: func(c *pgxpool.Config) {
				if mode.build != nil {
					c.ConnConfig.BuildContextWatcherHandler = mode.build
				}
			}})
			s := pgtest.New(ctx, b, newStrategy, pool)
			require.NoError(b, s.SetStock(ctx, "hot", inventory.MaxStock))
			before := pool.Stat().NewConnsCount()
			var ok, calls atomic.Int64
			b.SetParallelism(4) // 8 buyers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					cctx, cancel := context.WithTimeout(ctx, time.Duration(rand.Int64N(int64(5*time.Millisecond))))
					_, err := s.Reserve(cctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "hot", Qty: 1}}})
					cancel()
					calls.Add(1)
					if err == nil {
						ok.Add(1)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(ok.Load())/b.Elapsed().Seconds(), "ok/s")
			b.ReportMetric(float64(ok.Load())/float64(calls.Load()), "ok-ratio")
			b.ReportMetric(1000*float64(pool.Stat().NewConnsCount()-before)/float64(calls.Load()), "new-conns/1000calls")
		})
	}
}
