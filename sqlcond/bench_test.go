package sqlcond_test

import (
	"testing"

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
