package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	"github.com/oversell/inventory/redisstock"
)

// failoverStock is the stock of the SKU the failover hammer sells out; the
// primary is killed after a third of it is sold.
var failoverStock = soak.Pick(int64(600), int64(5000))

// TestFailover sells out a SKU through a failover client while Sentinel
// promotes the replica of a SIGKILLed primary, without and with WAIT for
// the replica, and counts what the new primary lost of what was
// acknowledged before the kill, what PostgreSQL then holds beyond the
// stock, and whether Reconcile reports every reservation the two stores
// disagree on.
func TestFailover(t *testing.T) {
	t.Parallel()
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("Wait%d", wait), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			s := redistest.StartSentinel(t)
			c := s.FailoverClient(&redis.FailoverOptions{DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
			in := setupBare(ctx, t, c, &redisstock.Options{WaitReplicas: wait})
			require.NoError(t, in.SetStock(ctx, "hot", failoverStock))
			w := in.NewWriter(&redisstock.WriterOptions{Poll: 20 * time.Millisecond})
			wctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { _ = w.Run(wctx) })

			started := time.Now()
			run, err := s.Hammer(ctx, redistest.FailoverConfig{Strategy: in, SKU: "hot", KillAfter: int(failoverStock / 3), StallReplica: 50 * time.Millisecond})
			t.Logf("hammer took %s", time.Since(started))
			require.NoError(t, err)
			stop()
			wg.Wait()

			var lost []string
			for _, id := range run.AckedBeforeKill {
				_, err := in.Lookup(ctx, id)
				if errors.Is(err, inventory.ErrNotFound) {
					lost = append(lost, id)
					continue
				}
				require.NoError(t, err)
			}
			require.NoError(t, in.NewWriter(nil).Drain(ctx))
			pg := testsvc.Postgres(t)
			var pgUnits int64
			require.NoError(t, pg.QueryRow(ctx, `SELECT coalesce(sum(l.qty), 0) FROM "`+in.Schema+`".reservation r
JOIN "`+in.Schema+`".reservation_line l ON l.reservation_id = r.id WHERE l.sku = 'hot' AND r.state IN (1, 2)`).Scan(&pgUnits))
			oversold := max(0, pgUnits-failoverStock)
			var lostInPG []string
			for _, id := range lost {
				var n int
				require.NoError(t, pg.QueryRow(ctx, `SELECT count(*) FROM "`+in.Schema+`".reservation WHERE id = $1`, id).Scan(&n))
				if n > 0 {
					lostInPG = append(lostInPG, id)
				}
			}
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			reported := map[string]bool{}
			for _, d := range rep.Differences {
				if d.Kind == "reservation" {
					reported[d.ID] = true
				}
			}
			found := 0
			for _, id := range lostInPG {
				if reported[id] {
					found++
				}
			}
			t.Logf("FAILOVER strategy=redisstock wait=%d %s lost_acked=%d lost_in_pg=%d reconcile_found=%d reconcile_differences=%d pg_held_sold=%d stock=%d pg_oversold=%d",
				wait, run, len(lost), len(lostInPG), found, len(rep.Differences), pgUnits, failoverStock, oversold)
			fault := faultlog.RedisFailover
			if wait > 0 {
				fault = faultlog.RedisFailoverWait
			}
			faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: fault, Tried: int64(len(run.Acked)) + run.Refused + run.Retries, Oversold: oversold, Lost: int64(len(lost))})

			assert.Equal(t, len(lostInPG), found, "Reconcile reports every reservation PostgreSQL has and the new primary lost")
			assert.Positive(t, run.Refused, "the stock sold out")
			if wait > 0 {
				assert.Empty(t, lost, "with WAIT for the replica, nothing acknowledged is lost")
				assert.Zero(t, oversold)
			}
		})
	}
}

// TestWaitReplicasOptions refuses a negative WaitReplicas and WAIT on a
// Cluster client, where the WAIT would not follow the script's connection.
func TestWaitReplicasOptions(t *testing.T) {
	pg := testsvc.Postgres(t)
	_, err := redisstock.New(pg, testsvc.Redis(t), &redisstock.Options{WaitReplicas: -1})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	_, err = redisstock.New(pg, cc, &redisstock.Options{WaitReplicas: 1})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
}
