package redislock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// shared is one installation: a schema and a key prefix that several
// Reservers (processes) share.
type shared struct {
	db     DB
	rdb    redis.UniversalClient
	schema string
	prefix string
}

func newShared(t *testing.T) *shared {
	t.Helper()
	return &shared{db: testsvc.Postgres(t), rdb: testsvc.Redis(t), schema: testsvc.Schema(t), prefix: testsvc.RedisPrefix(t)}
}

// reserver returns a migrated Reserver on the installation; opts' Schema and
// KeyPrefix are filled in.
func (s *shared) reserver(t *testing.T, opts Options) *Reserver {
	t.Helper()
	opts.Schema, opts.KeyPrefix = s.schema, s.prefix
	r, err := New(s.db, s.rdb, &opts)
	require.NoError(t, err)
	require.NoError(t, r.Migrate(context.Background()))
	return r
}

// stall makes r's next Reserve stop after reading and checking the stock,
// before writing it, until the returned resume is called. stalled is closed
// when it stops.
func stall(r *Reserver) (stalled <-chan struct{}, resume func()) {
	st, res := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.beforeWrite = func() {
		first := false
		once.Do(func() { first = true })
		if first {
			close(st)
			<-res
		}
	}
	return st, sync.OnceFunc(func() { close(res) })
}

// waitLockGone waits until no one holds the lock of sku.
func waitLockGone(t *testing.T, r *Reserver, sku string) {
	t.Helper()
	key, _ := skuKeys(r.locks.prefix, sku)
	require.Eventually(t, func() bool {
		n, err := r.locks.client.Exists(context.Background(), key).Result()
		return err == nil && n == 0
	}, 5*time.Second, 5*time.Millisecond, "the lock of %q never lapsed", sku)
}

type reserveResult struct {
	res inventory.Reservation
	err error
}

func reserveAsync(r *Reserver, id, sku string, qty int64) <-chan reserveResult {
	done := make(chan reserveResult, 1)
	go func() {
		res, err := r.Reserve(context.Background(), inventory.Request{ID: id, Lines: []inventory.Line{{SKU: sku, Qty: qty}}})
		done <- reserveResult{res, err}
	}()
	return done
}

