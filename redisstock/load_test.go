package redisstock_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

func req(id string, lines ...inventory.Line) inventory.Request {
	return inventory.Request{ID: id, Lines: lines}
}

// TestRedisLossRefusesUntilLoad kills the store's redis-server (no
// persistence) after some sales, some written behind and some not: every
// call refuses with ErrNotLoaded, and Load rebuilds the stock from what
// PostgreSQL knows. The reservation not yet written behind is lost: its
// units are back, its ID unknown.
func TestRedisLossRefusesUntilLoad(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 8} {
		t.Run(map[int]string{1: "OneBucket", 8: "Buckets"}[buckets], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			srv := redistest.Start(t, nil)
			c := srv.Client(nil)
			in := setupBare(ctx, t, c, &redisstock.Options{Buckets: buckets})
			w := in.NewWriter(nil)
			require.NoError(t, in.SetStock(ctx, "a", 10))
			require.NoError(t, in.SetStock(ctx, "b", 10))
			held, err := in.Reserve(ctx, req("held", line("a", 2), line("b", 1)))
			require.NoError(t, err)
			sold, err := in.Reserve(ctx, req("sold", line("a", 3)))
			require.NoError(t, err)
			require.NoError(t, in.Commit(ctx, sold.ID))
			gone, err := in.Reserve(ctx, req("gone", line("b", 1)))
			require.NoError(t, err)
			require.NoError(t, in.Release(ctx, gone.ID))
			require.NoError(t, w.Drain(ctx))
			_, err = in.Reserve(ctx, req("unwritten", line("a", 4)))
			require.NoError(t, err)
			lag, err := w.Lag(ctx)
			require.NoError(t, err)
			assert.Positive(t, lag, "the last reservation is not written behind")

			srv.Restart() // SIGKILL and an empty restart
			for name, err := range map[string]error{
				"Reserve":   func() error { _, err := in.Reserve(ctx, req("new", line("a", 1))); return err }(),
				"Available": func() error { _, err := in.Available(ctx, "a"); return err }(),
				"Lookup":    func() error { _, err := in.Lookup(ctx, held.ID); return err }(),
				"Commit":    in.Commit(ctx, held.ID),
				"Release":   in.Release(ctx, held.ID),
				"SetStock":  in.SetStock(ctx, "c", 1),
				"AddStock":  func() error { _, err := in.AddStock(ctx, "a", 1); return err }(),
				"Expire":    func() error { _, err := in.ExpireDue(ctx, 10); return err }(),
			} {
				assert.ErrorIs(t, err, redisstock.ErrNotLoaded, name)
				assert.ErrorIs(t, err, inventory.ErrUnavailable, name)
			}

			require.NoError(t, in.Load(ctx))
			for sku, want := range map[string]int64{"a": 10 - 2 - 3, "b": 10 - 1} {
				got, err := in.Available(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, want, got, "%s counts every hold and sale PostgreSQL knows", sku)
			}
			for id, st := range map[string]inventory.State{"held": inventory.Held, "sold": inventory.Committed, "gone": inventory.Released} {
				r, err := in.Lookup(ctx, id)
				require.NoError(t, err)
				assert.Equal(t, st, r.State, id)
			}
			_, err = in.Lookup(ctx, "unwritten")
			assert.ErrorIs(t, err, inventory.ErrNotFound, "acknowledged, not written behind: lost")
			require.NoError(t, in.Release(ctx, held.ID), "a held reservation is released after Load")
			got, err := in.Available(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, int64(7), got)
			require.NoError(t, w.Drain(ctx))
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Differences)
			// Tried: the four acknowledged reservations; lost: the one not
			// written behind, by design without persistence.
			faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.RedisRestartNoAOF, Tried: 4, Lost: 1})
		})
	}
}

// TestLossCheckCatchesAStoreThatReadsMissingKeys shows what the marker
// guards against: with the marker written over an empty Redis (a store that
// takes an empty server for a loaded one), the lost SKU reads as unknown.
func TestLossCheckCatchesAStoreThatReadsMissingKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t, nil)
	c := srv.Client(nil)
	in := setupBare(ctx, t, c, nil)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	srv.Restart()
	require.NoError(t, c.HSet(ctx, in.Prefix+"{b0}:m", "e", "forged").Err())
	_, err := in.Available(ctx, "a")
	assert.ErrorIs(t, err, inventory.ErrUnknownSKU, "without the check, lost stock reads as an unknown SKU")
	assert.NotErrorIs(t, err, redisstock.ErrNotLoaded)
}

