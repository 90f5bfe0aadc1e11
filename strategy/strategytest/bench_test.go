package strategytest_test

import (
	"context"
	"testing"

	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/strategy/strategytest"
)

// BenchmarkSuiteOnMemory runs the shared benchmarks on the in-process
// strategy, which shows they run and what the suite itself costs.
func BenchmarkSuiteOnMemory(b *testing.B) {
	strategytest.RunBenchmarks(b, func(_ context.Context, _ *testing.B) *strategytest.Harness {
		return &strategytest.Harness{Strategy: memory.New(nil)}
	})
}
