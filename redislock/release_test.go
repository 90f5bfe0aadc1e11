package redislock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
)

// events records, in order, the statements and batches a Reserver sends to
// PostgreSQL and the scripts it runs in Redis.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(ev string) {
	e.mu.Lock()
	e.log = append(e.log, ev)
	e.mu.Unlock()
}

func (e *events) DialHook(next redis.DialHook) redis.DialHook { return next }

func (e *events) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, s := range []struct {
			name   string
			script *redis.Script
		}{{"acquire", acquireScript}, {"release", releaseScript}, {"extend", extendScript}} {
			if args := cmd.Args(); len(args) > 1 && (args[1] == s.script.Hash()) {
				e.add("redis " + s.name)
			}
		}
		return next(ctx, cmd)
	}
}

func (e *events) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (e *events) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	e.add("pg " + d.SQL)
	return ctx
}

func (e *events) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (e *events) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	e.add(fmt.Sprintf("pg batch of %d", d.Batch.Len()))
	return ctx
}

func (e *events) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if d.SQL == "commit" {
		e.add("pg commit")
	}
}

func (e *events) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func TestLocksAreReleasedOnceAsSoonAsTheReservationIsCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ev := &events{}
	pc, err := pgxpool.ParseConfig(testsvc.PostgresURL(t))
	require.NoError(t, err)
	pc.ConnConfig.Tracer = ev
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	opt, err := redis.ParseURL(testsvc.RedisURL(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	for _, s := range []*redis.Script{acquireScript, releaseScript, extendScript} {
		require.NoError(t, s.Load(ctx, rdb).Err())
	}
	rdb.AddHook(ev)

	r, err := New(pool, rdb, &Options{Schema: testsvc.Schema(t), KeyPrefix: testsvc.RedisPrefix(t)})
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.SetStock(ctx, "a", 10))
	require.NoError(t, r.SetStock(ctx, "b", 10))

	ev.mu.Lock()
	ev.log = nil
	ev.mu.Unlock()
	_, err = r.Reserve(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "b", Qty: 1}, {SKU: "a", Qty: 2}}})
	require.NoError(t, err)

	ev.mu.Lock()
	log := slices.Clone(ev.log)
	ev.mu.Unlock()
	t.Log(log)
	// The locks go the moment COMMIT is acknowledged: after it, and before
	// the empty statement that hands the connection back; and only once.
	commit, release, handBack := slices.Index(log, "pg commit"), slices.Index(log, "redis release"), slices.Index(log, "pg ;")
	require.NotEqual(t, -1, commit)
	require.NotEqual(t, -1, release)
	require.NotEqual(t, -1, handBack)
	assert.Less(t, commit, release)
	assert.Less(t, release, handBack)
	assert.Equal(t, 1, countOf(log, "redis acquire"))
	assert.Equal(t, 1, countOf(log, "redis release"))
	assert.Empty(t, lockOwner(t, r.locks, "a"))
	assert.Empty(t, lockOwner(t, r.locks, "b"))

	// A refused reservation commits nothing and still releases once.
	ev.mu.Lock()
	ev.log = nil
	ev.mu.Unlock()
	_, err = r.Reserve(ctx, inventory.Request{ID: "r2", Lines: []inventory.Line{{SKU: "a", Qty: 9}}})
	require.ErrorIs(t, err, inventory.ErrInsufficientStock)
	ev.mu.Lock()
	log = slices.Clone(ev.log)
	ev.mu.Unlock()
	assert.Equal(t, 0, countOf(log, "pg commit"))
	assert.Equal(t, 1, countOf(log, "redis release"))
	assert.Empty(t, lockOwner(t, r.locks, "a"))
}

func countOf(log []string, ev string) int {
	n := 0
	for _, e := range log {
		if e == ev {
			n++
		}
	}
	return n
}
