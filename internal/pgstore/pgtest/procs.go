package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// ProcsConns is the size of each process's pool in the multi-process runs.
const ProcsConns = 4

// ProcsSetup returns a strategytest.ProcsConfig.Setup that makes a schema of
// its own for the run (dropped when the test ends) and migrates it with a
// strategy made by mk. then, if set, runs after it in the test's own
// process, with the schema, to register the cleanup of what else the
// strategy keeps under that name (Redis keys).
func ProcsSetup(mk Maker, then func(t *testing.T, schema string)) func(ctx context.Context, t *testing.T) string {
	return func(ctx context.Context, t *testing.T) string {
		t.Helper()
		schema := testsvc.Schema(t)
		s, err := mk(testsvc.Postgres(t), schema, time.Now)
		require.NoError(t, err)
		require.NoError(t, s.Migrate(ctx))
		if then != nil {
			then(t, schema)
		}
		return schema
	}
}

// ProcsOpen returns a strategytest.ProcsConfig.Open that makes a strategy
// with mk on a pool of ProcsConns connections of the process's own, in the
// run's schema, on the wall clock.
func ProcsOpen(mk Maker) func(ctx context.Context, t *testing.T, schema string) *strategytest.Harness {
	return func(ctx context.Context, t *testing.T, schema string) *strategytest.Harness {
		t.Helper()
		s, err := mk(Pool(t, PoolConfig{MaxConns: ProcsConns}), schema, time.Now)
		require.NoError(t, err)
		return &strategytest.Harness{Strategy: s}
	}
}

// RunProcs runs strategytest.RunProcsSuite on strategies made by mk, with
// workers buyers in each process (0: the suite's default). then is as for
// ProcsSetup. The test that calls RunProcs must reach it the same
// way in every process (see strategytest.Procs).
func RunProcs(t *testing.T, mk Maker, workers int, then func(t *testing.T, schema string)) {
	t.Helper()
	strategytest.RunProcsSuite(t, strategytest.ProcsConfig{
		Setup: ProcsSetup(mk, then), Open: ProcsOpen(mk), Hammer: strategytest.HammerConfig{Workers: workers},
	})
}
