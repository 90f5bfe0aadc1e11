package redislock_test

import (
	"context"
	"testing"
	"time"

	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redislock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// maker returns a pgtest.Maker of strategies, each in the PostgreSQL schema
// it is given and under a Redis key prefix of that schema's own, within the
// test's prefix.
func maker(tb testing.TB) pgtest.Maker {
	rdb, prefix := testsvc.Redis(tb), testsvc.RedisPrefix(tb)
	return func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
		return redislock.New(db, rdb, &redislock.Options{Schema: schema, KeyPrefix: prefix + schema + ":", Now: now})
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return pgtest.Harness(ctx, t, maker(t))
	})
}

// BenchmarkReserve measures Reserve beside the bare conditional UPDATE, in
// the same run; Reserve reports its throughput as a multiple of it (x-bare).
func BenchmarkReserve(b *testing.B) {
	pgtest.RunBenchmarks(b, maker(b))
}

// BenchmarkSuite runs the benchmarks every strategy shares (a Reserve and a
// Release per operation).
func BenchmarkSuite(b *testing.B) {
	pool := pgtest.Pool(b, pgtest.PoolConfig{MaxConns: pgtest.BenchBuyers})
	strategytest.RunBenchmarks(b, pgtest.BenchHarness(pool, maker(b)))
}