// heldUnits returns the units of sku held by the reservations ids that
// exist.
func heldUnits(t *testing.T, r *Reserver, sku string, ids ...string) int64 {
	t.Helper()
	var n int64
	for _, id := range ids {
		res, err := r.Lookup(context.Background(), id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		for _, l := range res.Lines {
			if l.SKU == sku && res.State == inventory.Held {
				n += l.Qty
			}
		}
	}
	return n
}

// pausedHolderSchedule runs the schedule fencing exists for: holder A takes
// the lock of "sku" (one unit in stock), reads the stock and stalls past its
// lock TTL; B takes the lock, reserves the unit and commits; then A resumes
// and writes. It returns A's result and the Reserver B used, for checks.
func pausedHolderSchedule(t *testing.T, unfenced bool) (reserveResult, *Reserver, string, string) {
	t.Helper()
	inst := newShared(t)
	// A stalls with its whole process: no watchdog renews its lock.
	a := inst.reserver(t, Options{LockTTL: 100 * time.Millisecond})
	a.locks.noWatchdog = true
	b := inst.reserver(t, Options{})
	a.unfenced, b.unfenced = unfenced, unfenced
	ctx := context.Background()
	require.NoError(t, b.SetStock(ctx, "sku", 1))

	stalled, resume := stall(a)
	defer resume()
	idA, idB := strategytest.RandomID(), strategytest.RandomID()
	doneA := reserveAsync(a, idA, "sku", 1)
	<-stalled
	waitLockGone(t, a, "sku")

	resB, err := b.Reserve(ctx, inventory.Request{ID: idB, Lines: []inventory.Line{{SKU: "sku", Qty: 1}}})
	require.NoError(t, err, "B holds the lock now and the unit is there")
	assert.Equal(t, inventory.Held, resB.State)

	resume()
	return <-doneA, b, idA, idB
}

func TestFencingRefusesTheWriteOfAHolderWhoseLockLapsed(t *testing.T) {
	t.Parallel()
	gotA, b, idA, idB := pausedHolderSchedule(t, false)

	require.ErrorIs(t, gotA.err, ErrFenced, "A wrote after its lock lapsed and B wrote")
	assert.ErrorIs(t, gotA.err, inventory.ErrContended)
	var fe *FencedError
	require.ErrorAs(t, gotA.err, &fe)
	assert.Equal(t, "sku", fe.SKU)
	assert.Greater(t, fe.Seen, fe.Fence)

	ctx := context.Background()
	_, err := b.Lookup(ctx, idA)
	assert.ErrorIs(t, err, inventory.ErrNotFound, "A's transaction rolled back whole")
	avail, err := b.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Zero(t, avail)
	assert.Equal(t, int64(1), heldUnits(t, b, "sku", idA, idB), "one unit, one hold")
}

func TestWithoutFencingTheSameScheduleOversells(t *testing.T) {
	t.Parallel()
	gotA, b, idA, idB := pausedHolderSchedule(t, true)

	// The lock alone: A's write goes through on a stale read.
	require.NoError(t, gotA.err)
	avail, err := b.Available(context.Background(), "sku")
	require.NoError(t, err)
	assert.Zero(t, avail)
	assert.Equal(t, int64(2), heldUnits(t, b, "sku", idA, idB), "two units held out of one: oversold")
}

func TestStaleWriteBetweenTheReadAndWriteOfTheNewHolderDoesNotOversell(t *testing.T) {
	t.Parallel()
	// A comparison of fences alone (write if the row's fence is older than
	// mine) lets this through: B reads, stale A writes (its fence is older
	// than B's, and newer than the row's), B writes on its stale read.
	inst := newShared(t)
	a := inst.reserver(t, Options{LockTTL: 100 * time.Millisecond})
	a.locks.noWatchdog = true
	b := inst.reserver(t, Options{})
	ctx := context.Background()
	require.NoError(t, b.SetStock(ctx, "sku", 1))

	stalledA, resumeA := stall(a)
	defer resumeA()
	stalledB, resumeB := stall(b)
	defer resumeB()
	idA, idB := strategytest.RandomID(), strategytest.RandomID()
	doneA := reserveAsync(a, idA, "sku", 1)
	<-stalledA
	waitLockGone(t, a, "sku")
	doneB := reserveAsync(b, idB, "sku", 1)
	<-stalledB // B holds the lock and has read one unit

	resumeA()
	gotA := <-doneA
	resumeB()
	gotB := <-doneB

	// A's read-check-write saw no other write in between: it may stand.
	// B's write then finds the stock moved, reads again and is refused.
	require.NoError(t, gotA.err)
	require.ErrorIs(t, gotB.err, inventory.ErrInsufficientStock)
	avail, err := b.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Zero(t, avail)
	assert.Equal(t, int64(1), heldUnits(t, b, "sku", idA, idB), "one unit, one hold")
}

func TestUnlockedReturnBetweenReadAndWriteIsNotLost(t *testing.T) {
	t.Parallel()
	// Release, expiry and stock administration take no Redis lock; a
	// release landing between a holder's read and write must not be
	// overwritten by the write.
	inst := newShared(t)
	r := inst.reserver(t, Options{})
	ctx := context.Background()
	require.NoError(t, r.SetStock(ctx, "sku", 10))
	first, err := r.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "sku", Qty: 4}}})
	require.NoError(t, err)

	other := inst.reserver(t, Options{})
	stalled, resume := stall(other)
	defer resume()
	id := strategytest.RandomID()
	done := reserveAsync(other, id, "sku", 3) // reads 6
	<-stalled
	require.NoError(t, r.Release(ctx, first.ID)) // 6 -> 10
	_, err = r.AddStock(ctx, "sku", 5)           // 10 -> 15
	require.NoError(t, err)
	resume()
	got := <-done
	require.NoError(t, got.err)

	avail, err := r.Available(ctx, "sku")
	require.NoError(t, err)
	assert.Equal(t, int64(12), avail, "10 - 4 + 4 + 5 - 3")
}
