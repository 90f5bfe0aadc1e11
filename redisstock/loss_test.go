package redisstock_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
)

// TestRedisLossMidSellOutOversellsNothing SIGKILLs a redis-server that keeps
// nothing on disk while buyers sell out a SKU kept in one bucket, and
// restarts it empty. Every
// call then refuses with ErrNotLoaded until a buyer runs Load, which rebuilds
// Redis from PostgreSQL, and the sale goes on to the last unit. At the end
// the ledger holds exactly the stock: the reservations acknowledged before
// the kill and not yet written behind are lost (their units were sold again),
// and no other is; nothing is oversold in PostgreSQL.
func TestRedisLossMidSellOutOversellsNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t, nil)
	c := srv.Client(&redis.Options{DialTimeout: 200 * time.Millisecond, MaxRetries: 2})
	in := setup(ctx, t, c, &redisstock.Options{Buckets: 1})
	const stock, killAt = 2000, 200
	require.NoError(t, in.SetStock(ctx, "a", stock))

	var mu sync.Mutex
	var acked []string
	beforeKill := map[string]bool{} // acknowledged by the server that was killed
	var seq, retries, notLoaded, loads atomic.Int64
	var restarted sync.WaitGroup
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				id := fmt.Sprintf("loss-%d", seq.Add(1))
				for {
					_, err := in.Reserve(ctx, req(id, line("a", 1)))
					if err == nil {
						break
					}
					if errors.Is(err, inventory.ErrInsufficientStock) {
						return // sold out
					}
					if errors.Is(err, redisstock.ErrNotLoaded) {
						notLoaded.Add(1)
						if lerr := in.Load(ctx); lerr == nil {
							loads.Add(1)
						}
					}
					if ctx.Err() != nil {
						return
					}
					retries.Add(1) // the same ID again: unknown outcomes settle, refusals repeat
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				acked = append(acked, id)
				if len(acked) == killAt {
					restarted.Add(1)
					go func() {
						defer restarted.Done()
						srv.Restart() // SIGKILL, then a server of the same port that is empty
						mu.Lock()
						defer mu.Unlock()
						for _, a := range acked { // none is acknowledged between the kill and the restart
							beforeKill[a] = true
						}
					}()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	restarted.Wait()
	require.NoError(t, in.Writer.Drain(ctx), "drain what the rebuilt Redis appended")

	var kept, lost, lostAfter int64
	for _, id := range acked {
		_, err := in.Lookup(ctx, id)
		switch {
		case errors.Is(err, inventory.ErrNotFound):
			lost++
			if !beforeKill[id] {
				lostAfter++
			}
		default:
			require.NoError(t, err)
			kept++
		}
	}
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	var pgUnits int64
	require.NoError(t, testsvc.Postgres(t).QueryRow(ctx, "SELECT coalesce(sum(l.qty), 0) FROM "+pgx.Identifier{in.Schema}.Sanitize()+".reservation r JOIN "+
		pgx.Identifier{in.Schema}.Sanitize()+".reservation_line l ON l.reservation_id = r.id WHERE r.state IN (1, 2)").Scan(&pgUnits))
	t.Logf("%d reservations acknowledged, %d by the killed server; %d lost, %d kept; %d calls refused as not loaded, %d retries; available %d; %d units held or sold in PostgreSQL",
		len(acked), len(beforeKill), lost, kept, notLoaded.Load(), retries.Load(), n, pgUnits)
	faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.RedisRestartNoAOF, Tried: int64(len(acked)) + retries.Load(),
		Oversold: max(0, kept-stock), Lost: lost})
	assert.Positive(t, notLoaded.Load(), "the restarted server was found empty")
	assert.Zero(t, n, "sold out")
	assert.Equal(t, int64(stock), kept, "the acknowledged reservations still known hold exactly the stock")
	assert.Equal(t, int64(stock), pgUnits, "PostgreSQL holds or has sold exactly the stock: nothing oversold, no unit lost")
	assert.Zero(t, lostAfter, "only reservations acknowledged by the killed server can be lost")
}
