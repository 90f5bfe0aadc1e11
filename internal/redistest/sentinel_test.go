package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/redistest"
)

// TestSentinelFailsOver kills the primary: the Sentinels promote the
// replica, and the failover client follows, with a write made with WAIT.
func TestSentinelFailsOver(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := s.FailoverClient(&redis.FailoverOptions{MaxRetries: -1})
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	n, err := c.Do(ctx, "WAIT", 1, 1000).Int()
	require.NoError(t, err)
	require.Equal(t, 1, n, "the replica acknowledged")
	start := time.Now()
	s.Primary.Stop()
	addr, err := s.WaitMaster(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, s.Replica.Addr(), addr)
	t.Logf("the sentinels promoted %s after %s", addr, time.Since(start).Round(time.Millisecond))
	var got string
	for {
		if got, err = c.Get(ctx, "k").Result(); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err)
	assert.Equal(t, "v", got)
}
