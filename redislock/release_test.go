package redislock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
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

// take returns the events recorded so far and starts a new record.
func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	log := e.log
	e.log = nil
	return log
}

func (e *events) DialHook(next redis.DialHook) redis.DialHook { return next }

func (e *events) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, s := range []struct {
			name   string
			script *redis.Script
		}{{"acquire", acquireScript}, {"release", releaseScript}, {"extend", extendScript}} {
			if args := cmd.Args(); len(args) > 1 && args[1] == s.script.Hash() {
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
	r, _ := tracedReserver(t, ev, 0, 0, 0)
	require.NoError(t, r.SetStock(ctx, "a", 10))
	require.NoError(t, r.SetStock(ctx, "b", 10))

	ev.take()
	_, err := r.Reserve(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "b", Qty: 1}, {SKU: "a", Qty: 2}}})
	require.NoError(t, err)

	log := ev.take()
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
	_, err = r.Reserve(ctx, inventory.Request{ID: "r2", Lines: []inventory.Line{{SKU: "a", Qty: 9}}})
	require.ErrorIs(t, err, inventory.ErrInsufficientStock)
	log = ev.take()
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
