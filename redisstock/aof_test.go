package redisstock_test

import (
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
	"github.com/oversell/inventory/redisstock"
)

// TestRedisRestartWithAOFKeepsWhatItAcknowledged SIGKILLs a redis-server
// that keeps an append-only file with appendfsync always while buyers
// reserve, and restarts it from the file: every reservation acknowledged
// before or after the kill is there, the store stays loaded (no call
// refuses with ErrNotLoaded once it is back), and the writer carries
// everything to PostgreSQL (the cleanup reconciles the two).
func TestRedisRestartWithAOFKeepsWhatItAcknowledged(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t, &redistest.Options{AppendOnly: true})
	c := srv.Client(&redis.Options{DialTimeout: 200 * time.Millisecond, MaxRetries: 2})
	in := setup(ctx, t, c, &redisstock.Options{Buckets: 4})
	// Buyers go on until want reservations are acknowledged, a third of
	// them before the kill, and afterWant after the restart.
	const stock, want, afterWant = 100_000, 300, 50
	require.NoError(t, in.SetStock(ctx, "a", stock))
	var mu sync.Mutex
	var acked []string
	var seq, retries, after atomic.Int64
	var back atomic.Bool
	var wg sync.WaitGroup
	restarted := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= want && after.Load() >= afterWant {
					return
				}
				id := fmt.Sprintf("aof-%d", seq.Add(1))
				for {
					_, err := in.Reserve(ctx, req(id, line("a", 1)))
					if err == nil {
						break
					}
					if !assert.NotErrorIs(t, err, redisstock.ErrNotLoaded, "the restarted server kept its marker") || ctx.Err() != nil {
						return
					}
					retries.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
				if back.Load() {
					after.Add(1)
				}
				mu.Lock()
				acked = append(acked, id)
				if len(acked) == want/3 {
					go func() { srv.Restart(); back.Store(true); close(restarted) }()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-restarted
	var lost int64
	for _, id := range acked {
		if _, err := in.Lookup(ctx, id); errors.Is(err, inventory.ErrNotFound) {
			lost++
		} else {
			require.NoError(t, err)
		}
	}
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	t.Logf("%d reservations acknowledged (%d after the restart), %d calls retried across it, %d lost; available %d of %d", len(acked), after.Load(), retries.Load(), lost, n, stock)
	faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.RedisRestartAOF, Tried: int64(len(acked)) + retries.Load(),
		Oversold: max(0, int64(len(acked))-(stock-n)), Lost: lost + max(0, (stock-n)-int64(len(acked)))})
	assert.GreaterOrEqual(t, after.Load(), int64(afterWant), "the buyers went on after the restart")
	assert.Zero(t, lost, "every acknowledged reservation survived the restart")
	assert.Equal(t, int64(stock-len(acked)), n, "each acknowledged reservation took its unit once")
}
