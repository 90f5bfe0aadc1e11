package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
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
	"github.com/oversell/inventory/internal/leakcheck"
	"github.com/oversell/inventory/internal/soak"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/internal/unreach/unreachtest"
	"github.com/oversell/inventory/strategy/strategytest"
)

// FaultPoint is a place in a strategy's Reserve where the fault tests break
// the connection.
type FaultPoint struct {
	Name string
	// Pattern returns bytes the client sends there, for a request with the
	// given ID.
	Pattern func(id string) []byte
	// Commits says the matched bytes carry the commit: when their reply is
	// lost, Reserve must report inventory.ErrOutcomeUnknown.
	Commits bool
}

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
//   - LostRepliesApplyOnceOnRetry: reservations (and some commits and
//     releases) lose the reply to their commit, lose the request, or have
//     every connection cut at a random moment, sometimes with new
//     connections refused for a while; each retried call with the same ID
//     applies exactly once. Every fault meets every point and both settle
//     calls in each run.
//   - CancelledAtRandomDuringHammer: a hammer with a third of its calls on
//     deadlines of up to a millisecond holds the invariant.
//   - BackendsTerminatedDuringHammer: the server terminates the strategy's
//     backends several times during a hammer; nothing is half-applied and
//     the pool recovers.
//   - RandomDeadlinesLeaveNothingBehind: calls with deadlines of 0 to 5 ms
//     leave no goroutine, no backend idle in a transaction, no
//     connection in use, and the invariant holds.
//   - CrossingCartsNeverDeadlock: carts over the same SKUs in every order,
//     with releases and sweeps, never fail with a deadlock (40P01) or trip
//     the CHECK constraint (23514).
//   - CancelledWaitingForAConnection: see CancelledWaitingForAConnection.
//   - UnreachableServerIsUnavailable: see UnreachableServerIsUnavailable.
//
// Each runs what its checks need to be able to fail; INVENTORY_TEST_SOAK=1
// runs them several times longer (faultSizes).
func RunFaults(t *testing.T, mk Maker, points ...FaultPoint) {
	t.Run("LostRepliesApplyOnceOnRetry", func(t *testing.T) { lostReplies(t, mk, points) })
	t.Run("CancelledAtRandomDuringHammer", func(t *testing.T) { cancelledHammer(t, mk) })
	t.Run("BackendsTerminatedDuringHammer", func(t *testing.T) { terminatedHammer(t, mk) })
	t.Run("RandomDeadlinesLeaveNothingBehind", func(t *testing.T) { randomDeadlines(t, mk) })
	t.Run("CrossingCartsNeverDeadlock", func(t *testing.T) { crossingCarts(t, mk) })
	t.Run("CancelledWaitingForAConnection", func(t *testing.T) { CancelledWaitingForAConnection(t, mk) })
	t.Run("UnreachableServerIsUnavailable", func(t *testing.T) { UnreachableServerIsUnavailable(t, mk) })
}

// faultSizes are the sizes of the fault tests.
type faultSizes struct {
	lostReplies     int // LostRepliesApplyOnceOnRetry: broken reservations
	cancelledOps    int // CancelledAtRandomDuringHammer: carts per buyer (32 buyers)
	terminatedStock int64
	terminations    int // BackendsTerminatedDuringHammer: rounds of terminations
	deadlineCalls   int // RandomDeadlinesLeaveNothingBehind: calls
	crossingOps     int // CrossingCartsNeverDeadlock: carts per buyer (48 buyers)
}

// sizes: the short run is every run; the long one runs with
// INVENTORY_TEST_SOAK=1.
var sizes = soak.Pick(
	faultSizes{lostReplies: 48, cancelledOps: 10, terminatedStock: 800, terminations: 3, deadlineCalls: 300, crossingOps: 10},
	faultSizes{lostReplies: 480, cancelledOps: 50, terminatedStock: 5000, terminations: 12, deadlineCalls: 2000, crossingOps: 50},
)

