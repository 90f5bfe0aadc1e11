package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	"github.com/oversell/inventory/redisstock"
)

// failoverStock is the stock of the SKU the failover hammer sells out; the
// primary is killed after a third of it is sold.
const failoverStock = int64(600)

// TestFailover sells out a SKU through a failover client while Sentinel
// promotes the replica of a SIGKILLed primary, without and with WAIT for
// the replica, and counts what the new primary lost of what was
// acknowledged before the kill, what PostgreSQL then holds beyond the
// stock, and whether Reconcile reports every reservation the two stores
// disagree on. The new primary lacks changes PostgreSQL has: the writer
// finds its sequence gone back, unloads the bucket, and the buyers Load
// (OnError), so that nothing is sold twice in PostgreSQL.
//
// Without WAIT the old primary comes back empty as a master
// (FailoverConfig.RestartEmpty): until Sentinel makes it a replica, two
// servers answer as masters, and on a loaded machine Sentinel may fail
// over a second time, to the emptied one, while the other keeps its data
// and its clients for seconds; the store must still end with PostgreSQL
// and Redis agreeing (TestLoadOnOneServer and TestOldMasterRefused are the
// quick checks of the two ways that went wrong). With WAIT the old primary
// comes back as a replica of the new master, as a server without
// persistence must, and nothing acknowledged before the kill may be lost.
// A twin applies events without the sequence check, as the writer did
// before it had one, and logs what PostgreSQL then sold twice (TestWentBack
// is the check that catches it every time).
//
// It starts five servers and waits for a failover each run: soak only
// (INVENTORY_TEST_SOAK=1).
func TestFailover(t *testing.T) {
	if !soak.On() {
		t.Skip("a Sentinel failover per run takes tens of seconds: INVENTORY_TEST_SOAK=1 runs it; TestWentBack, TestLoadOnOneServer, TestOldMasterRefused and TestLoadWaitsForReplicas check its parts quickly")
	}
	t.Parallel()
	for _, c := range []struct {
		name  string
		wait  int
		wrong bool
	}{{"Wait0", 0, false}, {"Wait1", 1, false}, {"Wait0IgnoringSequence", 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			failover(t, c.wait, c.wrong)
		})
	}
}

func failover(t *testing.T, wait int, wrong bool) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s := redistest.StartSentinel(t)
	c := s.FailoverClient(&redis.FailoverOptions{DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	in := setupBare(ctx, t, c, &redisstock.Options{WaitReplicas: wait})
	require.NoError(t, in.SetStock(ctx, "hot", failoverStock))
	w := in.NewWriter(&redisstock.WriterOptions{Poll: 20 * time.Millisecond})
	w.SetIgnoreSequence(wrong)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(wctx) })

	var loads atomic.Int64
	load := func(ctx context.Context, err error) {
		if errors.Is(err, redisstock.ErrNotLoaded) && in.Load(ctx) == nil {
			loads.Add(1)
		}
	}
	started := time.Now()
	run, err := s.Hammer(ctx, redistest.FailoverConfig{Strategy: in, SKU: "hot", KillAfter: int(failoverStock / 3), StallReplica: 50 * time.Millisecond, OnError: load, RestartEmpty: wait == 0})
	t.Logf("hammer took %s", time.Since(started))
	require.NoError(t, err)
	stop()
	wg.Wait()

	dw := in.NewWriter(nil)
	dw.SetIgnoreSequence(wrong)
	for {
		err := dw.Drain(ctx)
		if errors.Is(err, redisstock.ErrWentBack) || errors.Is(err, redisstock.ErrNotLoaded) {
			load(ctx, redisstock.ErrNotLoaded)
			continue
		}
		require.NoError(t, err)
		break
	}
	var lost []string
	lostAfter := 0 // acknowledged by the new primary before the writer found it behind
	before := map[string]bool{}
	for _, id := range run.AckedBeforeKill {
		before[id] = true
	}
	for _, id := range run.Acked {
		_, err := in.Lookup(ctx, id)
		if !errors.Is(err, inventory.ErrNotFound) {
			require.NoError(t, err)
			continue
		}
		if before[id] {
			lost = append(lost, id)
		} else {
			lostAfter++
		}
	}
	pg := testsvc.Postgres(t)
	var pgUnits, pgAvail int64
	require.NoError(t, pg.QueryRow(ctx, `SELECT coalesce(sum(l.qty), 0) FROM "`+in.Schema+`".reservation r
JOIN "`+in.Schema+`".reservation_line l ON l.reservation_id = r.id WHERE l.sku = 'hot' AND r.state IN (1, 2)`).Scan(&pgUnits))
	require.NoError(t, pg.QueryRow(ctx, `SELECT available FROM "`+in.Schema+`".stock WHERE sku = 'hot'`).Scan(&pgAvail))
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
	t.Logf("FAILOVER strategy=redisstock wait=%d seqcheck=%v %s lost_acked=%d lost_in_pg=%d lost_acked_after_kill=%d went_back=%d load_calls=%d reconcile_found=%d reconcile_differences=%d pg_held_sold=%d pg_available=%d stock=%d pg_oversold=%d",
		wait, !wrong, run, len(lost), len(lostInPG), lostAfter, w.WentBack()+dw.WentBack(), loads.Load(), found, len(rep.Differences), pgUnits, pgAvail, failoverStock, oversold)
	assert.Equal(t, len(lostInPG), found, "Reconcile reports every reservation PostgreSQL has and Redis lost")
	assert.Positive(t, run.Refused, "the stock sold out")
	if wrong {
		return // a measurement: the units sold twice are those of the events the writer applied and the replica missed
	}
	fault := faultlog.RedisFailover
	if wait > 0 {
		fault = faultlog.RedisFailoverWait
	}
	faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: fault, Tried: int64(len(run.Acked)) + run.Refused + run.Retries, Oversold: oversold, Lost: int64(len(lost))})
	assert.Zero(t, oversold, "nothing is sold twice in PostgreSQL")
	assert.Equal(t, failoverStock, pgUnits+pgAvail, "available + held + sold = stock in PostgreSQL")
	assert.Empty(t, rep.Differences, "Redis, rebuilt from PostgreSQL where it went back, agrees with it")
	if wait > 0 {
		assert.Empty(t, lost, "with WAIT for the replica, nothing acknowledged before the kill is lost")
	}
}

