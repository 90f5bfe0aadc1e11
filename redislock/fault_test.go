package redislock

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// proxied returns a client of the shared Redis that goes through a fault
// proxy, with every script of the package loaded on the server so that the
// first call of each is an EVALSHA the proxy can match.
func proxied(t *testing.T) (*faultproxy.Proxy, *redis.Client) {
	t.Helper()
	opt, err := redis.ParseURL(testsvc.RedisURL(t))
	require.NoError(t, err)
	p, err := faultproxy.New(opt.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	opt.Addr = p.Addr()
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	loadScripts(t, c)
	return p, c
}

// dropReplies arms p to lose the reply of the next n calls of s, which go-redis
// then sends again.
func dropReplies(p *faultproxy.Proxy, s *redis.Script, n int) {
	p.Arm(faultproxy.Rule{Pattern: []byte(s.Hash()), Mode: faultproxy.DropReply, Times: n})
}

func request(sku string, qty int64) inventory.Request {
	return inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: sku, Qty: qty}}}
}

// fences returns the fence counter of sku in Redis and the fence its stock
// row carries in PostgreSQL.
func fences(t *testing.T, r *Reserver, sku string) (counter, row int64) {
	t.Helper()
	ctx := context.Background()
	_, fenceKey := skuKeys(r.locks.prefix, sku)
	counter, err := r.locks.client.Get(ctx, fenceKey).Int64()
	require.NoError(t, err)
	require.NoError(t, r.store.DB().QueryRow(ctx, "SELECT fence FROM "+r.store.Table("stock")+" WHERE sku = $1", sku).Scan(&row))
	return counter, row
}

func TestLostRepliesOfLockScriptsAreRetriedWithoutSelfBlockOrDoubleEffect(t *testing.T) {
	t.Parallel()
	p, c := proxied(t)
	inst := newShared(t)
	inst.rdb = c
	// No waiting: a retried acquisition that saw its own lock as someone
	// else's would fail at once with ErrContended.
	r := inst.reserver(t, Options{WaitTimeout: -1})
	ctx := context.Background()
	require.NoError(t, r.SetStock(ctx, "sku", 10))

	for i, s := range []*redis.Script{acquireScript, releaseScript} {
		dropReplies(p, s, 1)
		_, err := r.Reserve(ctx, request("sku", 1))
		require.NoError(t, err, "script %d", i)
		require.Equal(t, i+1, p.Fired(), "the reply was not dropped")

		avail, err := r.Available(ctx, "sku")
		require.NoError(t, err)
		assert.Equal(t, int64(9-i), avail, "the units were taken once")
		counter, row := fences(t, r, "sku")
		assert.Equal(t, counter, row, "the retry drew a second fence")
		key, _ := skuKeys(r.locks.prefix, "sku")
		assert.Zero(t, inst.rdb.Exists(ctx, key).Val(), "the lock outlived its request")
	}
}

func TestLostRepliesOfTheWatchdogKeepTheLock(t *testing.T) {
	t.Parallel()
	p, c := proxied(t)
	prefix := testsvc.RedisPrefix(t)
	l, err := newLocker(c, prefix, 300*time.Millisecond, -1)
	require.NoError(t, err)
	other, err := newLocker(testsvc.Redis(t), prefix, time.Second, -1)
	require.NoError(t, err)

	ls := mustAcquire(t, l, "sku")
	dropReplies(p, extendScript, 3)
	for range 8 {
		time.Sleep(100 * time.Millisecond)
		_, err := other.acquire(context.Background(), []string{"sku"})
		require.ErrorIs(t, err, inventory.ErrContended, "the lock lapsed")
	}
	assert.Equal(t, 3, p.Fired())
	assert.False(t, ls.lost.Load())
}

func TestHammerWithLostRedisRepliesKeepsTheInvariant(t *testing.T) {
	t.Parallel()
	p, c := proxied(t)
	inst := newShared(t)
	inst.rdb = c
	// A lock whose every reply was lost (go-redis gave up) is released
	// blind or not at all; keep such leftovers short-lived.
	r := inst.reserver(t, Options{LockTTL: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		scripts := []*redis.Script{acquireScript, releaseScript}
		for ctx.Err() == nil {
			dropReplies(p, scripts[rand.IntN(len(scripts))], 1)
			time.Sleep(time.Duration(2+rand.IntN(10)) * time.Millisecond)
		}
	}()
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: r, Workers: 16, SKUs: 4, Stock: 60, MaxLines: 3, OpsPerWorker: 15, Faults: true,
		Observe: func(op string, _ time.Duration, err error) {
			if err != nil && strategytest.ErrorKind(err) == "other" {
				t.Errorf("%s: an error that errors.Is no inventory sentinel: %v", op, err)
			}
		},
	})
	cancel()
	require.NoError(t, err)
	t.Log(rep, "; replies dropped:", p.Fired())
	assert.Positive(t, p.Fired())
	assert.Zero(t, rep.Oversold)
	assert.Zero(t, rep.Lost)
	assert.False(t, rep.NegativeSeen)
	assert.Empty(t, rep.Unexpected)
	faultlog.Log(t, faultlog.Cell{Strategy: "redislock", Fault: faultlog.ReplyAfterCommit, Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})
}

