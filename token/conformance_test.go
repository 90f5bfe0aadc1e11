package token_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
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

// sqlcondHarness keeps the stock and the flags in one PostgreSQL schema, as
// a deployment would.
func sqlcondHarness(ctx context.Context, t *testing.T) *strategytest.Harness {
	pool, schema := testsvc.Postgres(t), testsvc.Schema(t)
	clk := strategytest.NewClock()
	inner, err := sqlcond.New(pool, &sqlcond.Options{Schema: schema, Now: clk.Now})
	require.NoError(t, err)
	require.NoError(t, inner.Migrate(ctx))
	store, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx))
	return tokenHarness(t, inner, clk, store)
}

// TestConformanceOverSqlcond keeps the stock and the flags in one
// PostgreSQL schema, as a deployment would.
func TestConformanceOverSqlcond(t *testing.T) {
	strategytest.RunConformance(t, sqlcondHarness)
}

// FuzzRequestsOverSqlcond feeds arbitrary IDs, SKUs, quantities and TTLs to
// the wrapper over sqlcond with PostgreSQL flags; plain go test runs its
// seeds.
func FuzzRequestsOverSqlcond(f *testing.F) {
	strategytest.FuzzRequests(f, sqlcondHarness)
}

// FuzzRequestsWithRedisFlags does the same over memory with Redis flags.
func FuzzRequestsWithRedisFlags(f *testing.F) {
	strategytest.FuzzRequests(f, func(_ context.Context, t *testing.T) *strategytest.Harness {
		return memoryHarness(t, newRedisStore(t))
	})
}

// BenchmarkSuite runs the benchmarks every strategy shares on the wrapper
// around memory with in-process flags: the cost of the token itself.
func BenchmarkSuite(b *testing.B) {
	strategytest.RunBenchmarks(b, func(_ context.Context, b *testing.B) *strategytest.Harness {
		return memoryHarness(b, token.NewMemoryStore())
	})
}

// TestProcs runs the hammer in four processes at once, each with its own
// pool and issuer (one key), on one schema holding the stock and the flags,
// and kills one of them mid-run.
func TestProcs(t *testing.T) {
	open := func(ctx context.Context, t *testing.T, pool *pgxpool.Pool, schema string) (*sqlcond.Reserver, *token.PostgresStore) {
		inner, err := sqlcond.New(pool, &sqlcond.Options{Schema: schema})
		require.NoError(t, err)
		store, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: schema})
		require.NoError(t, err)
		return inner, store
	}
	strategytest.RunProcsSuite(t, strategytest.ProcsConfig{
		Setup: func(ctx context.Context, t *testing.T) string {
			schema := testsvc.Schema(t)
			inner, store := open(ctx, t, testsvc.Postgres(t), schema)
			require.NoError(t, inner.Migrate(ctx))
			require.NoError(t, store.Migrate(ctx))
			return schema
		},
		Open: func(ctx context.Context, t *testing.T, schema string) *strategytest.Harness {
			inner, store := open(ctx, t, pgtest.Pool(t, pgtest.PoolConfig{MaxConns: pgtest.ProcsConns}), schema)
			issuer := newIssuer(t, nil)
			return &strategytest.Harness{Strategy: token.Wrap(inner, issuer, store, nil), NewID: issuer.Issue}
		},
	})
}
