package memory_test

import (
	"context"
	"testing"

	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/strategy/strategytest"
)

// BenchmarkSuite runs the benchmarks every strategy shares, so memory's
// numbers line up with the other strategies'.
func BenchmarkSuite(b *testing.B) {
	strategytest.RunBenchmarks(b, func(_ context.Context, _ *testing.B) *strategytest.Harness {
		return &strategytest.Harness{Strategy: memory.New(nil)}
	})
}
