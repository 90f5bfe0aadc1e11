package redistest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/redistest"
)

// TestClusterSpreadsSlotsOverThreeMasters starts the cluster and finds
// keys of different hash tags on different masters, each served through
// the cluster client.
func TestClusterSpreadsSlotsOverThreeMasters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.StartCluster(t)
	cc := c.Client(nil)
	for i := range 64 {
		require.NoError(t, cc.Set(ctx, fmt.Sprintf("k{%d}", i), i, 0).Err())
	}
	var mu sync.Mutex
	masters := 0
	var total int64
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		masters++
		total += n
		assert.Positive(t, n, "master %s holds some of the keys", m.Options().Addr)
		return nil
	}))
	assert.Equal(t, redistest.ClusterMasters, masters)
	assert.Equal(t, int64(64), total)
}