// TestLoadRunsOnce has many processes load at once: one rebuilds, the
// others find it done.
func TestLoadRunsOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setupBare(ctx, t, nil, &redisstock.Options{Buckets: 4})
	require.NoError(t, in.SetStock(ctx, "a", 10))
	w := in.NewWriter(nil)
	require.NoError(t, w.Drain(ctx))
	_, err := in.Reserve(ctx, req("r", line("a", 3)))
	require.NoError(t, err)
	require.NoError(t, w.Drain(ctx))
	require.NoError(t, in.Wipe(ctx))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { assert.NoError(t, in.Load(ctx)) })
	}
	wg.Wait()
	got, err := in.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(7), got)
}

// TestWriterDeadLettersAnEventThatKeepsFailing puts an event that cannot be
// applied (a stock row below zero) into a stream: the writer retries it,
// moves it to the dead-letter stream with an error log line, and goes on.
func TestWriterDeadLettersAnEventThatKeepsFailing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setupBare(ctx, t, nil, nil)
	var logs bytes.Buffer
	var mu sync.Mutex
	w := in.NewWriter(&redisstock.WriterOptions{MaxFailures: 3, Logger: slog.New(slog.NewTextHandler(&syncWriter{&logs, &mu}, nil))})
	require.NoError(t, in.SetStock(ctx, "a", 10))
	rdb := testsvc.Redis(t)
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: in.Prefix + "{b0}:e", Values: []any{"t", "st", "n", "1", "s1", "bad", "q1", "0", "a1", "-5", "v1", "1"}}).Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: in.Prefix + "{b0}:e", Values: []any{"t", "nonsense"}}).Err())
	require.NoError(t, in.SetStock(ctx, "b", 10))
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, w.Drain(dctx))
	n, err := w.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	metrics := map[string]float64{}
	for _, m := range w.Metrics() {
		metrics[m.Name] = m.Value
	}
	assert.Equal(t, float64(2), metrics["writer.dead_letters"])
	assert.Equal(t, float64(0), metrics["writer.lag"])
	mu.Lock()
	assert.Contains(t, logs.String(), "dead-letter stream")
	mu.Unlock()
	rep, err := in.Reconcile(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Differences, "the good events around the bad ones were applied")
}

// TestWriterClaimsACrashedWritersEntries has a writer read entries and die
// before acknowledging them: another writer claims and applies them.
func TestWriterClaimsACrashedWritersEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setupBare(ctx, t, nil, nil)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	for range 5 {
		_, err := in.Reserve(ctx, req(strategytest.RandomID(), line("a", 1)))
		require.NoError(t, err)
	}
	rdb := testsvc.Redis(t)
	got, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "writer", Consumer: "crashed", Streams: []string{in.Prefix + "{b0}:e", ">"}, Count: 100, Block: -1}).Result()
	require.NoError(t, err)
	require.NotEmpty(t, got[0].Messages, "the crashed writer read entries")
	w := in.NewWriter(&redisstock.WriterOptions{ClaimIdle: 50 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, w.Drain(ctx))
	rep, err := in.Reconcile(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Differences)
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.WriterCrash, Tried: 5,
		Oversold: max(0, 5-n), Lost: max(0, n-5) + int64(len(rep.Differences))})
}

// TestReconcileReportsAndRepairs changes the ledger behind the store's back
// and finds every change.
func TestReconcileReportsAndRepairs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setupBare(ctx, t, nil, nil)
	w := in.NewWriter(nil)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	require.NoError(t, in.SetStock(ctx, "b", 10))
	r, err := in.Reserve(ctx, req("r", line("a", 2)))
	require.NoError(t, err)
	require.NoError(t, w.Drain(ctx))
	pg := testsvc.Postgres(t)
	q := func(sql string) {
		_, err := pg.Exec(ctx, sql)
		require.NoError(t, err)
	}
	q(`UPDATE "` + in.Schema + `".stock SET available = 99 WHERE sku = 'b'`)
	q(`UPDATE "` + in.Schema + `".reservation SET state = 2 WHERE id = 'r'`)
	q(`INSERT INTO "` + in.Schema + `".stock (sku, available) VALUES ('ghost', 1)`)
	_, err = in.Reserve(ctx, req("unwritten", line("a", 1)))
	require.NoError(t, err)
	_, err = in.Reconcile(ctx, nil)
	assert.ErrorIs(t, err, redisstock.ErrNotDrained)
	require.NoError(t, w.Drain(ctx))
	rep, err := in.Reconcile(ctx, &redisstock.ReconcileOptions{Repair: true})
	require.NoError(t, err)
	var found []string
	for _, d := range rep.Differences {
		found = append(found, d.Kind+":"+d.SKU+d.ID)
	}
	assert.ElementsMatch(t, []string{"stock:b", "stock:ghost", "reservation:" + r.ID}, found)
	assert.True(t, rep.Repaired)
	rep, err = in.Reconcile(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, rep.Differences, "repaired")
}

type syncWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func line(sku string, qty int64) inventory.Line { return inventory.Line{SKU: sku, Qty: qty} }
