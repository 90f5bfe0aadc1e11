package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/token"
)

func newRedisStore(t *testing.T) *token.RedisStore {
	t.Helper()
	return token.NewRedisStore(testsvc.Redis(t), &token.RedisOptions{Prefix: testsvc.RedisPrefix(t)})
}

func TestRedisStore(t *testing.T) {
	testStore(t, func(t *testing.T) token.Store { return newRedisStore(t) })
}

func TestRedisStoreKeepsOneKeyPerTokenUnderItsPrefixWithExpiry(t *testing.T) {
	c := testsvc.Redis(t)
	prefix := testsvc.RedisPrefix(t)
	st := token.NewRedisStore(c, &token.RedisOptions{Prefix: prefix})
	mine, err := st.Claim(t.Context(), "tok", "nonce-a", time.Hour)
	require.NoError(t, err)
	require.True(t, mine)

	val, err := c.Get(t.Context(), prefix+"tok").Result()
	require.NoError(t, err)
	assert.Equal(t, "nonce-a", val, "the flag records who set it")
	ttl, err := c.PTTL(t.Context(), prefix+"tok").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5)

	require.NoError(t, st.Unclaim(t.Context(), "tok", "nonce-a"))
	n, err := c.Exists(t.Context(), prefix+"tok").Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestRedisStoreDefaultPrefix(t *testing.T) {
	c := testsvc.Redis(t)
	st := token.NewRedisStore(c, nil)
	tok := "test-" + t.Name() + "-" + time.Now().Format(time.RFC3339Nano)
	t.Cleanup(func() { c.Del(context.Background(), "inventory:token:"+tok) })
	_, err := st.Claim(t.Context(), tok, "a", time.Minute)
	require.NoError(t, err)
	n, err := c.Exists(t.Context(), "inventory:token:"+tok).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

func TestRedisConcurrentSubmissionsOfOneTokenReachInnerOnce(t *testing.T) {
	testSubmittedOnce(t, newRedisStore(t))
}

func TestRedisStoreOnNilClientFailsInsteadOfPanicking(t *testing.T) {
	s := token.NewRedisStore(nil, nil)
	_, err := s.Claim(t.Context(), "tok", "nonce", time.Minute)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	require.ErrorIs(t, s.Unclaim(t.Context(), "tok", "nonce"), inventory.ErrInvalidRequest)
}
