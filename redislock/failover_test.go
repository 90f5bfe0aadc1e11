package redislock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/soak"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redislock"
)

// TestFailover sells out a SKU through a failover client while Sentinel
// promotes the replica of a SIGKILLed primary whose replication stream
// lagged: the new primary forgets locks and fencing counters, and
// PostgreSQL, which holds the stock and checks the fences, must still sell
// each unit once and keep every acknowledged reservation.
func TestFailover(t *testing.T) {
	t.Parallel()
	stock := soak.Pick(int64(300), int64(3000))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := redistest.StartSentinel(t)
	c := s.FailoverClient(&redis.FailoverOptions{DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	schema := testsvc.Schema(t)
	r, err := redislock.New(testsvc.Postgres(t), c, &redislock.Options{Schema: schema, KeyPrefix: "invtest:failover:", LockTTL: time.Second})
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.SetStock(ctx, "hot", stock))

	run, err := s.Hammer(ctx, redistest.FailoverConfig{Strategy: r, SKU: "hot", KillAfter: int(stock / 3), StallReplica: 50 * time.Millisecond})
	require.NoError(t, err)
	var lost int
	for _, id := range run.AckedBeforeKill {
		if _, err := r.Lookup(ctx, id); errors.Is(err, inventory.ErrNotFound) {
			lost++
		} else {
			require.NoError(t, err)
		}
	}
	var units int64
	require.NoError(t, testsvc.Postgres(t).QueryRow(ctx, `SELECT coalesce(sum(l.qty), 0) FROM "`+schema+`".reservation r
JOIN "`+schema+`".reservation_line l ON l.reservation_id = r.id WHERE l.sku = 'hot' AND r.state IN (1, 2)`).Scan(&units))
	avail, err := r.Available(ctx, "hot")
	require.NoError(t, err)
	oversold := max(0, units-stock)
	t.Logf("FAILOVER strategy=redislock wait=0 %s lost_acked=%d pg_held_sold=%d pg_available=%d stock=%d pg_oversold=%d",
		run, lost, units, avail, stock, oversold)
	faultlog.Log(t, faultlog.Cell{Strategy: "redislock", Fault: faultlog.RedisFailover, Tried: int64(len(run.Acked)) + run.Refused + run.Retries, Oversold: oversold, Lost: int64(lost)})
	assert.Zero(t, lost, "every acknowledged reservation is in PostgreSQL")
	assert.Zero(t, oversold, "PostgreSQL sells each unit once")
	assert.Equal(t, stock, units+avail, "available + held + sold = stock")
	assert.Equal(t, int(stock), len(run.Acked), "the stock sold out, once")
}
