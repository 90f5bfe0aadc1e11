package mytest

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

// RunProcs runs strategytest.RunProcsSuite on strategies made by mk: the
// test's own process makes and migrates a database of its own for the run
// (dropped when the test ends), and every worker process opens the strategy
// on a pool of ProcsConns connections of its own in that database, on the
// wall clock, with four buyers (MariaDB's hammer is slower than
// PostgreSQL's on the same machine; four keep the run short). The test that calls RunProcs must reach it the same way in
// every process (see strategytest.Procs).
func RunProcs(t *testing.T, mk Maker) {
	t.Helper()
	strategytest.RunProcsSuite(t, strategytest.ProcsConfig{
		Setup: func(ctx context.Context, t *testing.T) string {
			t.Helper()
			return New(ctx, t, mk, testsvc.MySQL(t)).Schema
		},
		Open: func(ctx context.Context, t *testing.T, schema string) *strategytest.Harness {
			t.Helper()
			s, err := mk(Pool(t, ProcsConns, ""), schema, time.Now)
			require.NoError(t, err)
			return &strategytest.Harness{Strategy: s}
		},
		Hammer: strategytest.HammerConfig{Workers: 4},
	})
}
