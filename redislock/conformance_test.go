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

// TestProcs runs the hammer in four processes at once on one schema and one
// key prefix, and kills one of them mid-run: its locks lapse after LockTTL.
// Four buyers a process: the locks are unfair, and more starve past
// WaitTimeout on a loaded machine.
func TestProcs(t *testing.T) {
	rdb := testsvc.Redis(t)
	prefix := func(schema string) string { return "invtest:procs:" + schema + ":" }
	mk := func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
		return redislock.New(db, rdb, &redislock.Options{Schema: schema, KeyPrefix: prefix(schema), Now: now, LockTTL: time.Second})
	}
	pgtest.RunProcs(t, mk, 4, func(t *testing.T, schema string) { testsvc.CleanRedisPrefix(t, prefix(schema)) })
}

// FuzzRequests feeds arbitrary IDs, SKUs, quantities and TTLs to the
// strategy; plain go test runs its seeds.
func FuzzRequests(f *testing.F) {
	strategytest.FuzzRequests(f, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return pgtest.Harness(ctx, t, maker(t))
	})
}
