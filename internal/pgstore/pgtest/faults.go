package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/faulttest"
	"github.com/oversell/inventory/internal/soak"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/internal/unreach/unreachtest"
	"github.com/oversell/inventory/strategy/strategytest"
)

// FaultPoint is a place in a strategy's Reserve where the fault tests break
// the connection.
type FaultPoint = faulttest.Point

// WritePattern returns the bytes by which pgx binds id as the first
// parameter of the store's writing statements (the reservation insert, the
// settle statements), which bind a timestamp right after it: the ID, then
// the 4-byte length 8 of a binary timestamp. The lookups, which bind the ID
// alone, do not match.
func WritePattern(id string) []byte {
	return binary.BigEndian.AppendUint32([]byte(id), 8)
}

// BatchPoint is the batch that records the reservation and runs the step.
func BatchPoint(commits bool) FaultPoint {
	return FaultPoint{Name: "batch", Pattern: WritePattern, Commits: commits}
}

// CommitPoint is the last batch of an explicit transaction, which ends with
// COMMIT. pgx (in its default statement-cache mode) binds the prepared
// "commit" by a name made from the SQL's digest; the pattern is that name
// as a Bind message carries it, which the Parse that prepares it does not
// match.
func CommitPoint() FaultPoint {
	digest := sha256.Sum256([]byte("commit"))
	bind := []byte("\x00stmtcache_" + hex.EncodeToString(digest[:24]) + "\x00")
	return FaultPoint{Name: "commit", Pattern: func(string) []byte { return bind }, Commits: true}
}

// RunFaults runs the fault tests on strategies made by mk, breaking Reserve
// at points:
//
//   - the fault tests every SQL store shares (faulttest.Run):
//     LostRepliesApplyOnceOnRetry, SessionsKilledDuringHammer (the server
//     terminates the strategy's backends) and
//     RandomDeadlinesLeaveNothingBehind;
//   - CancelledAtRandomDuringHammer: a hammer with a third of its calls on
//     deadlines of up to a millisecond holds the invariant.
//   - CrossingCartsNeverDeadlock: carts over the same SKUs in every order,
//     with releases and sweeps, never fail with a deadlock (40P01) or trip
//     the CHECK constraint (23514).
//   - CancelledWaitingForAConnection: see CancelledWaitingForAConnection.
//   - UnreachableServerIsUnavailable: see UnreachableServerIsUnavailable.
//
// Each runs what its checks need to be able to fail; INVENTORY_TEST_SOAK=1
// runs them several times longer (faultSizes).
func RunFaults(t *testing.T, mk Maker, points ...FaultPoint) {
	faulttest.Run(t, backend{mk}, points...)
	t.Run("CancelledAtRandomDuringHammer", func(t *testing.T) { cancelledHammer(t, mk) })
	t.Run("CrossingCartsNeverDeadlock", func(t *testing.T) { crossingCarts(t, mk) })
	t.Run("CancelledWaitingForAConnection", func(t *testing.T) { CancelledWaitingForAConnection(t, mk) })
	t.Run("UnreachableServerIsUnavailable", func(t *testing.T) { UnreachableServerIsUnavailable(t, mk) })
}

// faultSizes are the sizes of the PostgreSQL fault tests.
type faultSizes struct {
	cancelledOps int // CancelledAtRandomDuringHammer: carts per buyer (32 buyers)
	crossingOps  int // CrossingCartsNeverDeadlock: carts per buyer (48 buyers)
}

// sizes: the short run is every run; the long one runs with
// INVENTORY_TEST_SOAK=1.
var sizes = soak.Pick(
	faultSizes{cancelledOps: 5, crossingOps: 5},
	faultSizes{cancelledOps: 50, crossingOps: 50},
)

// serverAddr returns the host:port of the test database.
func serverAddr(tb testing.TB) string {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(testsvc.PostgresURL(tb))
	require.NoError(tb, err)
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

func cancelledHammer(t *testing.T, mk Maker) {
	ctx := t.Context()
	pool := testsvc.Postgres(t) // the shared pool: the server's connection slots are few
	in := New(ctx, t, mk, pool)
	s, clk := in.Strategy, in.Clock
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: s, Advance: clk.Advance,
		Workers: 32, SKUs: 4, Stock: 150, MaxLines: 3, OpsPerWorker: sizes.cancelledOps,
		CancelFraction: 0.35, CancelWithin: time.Millisecond,
	})
	require.NoError(t, err)
	t.Log(rep)
	assert.True(t, rep.OK(), "%v", rep.Unexpected)
	assert.Positive(t, rep.Errors["canceled"]+rep.Errors["outcome_unknown"], "some calls were cut short")
	faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: faultlog.ContextCancelled,
		Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})
}

func crossingCarts(t *testing.T, mk Maker) {
	ctx := t.Context()
	pool := testsvc.Postgres(t)
	in := New(ctx, t, mk, pool)
	s, clk := in.Strategy, in.Clock
	var deadlocks atomic.Int64
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: s, Advance: clk.Advance,
		Workers: 48, SKUs: 4, MaxLines: 4, Stock: 300, OpsPerWorker: sizes.crossingOps,
		Observe: func(op string, _ time.Duration, err error) {
			if isCode(err, "40P01") {
				deadlocks.Add(1)
			}
		},
	})
	require.NoError(t, err)
	t.Log(rep)
	assert.True(t, rep.OK(), "%v", rep.Unexpected)
	assert.Zero(t, deadlocks.Load(), "deadlocks")
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// waitDeadline is how long the calls of CancelledWaitingForAConnection wait
// for the busy connection before their context ends.
const waitDeadline = 150 * time.Millisecond