// serverAddr returns the host:port of the test database.
func serverAddr(tb testing.TB) string {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(testsvc.PostgresURL(tb))
	require.NoError(tb, err)
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// faultMode is how lostReplies breaks one call.
type faultMode int

const (
	modeDropReply   faultMode = iota // the server acts, its reply is lost
	modeDropRequest                  // the request never reaches the server
	modeCutAll                       // every connection is cut at a random moment
	modeCutRefuse                    // the same, and new connections are refused for a while
	numModes
)

func (m faultMode) String() string {
	return [...]string{"drop-reply", "drop-request", "cut-all", "cut-refuse"}[m]
}

func lostReplies(t *testing.T, mk Maker, points []FaultPoint) {
	ctx := t.Context()
	proxy, err := faultproxy.New(serverAddr(t))
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	schema := testsvc.Schema(t)
	clk := strategytest.NewClock()
	s, err := mk(Pool(t, PoolConfig{MaxConns: 4, Addr: proxy.Addr()}), schema, clk.Now)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	direct, err := mk(testsvc.Postgres(t), schema, clk.Now) // beside the proxy, to look
	require.NoError(t, err)

	skus := []string{"sku-a", "sku-b", "sku-c"}
	want := map[string]int64{}
	for _, sku := range skus {
		require.NoError(t, direct.SetStock(ctx, sku, 1_000_000))
		want[sku] = 1_000_000
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))

	// retry repeats call until it succeeds, as a client must after a fault.
	retry := func(name string, call func() error) {
		t.Helper()
		var err error
		for range 500 {
			if err = call(); err == nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, err, "%s never succeeded", name)
	}
	// breakCall arms mode for pattern, makes the call, and reports whether
	// the fault hit it.
	breakCall := func(mode faultMode, pattern []byte, call func() error) (fired bool, err error) {
		before := proxy.Fired()
		var cutter sync.WaitGroup
		switch mode {
		case modeDropReply:
			proxy.Arm(faultproxy.Rule{Pattern: pattern, Mode: faultproxy.DropReply, Times: 1})
		case modeDropRequest:
			proxy.Arm(faultproxy.Rule{Pattern: pattern, Mode: faultproxy.DropRequest, Times: 1})
		default:
			delay := time.Duration(rng.Int64N(int64(1500 * time.Microsecond)))
			refuse := mode == modeCutRefuse
			cutter.Go(func() {
				time.Sleep(delay)
				if refuse {
					proxy.RefuseFor(5 * time.Millisecond)
				}
				proxy.CutAll()
			})
		}
		err = call()
		cutter.Wait()
		proxy.Disarm()
		return proxy.Fired() > before, err
	}

	var lostApplied, lostNotApplied, unknown, faulted int
	// tried counts the broken calls per fault of the reliability table;
	// every one was checked to change the stock exactly once.
	tried := map[string]int64{}
	fault := func(mode faultMode, commits bool) string {
		switch {
		case mode == modeDropReply && commits:
			return faultlog.ReplyAfterCommit
		case mode == modeDropReply:
			return faultlog.ReplyBeforeCommit
		}
		return faultlog.ConnCut
	}
	reserves := sizes.lostReplies
	for i := range reserves {
		point := points[i%len(points)]
		mode := faultMode(i / len(points) % int(numModes))
		req := inventory.Request{ID: strategytest.RandomID(), TTL: time.Hour}
		for _, k := range rng.Perm(len(skus))[:1+rng.IntN(2)] {
			req.Lines = append(req.Lines, inventory.Line{SKU: skus[k], Qty: 1 + rng.Int64N(3)})
		}
		fired, err := breakCall(mode, point.Pattern(req.ID), func() error {
			_, err := s.Reserve(ctx, req)
			return err
		})
		tried[fault(mode, point.Commits)]++
		if mode <= modeDropRequest {
			require.True(t, fired, "case %d (%s at %s): the rule never fired", i, mode, point.Name)
			require.Error(t, err, "case %d (%s at %s): a broken call succeeded", i, mode, point.Name)
		}
		if err != nil {
			faulted++
			assertHonestError(t, err)
			if errors.Is(err, inventory.ErrOutcomeUnknown) {
				unknown++
			}
			if mode == modeDropReply && point.Commits {
				require.ErrorIs(t, err, inventory.ErrOutcomeUnknown, "case %d: the commit's reply was lost", i)
			}
			if _, lerr := direct.Lookup(ctx, req.ID); lerr == nil {
				lostApplied++
			} else {
				require.ErrorIs(t, lerr, inventory.ErrNotFound)
				lostNotApplied++
			}
		}
		var res inventory.Reservation
		retry("reserve", func() error {
			var err error
			res, err = s.Reserve(ctx, req)
			return err
		})
		require.True(t, inventory.SameLines(req.Lines, res.Lines))
		for _, l := range req.Lines {
			want[l.SKU] -= l.Qty
		}
		for _, sku := range skus {
			got, err := direct.Available(ctx, sku)
			require.NoError(t, err)
			require.Equal(t, want[sku], got, "case %d (%s at %s): %s decremented other than once", i, mode, point.Name, sku)
		}

		// Every sixth case also breaks the commit or the release of it, in
		// turn; each of them meets every mode once in 48 cases.
		if i%6 != 0 {
			continue
		}
		settle, op, final := s.Commit, "commit", inventory.Committed
		if i%12 == 0 {
			settle, op, final = s.Release, "release", inventory.Released
		}
		mode = faultMode(i / 12 % int(numModes))
		fired, err = breakCall(mode, WritePattern(req.ID), func() error { return settle(ctx, req.ID) })
		tried[fault(mode, true)]++
		if mode == modeDropReply {
			require.True(t, fired)
			require.ErrorIs(t, err, inventory.ErrOutcomeUnknown, "%s %d: the reply was lost", op, i)
		}
		retry(op, func() error { return settle(ctx, req.ID) })
		if final == inventory.Released {
			for _, l := range req.Lines {
				want[l.SKU] += l.Qty
			}
		}
		got, err := direct.Lookup(ctx, req.ID)
		require.NoError(t, err)
		require.Equal(t, final, got.State)
		for _, sku := range skus {
			n, err := direct.Available(ctx, sku)
			require.NoError(t, err)
			require.Equal(t, want[sku], n, "%s %d (%s): %s returned other than once", op, i, mode, sku)
		}
	}
	t.Logf("%d reservations: %d broken (%d outcome unknown), of which %d applied before the retry and %d by it",
		reserves, faulted, unknown, lostApplied, lostNotApplied)
	assert.GreaterOrEqual(t, faulted, reserves/2, "every lost reply and lost request broke its call")
	assert.Positive(t, lostApplied, "some lost replies hid an applied reservation")
	assert.Positive(t, lostNotApplied, "some broken calls had applied nothing")
	for _, f := range []string{faultlog.ConnCut, faultlog.ReplyBeforeCommit, faultlog.ReplyAfterCommit} {
		if tried[f] > 0 {
			faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: f, Tried: tried[f]})
		}
	}
}