// TestWentBack puts Redis back in time, as a failover to a replica that
// missed writes does, but every time: the store's keys are saved, five
// units are reserved and written behind, and the saved keys are put back,
// markers and all. Redis then sells those five units again. The writer
// finds the bucket's sequence behind PostgreSQL's, applies nothing, and
// unloads the bucket; every call refuses with ErrNotLoaded until Load
// rebuilds from PostgreSQL, and the ledger holds each unit once. The twin
// applies without the check, as the writer did before it kept one, and
// the check finds the units sold twice.
func TestWentBack(t *testing.T) {
	t.Parallel()
	for _, wrong := range []bool{false, true} {
		t.Run(map[bool]string{false: "Refused", true: "IgnoringSequence"}[wrong], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := testsvc.Redis(t)
			in := setupBare(ctx, t, c, &redisstock.Options{Buckets: 2})
			w := in.NewWriter(nil)
			w.SetIgnoreSequence(wrong)
			const stock = 10
			require.NoError(t, in.SetStock(ctx, "a", stock))
			require.NoError(t, w.Drain(ctx))
			saved := map[string]string{}
			keys, err := c.Keys(ctx, in.Prefix+"*").Result()
			require.NoError(t, err)
			for _, k := range keys {
				saved[k], err = c.Dump(ctx, k).Result()
				require.NoError(t, err)
			}
			for i := range 5 {
				_, err := in.Reserve(ctx, req(fmt.Sprintf("before-%d", i), line("a", 1)))
				require.NoError(t, err)
			}
			require.NoError(t, w.Drain(ctx))
			keys, err = c.Keys(ctx, in.Prefix+"*").Result()
			require.NoError(t, err)
			require.NoError(t, c.Del(ctx, keys...).Err())
			for k, v := range saved {
				require.NoError(t, c.Restore(ctx, k, 0, v).Err())
			}
			sold := 0
			for i := range stock {
				if _, err := in.Reserve(ctx, req(fmt.Sprintf("after-%d", i), line("a", 1))); err == nil {
					sold++
				}
			}
			require.Equal(t, stock, sold, "the Redis that went back sells the units again")
			err = w.Drain(ctx)
			if !wrong {
				require.ErrorIs(t, err, redisstock.ErrWentBack)
				_, err = in.Reserve(ctx, req("refused", line("a", 1)))
				require.ErrorIs(t, err, redisstock.ErrNotLoaded, "the bucket refuses until Load")
				require.NoError(t, in.Load(ctx))
				require.NoError(t, w.Drain(ctx))
			} else {
				require.NoError(t, err)
			}
			pg := testsvc.Postgres(t)
			var units, avail int64
			require.NoError(t, pg.QueryRow(ctx, `SELECT coalesce(sum(l.qty), 0) FROM "`+in.Schema+`".reservation r
JOIN "`+in.Schema+`".reservation_line l ON l.reservation_id = r.id WHERE r.state IN (1, 2)`).Scan(&units))
			require.NoError(t, pg.QueryRow(ctx, `SELECT available FROM "`+in.Schema+`".stock WHERE sku = 'a'`).Scan(&avail))
			t.Logf("wrong=%v: PostgreSQL holds or sold %d of %d units, %d available", wrong, units, stock, avail)
			if wrong {
				assert.Greater(t, units, int64(stock), "without the sequence check PostgreSQL sells units twice")
				return
			}
			assert.Equal(t, int64(5), units, "the reservations PostgreSQL had are kept, those of the Redis that went back are lost")
			assert.Equal(t, int64(stock), units+avail, "available + held + sold = stock")
			n, err := in.Available(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, avail, n, "the rebuilt Redis agrees")
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Differences)
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
