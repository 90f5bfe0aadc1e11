package redislock_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
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
// lagged, without and with WAIT for the replica: the new primary forgets
// locks and fencing counters it did not get, and PostgreSQL, which holds
// the stock and checks the fences, must still sell each unit once and keep
// every acknowledged reservation either way. It counts the writes the
// fence refused (a lock two requests held) and the calls refused for want
// of a replica.
func TestFailover(t *testing.T) {
	t.Parallel()
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("Wait%d", wait), func(t *testing.T) {
			t.Parallel()
			failover(t, wait)
		})
	}
}

func failover(t *testing.T, wait int) {
	stock := soak.Pick(int64(300), int64(3000))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := redistest.StartSentinel(t)
	c := s.FailoverClient(&redis.FailoverOptions{DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	schema := testsvc.Schema(t)
	r, err := redislock.New(testsvc.Postgres(t), c, &redislock.Options{Schema: schema, KeyPrefix: "invtest:failover:", LockTTL: time.Second, WaitReplicas: wait, ReplicaTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.SetStock(ctx, "hot", stock))

	var fenced, notReplicated atomic.Int64
	count := func(_ context.Context, err error) {
		switch {
		case errors.Is(err, redislock.ErrFenced):
			fenced.Add(1)
		case errors.Is(err, redislock.ErrNotReplicated):
			notReplicated.Add(1)
		}
	}
	started := time.Now()
	run, err := s.Hammer(ctx, redistest.FailoverConfig{Strategy: r, SKU: "hot", KillAfter: int(stock / 3), StallReplica: 50 * time.Millisecond, OnError: count})
	took := time.Since(started)
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
	t.Logf("FAILOVER strategy=redislock wait=%d %s fenced=%d not_replicated=%d hammer_ms=%d lost_acked=%d pg_held_sold=%d pg_available=%d stock=%d pg_oversold=%d",
		wait, run, fenced.Load(), notReplicated.Load(), took.Milliseconds(), lost, units, avail, stock, oversold)
	fault := faultlog.RedisFailover
	if wait > 0 {
		fault = faultlog.RedisFailoverWait
	}
	faultlog.Log(t, faultlog.Cell{Strategy: "redislock", Fault: fault, Tried: int64(len(run.Acked)) + run.Refused + run.Retries, Oversold: oversold, Lost: int64(lost)})
	assert.Zero(t, lost, "every acknowledged reservation is in PostgreSQL")
	assert.Zero(t, oversold, "PostgreSQL sells each unit once")
	assert.Equal(t, stock, units+avail, "available + held + sold = stock")
	assert.Equal(t, int(stock), len(run.Acked), "the stock sold out, once")
}

// TestWaitReplicasOptions refuses a negative WaitReplicas and WAIT on a
// Cluster client, where the WAIT would not follow the script's connection,
// and shows a lock no replica confirms given back: with no replica at all,
// Reserve fails with ErrNotReplicated, an inventory.ErrUnavailable, and
// changes nothing; the next Reserve takes the lock at once.
func TestWaitReplicasOptions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pg := testsvc.Postgres(t)
	_, err := redislock.New(pg, testsvc.Redis(t), &redislock.Options{WaitReplicas: -1})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	_, err = redislock.New(pg, cc, &redislock.Options{WaitReplicas: 1})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)

	srv := redistest.Start(t, nil) // no replica
	schema := testsvc.Schema(t)
	r, err := redislock.New(pg, srv.Client(nil), &redislock.Options{Schema: schema, WaitReplicas: 1, ReplicaTimeout: 20 * time.Millisecond, WaitTimeout: -1})
	require.NoError(t, err)
	require.NoError(t, r.Migrate(ctx))
	require.NoError(t, r.SetStock(ctx, "a", 3))
	_, err = r.Reserve(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.ErrorIs(t, err, redislock.ErrNotReplicated)
	require.ErrorIs(t, err, inventory.ErrUnavailable)
	_, err = r.Lookup(ctx, "r1")
	require.ErrorIs(t, err, inventory.ErrNotFound, "nothing recorded")
	n, err := r.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "nothing taken")
	r0, err := redislock.New(pg, srv.Client(nil), &redislock.Options{Schema: schema, WaitTimeout: -1})
	require.NoError(t, err)
	_, err = r0.Reserve(ctx, inventory.Request{ID: "r2", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err, "the unconfirmed lock was given back: one try takes it")
}
