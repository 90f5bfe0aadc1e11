package redislock_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redislock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// TestUnreachableRedisIsUnavailable reserves with Redis unreachable (its
// port refuses connections): Reserve fails with inventory.ErrUnavailable,
// naming Redis, and nothing changes.
func TestUnreachableRedisIsUnavailable(t *testing.T) {
	ctx := t.Context()
	rdb := redis.NewClient(&redis.Options{Addr: testsvc.ClosedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	r, err := redislock.New(testsvc.Postgres(t), rdb, &redislock.Options{Schema: testsvc.Schema(t), KeyPrefix: testsvc.RedisPrefix(t)})
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.SetStock(ctx, "a", 5))

	id := strategytest.RandomID()
	_, err = r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.ErrorIs(t, err, inventory.ErrUnavailable)
	assert.NotErrorIs(t, err, inventory.ErrOutcomeUnknown)
	var u *inventory.UnavailableError
	require.ErrorAs(t, err, &u)
	assert.Equal(t, "redis", u.Server)
	t.Logf("Reserve with Redis unreachable: %v", err)

	_, err = r.Lookup(ctx, id)
	assert.ErrorIs(t, err, inventory.ErrNotFound)
	n, err := r.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
}