// ownRedis is a redis-server of the test's own and an installation on it.
func ownRedis(t *testing.T) (*redistest.Server, *shared) {
	t.Helper()
	return ownRedisWith(t, nil)
}

// ownRedisWith is ownRedis with the server started with opts.
func ownRedisWith(t *testing.T, opts *redistest.Options) (*redistest.Server, *shared) {
	t.Helper()
	srv := redistest.Start(t, opts)
	c := srv.Client(&redis.Options{DialTimeout: 250 * time.Millisecond, MaxRetries: 2})
	inst := newShared(t)
	inst.rdb = c
	return srv, inst
}

func TestRedisDownFailsReserveCleanlyAndItWorksAgainAfterARestart(t *testing.T) {
	t.Parallel()
	srv, inst := ownRedis(t)
	r := inst.reserver(t, Options{})
	ctx := context.Background()
	require.NoError(t, r.SetStock(ctx, "a", 5))
	require.NoError(t, r.SetStock(ctx, "b", 5))
	_, err := r.Reserve(ctx, request("a", 1))
	require.NoError(t, err)

	srv.Stop()
	req := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 1}}}
	_, err = r.Reserve(ctx, req)
	require.Error(t, err)
	var opErr *net.OpError
	assert.ErrorAs(t, err, &opErr, "the Redis error is wrapped: %v", err)
	assert.NotErrorIs(t, err, inventory.ErrContended)
	_, err = r.Lookup(ctx, req.ID)
	assert.ErrorIs(t, err, inventory.ErrNotFound, "nothing recorded")
	for sku, want := range map[string]int64{"a": 4, "b": 5} {
		n, err := r.Available(ctx, sku)
		require.NoError(t, err)
		assert.Equal(t, want, n, "stock of %s untouched", sku)
	}

	// The restarted server remembers no lock and no fence counter; fences
	// drawn from its clock still outrank those PostgreSQL has seen.
	srv.Restart()
	_, err = r.Reserve(ctx, req)
	require.NoError(t, err)
	for sku, want := range map[string]int64{"a": 3, "b": 4} {
		n, err := r.Available(ctx, sku)
		require.NoError(t, err)
		assert.Equal(t, want, n)
	}
}

func TestRedisRestartMidReserveFencesTheHolderWhoseLockVanished(t *testing.T) {
	t.Parallel()
	srv, inst := ownRedis(t)
	a := inst.reserver(t, Options{})
	b := inst.reserver(t, Options{})
	ctx := context.Background()
	require.NoError(t, b.SetStock(ctx, "sku", 1))

	stalled, resume := stall(a)
	defer resume()
	idA, idB := strategytest.RandomID(), strategytest.RandomID()
	doneA := reserveAsync(a, idA, "sku", 1)
	<-stalled
	srv.Restart() // A's lock is gone with the data
	_, err := b.Reserve(ctx, inventory.Request{ID: idB, Lines: []inventory.Line{{SKU: "sku", Qty: 1}}})
	require.NoError(t, err)
	resume()
	gotA := <-doneA

	require.ErrorIs(t, gotA.err, ErrFenced)
	avail, err := b.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Zero(t, avail)
	assert.Equal(t, int64(1), heldUnits(t, b, "sku", idA, idB))
}

func TestHammerAcrossARedisRestartKeepsTheInvariant(t *testing.T) {
	t.Parallel()
	hammerAcrossARestart(t, nil, Options{}, faultlog.RedisRestartNoAOF)
}

// TestHammerAcrossARedisRestartWithAOFKeepsTheInvariant SIGKILLs a
// redis-server that keeps an append-only file (appendfsync always) while
// buyers reserve, and restarts it from the file: nothing is oversold or
// lost, and it works afterwards with no repair.
func TestHammerAcrossARedisRestartWithAOFKeepsTheInvariant(t *testing.T) {
	t.Parallel()
	// The file brings back the locks of the calls the kill cut short,
	// whose owners could not release them: keep them short-lived.
	hammerAcrossARestart(t, &redistest.Options{AppendOnly: true}, Options{LockTTL: 500 * time.Millisecond}, faultlog.RedisRestartAOF)
}

// hammerAcrossARestart restarts a redis-server started with opts while a
// hammer runs on a Reserver with ropts, checks the exact invariant and logs
// it as fault.
func hammerAcrossARestart(t *testing.T, opts *redistest.Options, ropts Options, fault string) {
	srv, inst := ownRedisWith(t, opts)
	r := inst.reserver(t, ropts)
	ctx := context.Background()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(300 * time.Millisecond)
		srv.Restart()
	}()
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: r, Workers: 16, SKUs: 5, Stock: 200, MaxLines: 3, Duration: 1500 * time.Millisecond, Faults: true,
	})
	<-restarted
	require.NoError(t, err)
	t.Log(rep)
	assert.Zero(t, rep.Oversold)
	assert.Zero(t, rep.Lost)
	assert.False(t, rep.NegativeSeen)
	assert.Empty(t, rep.Unexpected)
	assert.Zero(t, rep.Errors["other"], "errors that errors.Is no inventory sentinel")
	faultlog.Log(t, faultlog.Cell{Strategy: "redislock", Fault: fault, Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})

	// And it works afterwards, with no repair.
	require.NoError(t, r.SetStock(ctx, "after", 1))
	_, err = r.Reserve(ctx, request("after", 1))
	require.NoError(t, err)
}
