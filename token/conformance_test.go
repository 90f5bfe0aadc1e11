package token_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
	"github.com/oversell/inventory/token"
)

// tokenHarness wraps inner, which reads clk, with a Reserver whose harness
// hands out issued tokens as request IDs. The tokens live by the wall clock,
// so the suite may run clk ahead past their lifetime.
func tokenHarness(t testing.TB, inner inventory.Strategy, clk *strategytest.Clock, store token.Store) *strategytest.Harness {
	t.Helper()
	issuer := newIssuer(t, nil)
	return &strategytest.Harness{Strategy: token.Wrap(inner, issuer, store, nil), NewID: issuer.Issue, Advance: clk.Advance}
}

func memoryHarness(t testing.TB, store token.Store) *strategytest.Harness {
	t.Helper()
	clk := strategytest.NewClock()
	return tokenHarness(t, memory.New(&memory.Options{Now: clk.Now}), clk, store)
}

func TestConformanceOverMemory(t *testing.T) {
	strategytest.RunConformance(t, func(_ context.Context, t *testing.T) *strategytest.Harness {
		return memoryHarness(t, token.NewMemoryStore())
	})
}

func TestConformanceOverMemoryWithRedisFlags(t *testing.T) {
	strategytest.RunConformance(t, func(_ context.Context, t *testing.T) *strategytest.Harness {
		return memoryHarness(t, newRedisStore(t))
	})
}

func TestConformanceOverMemoryWithPostgresFlags(t *testing.T) {
	strategytest.RunConformance(t, func(_ context.Context, t *testing.T) *strategytest.Harness {
		return memoryHarness(t, newPostgresStore(t))
	})
}

// TestConformanceOverSqlcond keeps the stock and the flags in one
// PostgreSQL schema, as a deployment would.
func TestConformanceOverSqlcond(t *testing.T) {
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		pool, schema := testsvc.Postgres(t), testsvc.Schema(t)
		clk := strategytest.NewClock()
		inner, err := sqlcond.New(pool, &sqlcond.Options{Schema: schema, Now: clk.Now})
		require.NoError(t, err)
		require.NoError(t, inner.Migrate(ctx))
		store, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: schema})
		require.NoError(t, err)
		require.NoError(t, store.Migrate(ctx))
		return tokenHarness(t, inner, clk, store)
	})
}

// BenchmarkSuite runs the benchmarks every strategy shares on the wrapper
// around memory with in-process flags: the cost of the token itself.
func BenchmarkSuite(b *testing.B) {
	strategytest.RunBenchmarks(b, func(_ context.Context, b *testing.B) *strategytest.Harness {
		return memoryHarness(b, token.NewMemoryStore())
	})
}
