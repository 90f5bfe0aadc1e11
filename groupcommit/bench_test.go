package groupcommit_test

import (
	"testing"
	"time"

	"github.com/oversell/inventory/groupcommit"
	"github.com/oversell/inventory/internal/pgstore"
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

// BenchmarkKnobs measures Reserve with other numbers of Flushers and with a
// MaxWait, beside the bare UPDATE, for the figures in the package
// documentation: go test -run '^$' -bench 'Knobs/.*/HotSKU' ./groupcommit
func BenchmarkKnobs(b *testing.B) {
	for _, k := range []struct {
		name string
		opts groupcommit.Options
	}{
		{"Flushers=1", groupcommit.Options{Flushers: 1}},
		{"Flushers=2", groupcommit.Options{Flushers: 2}},
		{"Flushers=4", groupcommit.Options{Flushers: 4}},
		{"Flushers=2,MaxWait=1ms", groupcommit.Options{Flushers: 2, MaxWait: time.Millisecond}},
	} {
		b.Run(k.name, func(b *testing.B) {
			pgtest.RunBenchmarks(b, func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
				o := k.opts
				o.Schema, o.Now = schema, now
				return groupcommit.New(db, &o)
			})
		})
	}
}

// BenchmarkExpireDueStaleStatistics times one ExpireDue(1000) on a big
// ledger whose held, due rows were added after the last ANALYZE.
func BenchmarkExpireDueStaleStatistics(b *testing.B) {
	pgtest.RunExpireBenchmark(b, newStrategy)
}
