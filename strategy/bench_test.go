package strategy_test

import (
	"context"
	"testing"

	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

// BenchmarkStrategies runs the shared benchmarks on every registered
// strategy, opened by name as the benchmark command opens them, each round
// in a schema and key prefix of its own.
func BenchmarkStrategies(b *testing.B) {
	for _, info := range strategy.All() {
		b.Run(info.Name, func(b *testing.B) {
			strategytest.RunBenchmarks(b, func(ctx context.Context, b *testing.B) *strategytest.Harness {
				cfg := &strategy.Config{}
				for _, svc := range info.Services {
					switch svc {
					case strategy.Postgres:
						cfg.Postgres, cfg.Schema = testsvc.Postgres(b), testsvc.Schema(b)
					case strategy.Redis:
						cfg.Redis, cfg.KeyPrefix = testsvc.Redis(b), testsvc.RedisPrefix(b)
					}
				}
				s, closeFn, err := strategy.Open(ctx, info.Name, cfg)
				if err != nil {
					b.Fatalf("open %s: %v", info.Name, err)
				}
				b.Cleanup(func() { _ = closeFn(context.Background()) })
				return &strategytest.Harness{Strategy: s, NewID: strategy.NewIDFunc(s)}
			})
		})
	}
}
