package redislock

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
)

// testLocker returns a locker on the shared Redis under a prefix of the
// test's own.
func testLocker(t *testing.T, ttl, wait time.Duration) *locker {
	t.Helper()
	l, err := newLocker(testsvc.Redis(t), testsvc.RedisPrefix(t), ttl, wait)
	require.NoError(t, err)
	return l
}

// mustAcquire takes the locks of skus or fails the test.
func mustAcquire(t *testing.T, l *locker, skus ...string) *lease {
	t.Helper()
	ls, err := l.acquire(context.Background(), skus)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ls.release(context.Background()) })
	return ls
}

// lockOwner returns the owner stored in the lock of sku, or "" if none.
func lockOwner(t *testing.T, l *locker, sku string) string {
	t.Helper()
	key, _ := skuKeys(l.prefix, sku)
	v, err := l.client.Get(context.Background(), key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	require.NoError(t, err)
	return v
}

func TestLockOneHolderAtATimeUnder64Goroutines(t *testing.T) {
	t.Parallel()
	l := testLocker(t, 2*time.Second, 30*time.Second)
	skus := []string{"a", "b", "c"}
	var inside [3]atomic.Int32
	var lastFence [3]atomic.Int64
	var sections, overlaps, fenceRegressions atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 4 {
				// One SKU or two, so that multi-key all-or-none is raced too.
				pick := []int{r.IntN(3)}
				if r.IntN(2) == 0 {
					if o := r.IntN(3); o != pick[0] {
						pick = append(pick, o)
					}
				}
				slices.Sort(pick)
				req := make([]string, len(pick))
				for i, p := range pick {
					req[i] = skus[p]
				}
				ls, err := l.acquire(context.Background(), req)
				if !assert.NoError(t, err) {
					return
				}
				for i, p := range pick {
					if inside[p].Add(1) != 1 {
						overlaps.Add(1)
					}
					if f := ls.fences[i]; f <= lastFence[p].Load() {
						fenceRegressions.Add(1)
					} else {
						lastFence[p].Store(f)
					}
				}
				time.Sleep(time.Duration(r.IntN(500)) * time.Microsecond)
				for _, p := range pick {
					inside[p].Add(-1)
				}
				sections.Add(1)
				assert.NoError(t, ls.release(context.Background()))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(64*4), sections.Load())
	assert.Zero(t, overlaps.Load(), "two holders of one lock at once")
	assert.Zero(t, fenceRegressions.Load(), "a fence did not grow")
}

func TestLockReleaseAndExtendByNonOwnerDoNothing(t *testing.T) {
	t.Parallel()
	l := testLocker(t, 5*time.Second, time.Second)
	mine := mustAcquire(t, l, "sku")

	thief, err := l.newLease([]string{"sku"})
	require.NoError(t, err)
	require.NotEqual(t, mine.owner, thief.owner)
	require.NoError(t, thief.release(context.Background()))
	assert.Equal(t, mine.owner, lockOwner(t, l, "sku"), "a non-owner released the lock")
	ok, err := thief.extend(context.Background())
	require.NoError(t, err)
	assert.False(t, ok, "a non-owner extended the lock")

	ok, err = mine.extend(context.Background())
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, mine.release(context.Background()))
	assert.Empty(t, lockOwner(t, l, "sku"))
}

func TestLockOwnerTokensAre128RandomBits(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		o, err := newOwner()
		require.NoError(t, err)
		require.Len(t, o, 32)
		require.False(t, seen[o])
		seen[o] = true
	}
}

func TestLockWatchdogKeepsLongSectionLocked(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	l := testLocker(t, ttl, time.Second)
	other := *l
	other.wait = 20 * time.Millisecond

	ls := mustAcquire(t, l, "long")
	deadline := time.Now().Add(4 * ttl)
	for time.Now().Before(deadline) {
		_, err := other.acquire(context.Background(), []string{"long"})
		require.ErrorIs(t, err, inventory.ErrContended, "the lock lapsed while its section ran")
		time.Sleep(30 * time.Millisecond)
	}
	assert.Equal(t, ls.owner, lockOwner(t, l, "long"))
	assert.False(t, ls.lost.Load())
	require.NoError(t, ls.release(context.Background()))

	// The watchdog stopped with the section: the lock is free at once.
	got, err := other.acquire(context.Background(), []string{"long"})
	require.NoError(t, err)
	require.NoError(t, got.release(context.Background()))
}

func TestLockWithoutWatchdogExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	l := testLocker(t, 100*time.Millisecond, time.Second)
	stalled := *l
	stalled.noWatchdog = true
	a := mustAcquire(t, &stalled, "sku")
	time.Sleep(150 * time.Millisecond)

	b := mustAcquire(t, l, "sku")
	assert.Greater(t, b.fences[0], a.fences[0])
	ok, err := a.extend(context.Background())
	require.NoError(t, err)
	assert.False(t, ok, "an expired holder extended a lock now held by another")
	require.NoError(t, a.release(context.Background()))
	assert.Equal(t, b.owner, lockOwner(t, l, "sku"), "an expired holder released another's lock")
}

func TestLockWaitTimesOutWithContendedAndChangesNothing(t *testing.T) {
	t.Parallel()
	l := testLocker(t, 5*time.Second, 200*time.Millisecond)
	holder := mustAcquire(t, l, "b")

	start := time.Now()
	_, err := l.acquire(context.Background(), []string{"a", "b", "c"})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, inventory.ErrContended)
	var ce *ContendedError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "b", ce.SKU)
	assert.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
	assert.Less(t, elapsed, 2*time.Second)

	assert.Empty(t, lockOwner(t, l, "a"), "all or none: a stayed locked")
	assert.Empty(t, lockOwner(t, l, "c"), "all or none: c stayed locked")
	assert.Equal(t, holder.owner, lockOwner(t, l, "b"))
}

func TestLockNegativeWaitTriesOnce(t *testing.T) {
	t.Parallel()
	l, err := newLocker(testsvc.Redis(t), testsvc.RedisPrefix(t), time.Second, -1)
	require.NoError(t, err)
	mustAcquire(t, l, "x")
	start := time.Now()
	_, err = l.acquire(context.Background(), []string{"x"})
	require.ErrorIs(t, err, inventory.ErrContended)
	assert.Less(t, time.Since(start), 500*time.Millisecond)
}

func TestLockCancelledContextStopsWaitAtOnce(t *testing.T) {
	t.Parallel()
	l := testLocker(t, 5*time.Second, 30*time.Second)
	mustAcquire(t, l, "x")

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := l.acquire(ctx, []string{"w", "x"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), time.Second)
	assert.Empty(t, lockOwner(t, l, "w"))
}

func TestLockScriptRetriedAfterLostReplyIsAcquiredWithSameFences(t *testing.T) {
	t.Parallel()
	l := testLocker(t, 5*time.Second, time.Second)
	ls, err := l.newLease([]string{"p", "q"})
	require.NoError(t, err)
	busy, err := ls.try(context.Background())
	require.NoError(t, err)
	require.Equal(t, -1, busy)
	first := slices.Clone(ls.fences)

	// What go-redis does when the reply was lost: the same call again.
	busy, err = ls.try(context.Background())
	require.NoError(t, err)
	assert.Equal(t, -1, busy, "a retried acquisition blocked on itself")
	assert.Equal(t, first, ls.fences, "a retried acquisition drew new fences")
	require.NoError(t, ls.release(context.Background()))

	again := mustAcquire(t, l, "p", "q")
	assert.Greater(t, again.fences[0], first[0])
	assert.Greater(t, again.fences[1], first[1])
}

func TestLockFencesKeepGrowingAfterRedisRestartsEmpty(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	l, err := newLocker(srv.Client(nil), "p:", time.Second, time.Second)
	require.NoError(t, err)
	var last int64
	for range 3 {
		ls, err := l.acquire(context.Background(), []string{"sku"})
		require.NoError(t, err)
		assert.Greater(t, ls.fences[0], last)
		last = ls.fences[0]
		require.NoError(t, ls.release(context.Background()))
	}
	srv.Restart()
	ls, err := l.acquire(context.Background(), []string{"sku"})
	require.NoError(t, err)
	assert.Greater(t, ls.fences[0], last, "the fence went back after a restart")
	require.NoError(t, ls.release(context.Background()))
}