// CancelledWaitingForAConnection makes every call of a strategy made by mk,
// on a pool whose only connection is busy, wait for a connection until its
// context ends: none of them sent anything, so each must return the
// context's error, never inventory.ErrOutcomeUnknown, and nothing may have
// changed. The calls run all at once, so that some wait in whatever queue
// the strategy keeps in front of its pool, and again one at a time.
func CancelledWaitingForAConnection(t *testing.T, mk Maker) {
	ctx := t.Context()
	pool := Pool(t, PoolConfig{MaxConns: 1})
	in := New(ctx, t, mk, pool)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	held, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	due, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 2}}, TTL: time.Minute})
	require.NoError(t, err)
	in.Clock.Advance(2 * time.Minute) // due is overdue; held (15m) is not

	busy, err := pool.Acquire(ctx)
	require.NoError(t, err)
	released := false
	defer func() {
		if !released {
			busy.Release()
		}
	}()

	newIDs := []string{strategytest.RandomID(), strategytest.RandomID(), strategytest.RandomID()}
	calls := map[string]func(ctx context.Context) error{
		"Reserve": func(ctx context.Context) error {
			_, err := in.Reserve(ctx, inventory.Request{ID: newIDs[0], Lines: []inventory.Line{{SKU: "a", Qty: 3}}})
			return err
		},
		"Reserve again": func(ctx context.Context) error {
			_, err := in.Reserve(ctx, inventory.Request{ID: newIDs[1], Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
			return err
		},
		"Cancel":    func(ctx context.Context) error { return in.Cancel(ctx, newIDs[2]) },
		"Commit":    func(ctx context.Context) error { return in.Commit(ctx, held.ID) },
		"Release":   func(ctx context.Context) error { return in.Release(ctx, held.ID) },
		"ExpireDue": func(ctx context.Context) error { _, err := in.ExpireDue(ctx, 10); return err },
		"Lookup":    func(ctx context.Context) error { _, err := in.Lookup(ctx, held.ID); return err },
		"Available": func(ctx context.Context) error { _, err := in.Available(ctx, "a"); return err },
		"SetStock":  func(ctx context.Context) error { return in.SetStock(ctx, "b", 5) },
		"AddStock":  func(ctx context.Context) error { _, err := in.AddStock(ctx, "a", 5); return err },
	}
	check := func(name string, err error) {
		t.Helper()
		assert.ErrorIs(t, err, context.DeadlineExceeded, "%s, cancelled while it waited for a connection", name)
		assert.NotErrorIs(t, err, inventory.ErrOutcomeUnknown, "%s sent nothing: its outcome is known", name)
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, waitDeadline)
			defer cancel()
			check(name+" (at once)", call(cctx))
		})
	}
	wg.Wait()
	for name, call := range calls {
		cctx, cancel := context.WithTimeout(ctx, waitDeadline)
		check(name, call(cctx))
		cancel()
	}
	busy.Release()
	released = true

	for _, id := range newIDs {
		_, err := in.Lookup(ctx, id)
		assert.ErrorIs(t, err, inventory.ErrNotFound, "a reservation cancelled before it was sent is not recorded")
	}
	for _, r := range []inventory.Reservation{held, due} {
		got, err := in.Lookup(ctx, r.ID)
		if assert.NoError(t, err) {
			assert.Equal(t, inventory.Held, got.State, "%s is still held", r.ID)
		}
	}
	n, err := in.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(7), n, "no unit moved")
	_, err = in.Available(ctx, "b")
	assert.ErrorIs(t, err, inventory.ErrUnknownSKU, "SetStock cancelled before it was sent stocked nothing")
	t.Logf("%d calls, cancelled after %s while the pool's only connection was busy: each returned its context's error and changed nothing", 2*len(calls), waitDeadline)
}

// UnreachableServerIsUnavailable stops the proxy a strategy made by mk
// reaches the server through, with no connection left open in its pool:
// every call must fail with inventory.ErrUnavailable (nothing was sent), not
// an unknown outcome or a raw dial error, and nothing may have changed, as
// a strategy on a pool of its own then reads.
func UnreachableServerIsUnavailable(t *testing.T, mk Maker) {
	ctx := t.Context()
	proxy, err := faultproxy.New(serverAddr(t))
	require.NoError(t, err)
	defer proxy.Close()
	pool := Pool(t, PoolConfig{MaxConns: 2, Addr: proxy.Addr()})
	in := New(ctx, t, mk, pool)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	held, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	_, err = in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 2}}, TTL: time.Minute})
	require.NoError(t, err)
	in.Clock.Advance(2 * time.Minute)

	require.NoError(t, proxy.Close()) // the port now refuses connections
	pool.Reset()                      // and the pool holds none

	newID := unreachtest.EveryCallIsUnavailable(ctx, t, in, "postgres", "a", held.ID)
	other, err := mk(testsvc.Postgres(t), in.Schema, in.Clock.Now)
	require.NoError(t, err)
	unreachtest.NothingChanged(ctx, t, other, "a", held.ID, newID, 7)
	t.Log("every call with the server unreachable (its port closed) failed with ErrUnavailable and changed nothing")
}