// assertHonestError fails t for an error outside the contract: a deadlock,
// a CHECK violation, another error the server answered with.
func assertHonestError(t *testing.T, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40P01", "23514":
			assert.Failf(t, "strategy bug", "%v", err)
		case "57P01", "57P02", "57P03": // the server ended the connection
		default:
			if pgErr.Severity != "FATAL" {
				assert.Failf(t, "unexpected server error", "%v", err)
			}
		}
	}
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

func terminatedHammer(t *testing.T, mk Maker) {
	ctx := t.Context()
	app := AppName()
	pool := Pool(t, PoolConfig{MaxConns: 8, AppName: app})
	in := New(ctx, t, mk, pool)
	s, clk := in.Strategy, in.Clock
	// The terminations are paced by the hammer's progress, not by the
	// clock, so that they all fall inside the run however fast the machine:
	// a sell-out of one-or-two-unit carts makes about stock/1.5 Reserve
	// calls, and a round comes every stock/(2*(rounds+1)) of them.
	var terminated atomic.Int64
	var kills sync.WaitGroup
	stop := make(chan struct{})
	progress := make(chan struct{}, 1)
	kills.Go(func() {
		for range sizes.terminations {
			select {
			case <-stop:
				return
			case <-progress:
			}
			terminated.Add(int64(Terminate(ctx, t, app)))
		}
	})
	var calls atomic.Int64
	every := max(1, sizes.terminatedStock/int64(2*(sizes.terminations+1)))
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: s, Advance: clk.Advance,
		Workers: 24, SKUs: 1, Stock: sizes.terminatedStock, MaxQty: 2, SellOut: true, Faults: true,
		Observe: func(op string, _ time.Duration, err error) {
			assertHonestError(t, err)
			if op == "reserve" && calls.Add(1)%every == 0 {
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		},
	})
	close(stop)
	kills.Wait()
	require.NoError(t, err)
	t.Log(rep)
	assert.True(t, rep.OK(), "%v", rep.Unexpected)
	assert.Positive(t, terminated.Load(), "backends were terminated during the run")
	t.Logf("%d backends terminated", terminated.Load())
	faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: faultlog.BackendKilled,
		Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})

	// The pool recovers: calls succeed again once dead connections are gone.
	require.NoError(t, s.SetStock(context.WithoutCancel(ctx), "after", 5))
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := s.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "after", Qty: 1}}})
		assert.NoError(c, err)
	}, 5*time.Second, 20*time.Millisecond)
	assert.Eventually(t, func() bool { return IdleInTransaction(ctx, t, app) == 0 }, 5*time.Second, 20*time.Millisecond,
		"no backend left idle in a transaction")
}

