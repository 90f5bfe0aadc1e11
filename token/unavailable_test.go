package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/token"
)

// TestUnreachableStoreIsUnavailable submits a token while its flag store
// cannot be reached (its port refuses connections), for every flag store on
// a server: Reserve fails with inventory.ErrUnavailable, naming the server,
// and the inner strategy is never called.
func TestUnreachableStoreIsUnavailable(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) (token.Store, string){
		"Redis": func(t *testing.T) (token.Store, string) {
			rdb := redis.NewClient(&redis.Options{Addr: testsvc.ClosedAddr(t), MaxRetries: -1})
			t.Cleanup(func() { _ = rdb.Close() })
			return token.NewRedisStore(rdb, &token.RedisOptions{Prefix: testsvc.RedisPrefix(t)}), "redis"
		},
		"Postgres": func(t *testing.T) (token.Store, string) {
			st, err := token.NewPostgresStore(pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 1, Addr: testsvc.ClosedAddr(t)}), nil)
			require.NoError(t, err)
			return st, "postgres"
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			store, server := open(t)
			inner := &counting{Strategy: memory.New(nil)}
			require.NoError(t, inner.SetStock(ctx, "a", 5))
			issuer := newIssuer(t, nil)
			r := token.Wrap(inner, issuer, store, nil)
			tok, err := issuer.Issue(ctx)
			require.NoError(t, err)

			_, err = r.Reserve(ctx, inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
			require.ErrorIs(t, err, inventory.ErrUnavailable)
			assert.NotErrorIs(t, err, inventory.ErrOutcomeUnknown)
			var u *inventory.UnavailableError
			require.ErrorAs(t, err, &u)
			assert.Equal(t, server, u.Server)
			t.Logf("Reserve with the %s flags unreachable: %v", name, err)
			assert.Zero(t, inner.reserves.Load(), "the inner strategy is not called")
			n, err := inner.Available(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, int64(5), n)
		})
	}
}

// TestCancelledWaitingForAFlagConnection submits a token while the only
// connection of the PostgreSQL flags' pool is busy, until the context
// ends: nothing was sent, so Reserve returns the context's error, never
// inventory.ErrOutcomeUnknown, the inner strategy is not called, and once
// the connection is free the same token is granted.
func TestCancelledWaitingForAFlagConnection(t *testing.T) {
	ctx := t.Context()
	pool := pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 1})
	store, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: testsvc.Schema(t)})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx))
	inner := &counting{Strategy: memory.New(nil)}
	require.NoError(t, inner.SetStock(ctx, "a", 5))
	issuer := newIssuer(t, nil)
	r := token.Wrap(inner, issuer, store, nil)
	tok, err := issuer.Issue(ctx)
	require.NoError(t, err)
	req := inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "a", Qty: 1}}}

	busy, err := pool.Acquire(ctx)
	require.NoError(t, err)
	cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	_, err = r.Reserve(cctx, req)
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, inventory.ErrOutcomeUnknown)
	busy.Release()
	assert.Zero(t, inner.reserves.Load(), "the inner strategy is not called")

	res, err := r.Reserve(ctx, req)
	require.NoError(t, err, "the same token, once the connection is free")
	assert.Equal(t, inventory.Held, res.State)
	n, err := inner.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(4), n)
}
