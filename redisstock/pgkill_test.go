package redisstock_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// killWriterConns runs a writer whose PostgreSQL connections (a pool of its
// own, named by application_name) are terminated with pg_terminate_backend
// before each of its first kills transactions, while buyers hammer the
// store in Redis. It returns the hammer's report, the kills made, and the
// differences Reconcile finds once the writer has drained the streams.
func killWriterConns(t *testing.T, ackFirst bool) (*strategytest.Report, int64, int) {
	ctx := t.Context()
	app := "redisstock-writer-" + strategytest.RandomID()[:12]
	cfg, err := pgxpool.ParseConfig(testsvc.PostgresURL(t))
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	schema, prefix := testsvc.Schema(t), testsvc.RedisPrefix(t)
	clock := strategytest.NewClock()
	r, err := redisstock.New(pool, testsvc.Redis(t), &redisstock.Options{Schema: schema, KeyPrefix: prefix, Now: clock.Now})
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.Load(ctx))

	const kills = 3
	var killed atomic.Int64
	w := r.NewWriter(&redisstock.WriterOptions{Poll: 10 * time.Millisecond, Linger: time.Millisecond})
	w.SetAckFirst(ackFirst)
	admin := testsvc.Postgres(t)
	var stop atomic.Bool
	w.SetBeforeCommit(func() {
		if stop.Load() || killed.Load() >= kills {
			return
		}
		// A connection in the writer's pool for its transaction to take,
		// then only this writer's backends are terminated: the shared
		// server stays up.
		bctx := context.Background()
		if _, err := pool.Exec(bctx, "SELECT 1"); err != nil {
			return
		}
		var n int
		err := admin.QueryRow(bctx, `WITH w AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = $1)
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 2000)) FROM w`, app).Scan(&n)
		if err == nil && n > 0 {
			killed.Add(1)
		}
	})
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(wctx) })
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: r, Advance: clock.Advance, Workers: 16, SKUs: 4, Stock: 80, MaxLines: 1, OpsPerWorker: 20,
	})
	require.NoError(t, err)
	// The running writer retries: wait for the kills, or for it to have
	// nothing left to write.
	require.Eventually(t, func() bool {
		lag, err := w.Lag(ctx)
		return killed.Load() >= kills || (err == nil && lag == 0)
	}, 20*time.Second, 10*time.Millisecond)
	stop.Store(true)
	cancel()
	wg.Wait()
	pool.Reset() // a killed connection left idle is not the test's subject
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	require.NoError(t, w.Drain(dctx), "the writer catches up")
	diff, err := r.Reconcile(dctx, nil)
	require.NoError(t, err)
	require.Positive(t, killed.Load(), "the writer's connections were killed")
	return rep, killed.Load(), len(diff.Differences)
}

// TestWriterCatchesUpAfterItsConnectionsAreKilled terminates the writer's
// PostgreSQL backends again and again while buyers reserve: Redis keeps
// selling, and once the writer has drained the streams the ledger agrees
// with Redis on every SKU and reservation (nothing lost, nothing applied
// twice).
func TestWriterCatchesUpAfterItsConnectionsAreKilled(t *testing.T) {
	t.Parallel()
	rep, killed, diffs := killWriterConns(t, false)
	t.Log(rep, "; writer connections killed:", killed, "; differences:", diffs)
	assert.True(t, rep.OK(), "%v", rep.Unexpected)
	assert.Zero(t, rep.Oversold)
	assert.Zero(t, rep.Lost)
	assert.Positive(t, rep.Granted, "Redis kept selling")
	assert.Zero(t, diffs, "the ledger agrees with Redis")
	faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.BackendKilled, Tried: rep.Reserves,
		Oversold: rep.Oversold, Lost: rep.Lost + int64(diffs)})
}

// TestWriterKillCheckCatchesAnAckBeforeCommit shows the check above
// failing for a writer that acknowledges a batch before its COMMIT: the
// batches whose connection was killed are gone from the streams and never
// reach the ledger.
func TestWriterKillCheckCatchesAnAckBeforeCommit(t *testing.T) {
	t.Parallel()
	_, killed, diffs := killWriterConns(t, true)
	t.Log("writer connections killed:", killed, "; differences:", diffs)
	assert.Positive(t, diffs, "the ledger misses what was acknowledged and never committed")
}