func randomDeadlines(t *testing.T, mk Maker) {
	ctx := t.Context()
	app := AppName()
	pool := Pool(t, PoolConfig{MaxConns: 6, AppName: app})
	s := New(ctx, t, mk, pool).Strategy
	skus := []string{"sku-a", "sku-b"}
	const stock = 5000
	for _, sku := range skus {
		require.NoError(t, s.SetStock(ctx, sku, stock))
	}
	_, err := s.Available(ctx, skus[0]) // warm the pool before counting goroutines
	require.NoError(t, err)
	// Only goroutines started by these calls count: tests running in
	// parallel have their own.
	scope := leakcheck.New()

	calls, workers := int64(sizes.deadlineCalls), 16
	var next atomic.Int64
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(w)))
		wg.Go(func() {
			scope.Do(ctx, func(ctx context.Context) {
				var mine []string
				for next.Add(1) <= calls {
					cctx, cancel := context.WithTimeout(ctx, time.Duration(rng.Int64N(int64(5*time.Millisecond)+1)))
					var err error
					switch n := rng.IntN(10); {
					case n < 6 || len(mine) == 0:
						req := inventory.Request{ID: strategytest.RandomID(), TTL: time.Hour}
						for _, k := range rng.Perm(len(skus))[:1+rng.IntN(len(skus))] {
							req.Lines = append(req.Lines, inventory.Line{SKU: skus[k], Qty: 1 + rng.Int64N(3)})
						}
						mine = append(mine, req.ID)
						_, err = s.Reserve(cctx, req)
					case n < 8:
						err = s.Commit(cctx, mine[rng.IntN(len(mine))])
					default:
						err = s.Release(cctx, mine[rng.IntN(len(mine))])
					}
					cancel()
					switch strategytest.ErrorKind(err) {
					case "", "canceled", "outcome_unknown", "not_held", "not_found":
					default:
						t.Errorf("error outside the contract: %v", err)
					}
				}
				mu.Lock()
				ids = append(ids, mine...)
				mu.Unlock()
			})
		})
	}
	wg.Wait()

	assert.Eventually(t, func() bool { return pool.Stat().AcquiredConns() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the pool has connections in use")
	assert.Eventually(t, func() bool { return IdleInTransaction(ctx, t, app) == 0 }, 5*time.Second, 10*time.Millisecond,
		"backends left idle in a transaction")
	scope.Check(t, 5*time.Second)

	// The ledger is the truth: available + held + sold is what was stocked.
	used := map[string]int64{}
	for _, id := range ids {
		r, err := s.Lookup(ctx, id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		if r.State == inventory.Held || r.State == inventory.Committed {
			for _, l := range r.Lines {
				used[l.SKU] += l.Qty
			}
		}
	}
	for _, sku := range skus {
		n, err := s.Available(ctx, sku)
		require.NoError(t, err)
		assert.Equal(t, int64(stock), n+used[sku], "available + held + sold of %s", sku)
	}
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
