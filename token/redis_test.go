package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
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

func TestRedisStoreRefusesUnusableWaitOptions(t *testing.T) {
	for name, c := range map[string]struct {
		client redis.UniversalClient
		wait   int
	}{
		"negative":           {testsvc.Redis(t), -1},
		"with a cluster one": {redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), 1},
	} {
		t.Run(name, func(t *testing.T) {
			s := token.NewRedisStore(c.client, &token.RedisOptions{Prefix: testsvc.RedisPrefix(t), WaitReplicas: c.wait})
			_, err := s.Claim(t.Context(), "tok", "nonce", time.Minute)
			require.ErrorIs(t, err, inventory.ErrInvalidRequest)
			require.ErrorContains(t, err, "WaitReplicas")
			_, err = s.Holder(t.Context(), "tok")
			require.ErrorIs(t, err, inventory.ErrInvalidRequest)
		})
	}
}

// TestRedisStoreWithoutReplicaFailsTheClaimAndKeepsNoFlag waits for a
// replica that a lone server does not have: the claim fails with
// ErrNotReplicated (inventory.ErrUnavailable), and the Reserver clears the
// flag, so nothing reached the inner strategy and the token stays usable.
func TestRedisStoreWithoutReplicaFailsTheClaimAndKeepsNoFlag(t *testing.T) {
	ctx := t.Context()
	rdb := testsvc.Redis(t)
	prefix := testsvc.RedisPrefix(t)
	inner := memory.New(nil)
	require.NoError(t, inner.SetStock(ctx, "sku", 5))
	issuer := newIssuer(t, nil)
	r := token.Wrap(inner, issuer, token.NewRedisStore(rdb, &token.RedisOptions{Prefix: prefix, WaitReplicas: 1, ReplicaTimeout: 20 * time.Millisecond}), nil)
	tok, err := issuer.Issue(ctx)
	require.NoError(t, err)
	_, err = r.Reserve(ctx, inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "sku", Qty: 2}}})
	require.ErrorIs(t, err, token.ErrNotReplicated)
	require.ErrorIs(t, err, inventory.ErrUnavailable)
	n, err := rdb.Exists(ctx, prefix+tok).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the flag of a claim no replica confirmed")
	avail, err := inner.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Equal(t, int64(5), avail)
}