func TestLockOnClusterTakesEachSlotGroupAndNeverSplitsASKU(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	c := srv.ClusterClient()
	l, err := newLocker(c, "p:", 5*time.Second, 150*time.Millisecond)
	require.NoError(t, err)
	require.True(t, l.bySlot)

	skus := []string{"a", "b", "c", "d", "e"}
	ls, err := l.newLease(skus)
	require.NoError(t, err)
	require.Greater(t, len(ls.groups), 1, "the SKUs should span slots")

	// One script across slots is refused by a cluster: the grouping is needed.
	single := *l
	single.bySlot = false
	_, err = single.acquire(context.Background(), skus)
	require.Error(t, err)
	assert.True(t, redis.HasErrorPrefix(errors.Unwrap(err), "CROSSSLOT"), "got %v", err)

	got, err := l.acquire(context.Background(), skus)
	require.NoError(t, err)
	for i, sku := range skus {
		assert.Equal(t, got.owner, lockOwner(t, l, sku))
		assert.Positive(t, got.fences[i])
	}

	// All or none across slot groups: a busy SKU gives back the others.
	_, err = l.acquire(context.Background(), []string{"a", "b", "c", "d", "e", "f"})
	require.ErrorIs(t, err, inventory.ErrContended)
	require.NoError(t, got.release(context.Background()))
	holder := mustAcquire(t, l, "d")
	_, err = l.acquire(context.Background(), skus)
	var ce *ContendedError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "d", ce.SKU)
	for _, sku := range []string{"a", "b", "c", "e"} {
		assert.Empty(t, lockOwner(t, l, sku), "sku %s stayed locked", sku)
	}
	require.NoError(t, holder.release(context.Background()))
}

func TestKeysEscapeBracesAndColonsInSKUs(t *testing.T) {
	t.Parallel()
	skus := []string{"a", "a}", "{a}", "a:b", "}{", "x}lock:{a", "{", "}", ":", "lock:{YQ}", "ü{ß}"}
	seen := map[string]string{}
	for _, sku := range skus {
		lock, fence := skuKeys("p:", sku)
		assert.Equal(t, keySlot(lock), keySlot(fence), "sku %q: lock and fence keys in different slots", sku)
		for _, k := range []string{lock, fence} {
			if other, dup := seen[k]; dup {
				t.Errorf("skus %q and %q share key %q", sku, other, k)
			}
			seen[k] = sku
		}
		// The hash tag is exactly the encoded SKU.
		tag := lock[len("p:lock:{") : len(lock)-1]
		assert.NotContains(t, tag, "{")
		assert.NotContains(t, tag, "}")
		assert.NotContains(t, tag, ":")
		assert.Equal(t, int(crc16(tag)%16384), keySlot(lock))
	}
}

func TestKeySlotMatchesRedisCluster(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 12739, keySlot("123456789"))
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	c := srv.Client(nil)
	keys := []string{"", "a", "{a}", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{user1000}.following", "shop{eu}:lock:{YQ}"}
	for _, sku := range []string{"a", "}{", "a:b"} {
		lock, fence := skuKeys("p{x}:", sku)
		keys = append(keys, lock, fence)
	}
	for _, k := range keys {
		want, err := c.ClusterKeySlot(context.Background(), k).Result()
		require.NoError(t, err)
		assert.Equal(t, int(want), keySlot(k), "slot of %q", k)
	}
}

func TestKeyPrefixThatWouldSplitASKUsKeysIsRefused(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "app:", "a}b:", "shop{eu}:", "x{y}z{"} {
		assert.NoError(t, checkPrefix(p), "prefix %q", p)
	}
	for _, p := range []string{"{", "app{", "{}", "a{}b}"} {
		assert.Error(t, checkPrefix(p), "prefix %q", p)
	}
	// A prefix with a complete tag puts every key in its slot.
	for _, sku := range []string{"a", "b", "}{"} {
		lock, fence := skuKeys("shop{eu}:", sku)
		assert.Equal(t, keySlot("{eu}"), keySlot(lock))
		assert.Equal(t, keySlot("{eu}"), keySlot(fence))
	}
	c := redis.NewClient(&redis.Options{})
	defer c.Close()
	_, err := newLocker(c, "app{", 0, 0)
	assert.Error(t, err)
}
