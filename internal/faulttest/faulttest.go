// Package faulttest holds the fault tests that every SQL store's strategies
// run, written once: lost requests and replies through a faultproxy, server
// sessions killed while a hammer runs, and random deadlines that must leave
// no connection checked out and no transaction open. A store's test helpers
// (pgtest, mytest) supply a Backend, the few things that differ between
// servers: how to make a strategy on a pool of its own, how to kill that
// pool's sessions, how to count its open transactions.
//
// Each check returns the first broken guarantee as an error, so that this
// package's own tests can show that it catches a deliberately wrong
// strategy; Run fails the test on it.
package faulttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/leakcheck"
	"github.com/oversell/inventory/internal/soak"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Backend is one store's side of the fault tests.
type Backend interface {
	// Addr returns the host:port of the test server, which a faultproxy
	// forwards to.
	Addr(tb testing.TB) string
	// New makes a migrated strategy under test, in a schema of its own, on
	// a pool of its own of at most conns connections dialled at addr (the
	// server's own when empty), with a manual clock; all closed or dropped
	// when the test ends.
	New(ctx context.Context, tb testing.TB, conns int, addr string) *Instance
	// SettlePattern returns bytes the client sends in the statement that
	// settles id (op "commit" or "release"), and in no read before it.
	SettlePattern(op, id string) []byte
	// ServerBug returns err when it is an answer of the server that no
	// strategy may let through (a deadlock, a CHECK violation, an error the
	// fault does not explain), else nil.
	ServerBug(err error) error
}

// Instance is a strategy under test and what the fault tests read beside
// it.
type Instance struct {
	Strategy inventory.Strategy
	Clock    *strategytest.Clock
	// Direct is a strategy on the same schema that reaches the server
	// directly, on another pool, to look while the proxy breaks Strategy's.
	Direct inventory.Strategy
	// Kill ends every server session of Strategy's pool, as an
	// administrator (or a crash) would, and returns how many it ended.
	Kill func(ctx context.Context) (int, error)
	// OpenTransactions counts the sessions of Strategy's pool that are
	// inside a transaction while no statement runs on them.
	OpenTransactions func(ctx context.Context) (int, error)
	// InUse counts the connections checked out of Strategy's pool.
	InUse func() int
	// Close closes Strategy's pool; Direct still works after it.
	Close func()
}

// Point is a place in a strategy's Reserve where LostReplies breaks the
// connection.
type Point struct {
	Name string
	// Pattern returns bytes the client sends there, for a request with the
	// given ID.
	Pattern func(id string) []byte
	// Commits says the matched bytes carry the commit: when their reply is
	// lost, Reserve must report inventory.ErrOutcomeUnknown.
	Commits bool
}

// Sizes are the sizes of the checks.
type Sizes struct {
	LostReplies    int   // LostReplies: broken reservations
	KilledStock    int64 // KilledDuringHammer: units sold out
	Kills          int   // KilledDuringHammer: rounds of kills
	DeadlineCalls  int   // RandomDeadlines: calls
	DeadlineConns  int   // RandomDeadlines: the pool's connections
	KilledConns    int   // KilledDuringHammer: the pool's connections
	KilledBuyers   int   // KilledDuringHammer: buyers
	DeadlineBuyers int   // RandomDeadlines: buyers
}

// Default are the sizes of Run: the short run is every run; the long one
// runs with INVENTORY_TEST_SOAK=1.
var Default = soak.Pick(
	Sizes{LostReplies: 48, KilledStock: 400, Kills: 3, DeadlineCalls: 300, DeadlineConns: 6, KilledConns: 8, KilledBuyers: 24, DeadlineBuyers: 16},
	Sizes{LostReplies: 480, KilledStock: 5000, Kills: 12, DeadlineCalls: 2000, DeadlineConns: 6, KilledConns: 8, KilledBuyers: 24, DeadlineBuyers: 16},
)

// Run runs the shared fault tests on b, breaking Reserve at points:
//
//   - LostRepliesApplyOnceOnRetry: see LostReplies.
//   - SessionsKilledDuringHammer: see KilledDuringHammer.
//   - RandomDeadlinesLeaveNothingBehind: see RandomDeadlines.
func Run(t *testing.T, b Backend, points ...Point) {
	t.Run("LostRepliesApplyOnceOnRetry", func(t *testing.T) {
		require.NoError(t, LostReplies(t, b, Default, points))
	})
	t.Run("SessionsKilledDuringHammer", func(t *testing.T) {
		require.NoError(t, KilledDuringHammer(t, b, Default))
	})
	t.Run("RandomDeadlinesLeaveNothingBehind", func(t *testing.T) {
		require.NoError(t, RandomDeadlines(t, b, Default))
	})
}

// faultMode is how LostReplies breaks one call.
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

// LostReplies breaks sz.LostReplies reservations (and some commits and
// releases of them) through a faultproxy: the reply to their statement at
// a point is lost, or the request, or every connection is cut at a random
// moment, sometimes with new connections refused for a while. Each call
// retried with the same ID must then apply exactly once, and a lost reply
// to a commit must be inventory.ErrOutcomeUnknown. Every fault meets every
// point and both settle calls in each run.
func LostReplies(t *testing.T, b Backend, sz Sizes, points []Point) error {
	ctx := t.Context()
	proxy, err := faultproxy.New(b.Addr(t))
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	in := b.New(ctx, t, 4, proxy.Addr())
	s, direct := in.Strategy, in.Direct

	skus := []string{"sku-a", "sku-b", "sku-c"}
	want := map[string]int64{}
	for _, sku := range skus {
		require.NoError(t, direct.SetStock(ctx, sku, 1_000_000))
		want[sku] = 1_000_000
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))

	// retry repeats call until it succeeds, as a client must after a fault.
	retry := func(name string, call func() error) error {
		var err error
		for range 500 {
			if err = call(); err == nil {
				return nil
			}
			time.Sleep(time.Millisecond)
		}
		return fmt.Errorf("%s never succeeded: %w", name, err)
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
	checkStock := func(what string) error {
		for _, sku := range skus {
			got, err := direct.Available(ctx, sku)
			require.NoError(t, err)
			if got != want[sku] {
				return fmt.Errorf("%s: %s has %d available, want %d: changed other than once", what, sku, got, want[sku])
			}
		}
		return nil
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
	reserves := sz.LostReplies
	for i := range reserves {
		point := points[i%len(points)]
		mode := faultMode(i / len(points) % int(numModes))
		what := fmt.Sprintf("case %d (%s at %s)", i, mode, point.Name)
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
			require.True(t, fired, "%s: the rule never fired", what)
			if err == nil {
				return fmt.Errorf("%s: a broken call succeeded", what)
			}
		}
		if err != nil {
			faulted++
			if bug := serverBug(b, err); bug != nil {
				return fmt.Errorf("%s: %w", what, bug)
			}
			if errors.Is(err, inventory.ErrOutcomeUnknown) {
				unknown++
			}
			if mode == modeDropReply && point.Commits && !errors.Is(err, inventory.ErrOutcomeUnknown) {
				return fmt.Errorf("%s: the commit's reply was lost, but the error is not inventory.ErrOutcomeUnknown: %w", what, err)
			}
			if mode == modeDropReply && !point.Commits && !errors.Is(err, inventory.ErrOutcomeUnknown) && !errors.Is(err, inventory.ErrUnavailable) {
				return fmt.Errorf("%s: the connection was lost before COMMIT, but the error is neither inventory.ErrUnavailable nor ErrOutcomeUnknown: %w", what, err)
			}
			if _, lerr := direct.Lookup(ctx, req.ID); lerr == nil {
				lostApplied++
			} else {
				require.ErrorIs(t, lerr, inventory.ErrNotFound)
				lostNotApplied++
			}
		}
		var res inventory.Reservation
		if err := retry("reserve", func() error {
			var err error
			res, err = s.Reserve(ctx, req)
			return err
		}); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !inventory.SameLines(req.Lines, res.Lines) {
			return fmt.Errorf("%s: the retry returned lines %v, asked %v", what, res.Lines, req.Lines)
		}
		for _, l := range req.Lines {
			want[l.SKU] -= l.Qty
		}
		if err := checkStock(what); err != nil {
			return err
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
		what = fmt.Sprintf("%s %d (%s)", op, i, mode)
		fired, err = breakCall(mode, b.SettlePattern(op, req.ID), func() error { return settle(ctx, req.ID) })
		tried[fault(mode, true)]++
		if mode == modeDropReply {
			require.True(t, fired, "%s: the rule never fired", what)
			if !errors.Is(err, inventory.ErrOutcomeUnknown) {
				return fmt.Errorf("%s: the reply was lost, but the error is not inventory.ErrOutcomeUnknown: %v", what, err)
			}
		}
		if err := retry(op, func() error { return settle(ctx, req.ID) }); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if final == inventory.Released {
			for _, l := range req.Lines {
				want[l.SKU] += l.Qty
			}
		}
		got, err := direct.Lookup(ctx, req.ID)
		require.NoError(t, err)
		if got.State != final {
			return fmt.Errorf("%s: state %v after the retry, want %v", what, got.State, final)
		}
		if err := checkStock(what); err != nil {
			return err
		}
	}
	t.Logf("%d reservations: %d broken (%d outcome unknown), of which %d applied before the retry and %d by it",
		reserves, faulted, unknown, lostApplied, lostNotApplied)
	switch {
	case faulted < reserves/2:
		return fmt.Errorf("only %d of %d broken calls failed: every lost reply and lost request breaks its call", faulted, reserves)
	case lostApplied == 0:
		return errors.New("no lost reply hid an applied reservation: the faults did not reach past the commit")
	case lostNotApplied == 0:
		return errors.New("every broken call had applied: the faults did not reach before the commit")
	}
	for _, f := range []string{faultlog.ConnCut, faultlog.ReplyBeforeCommit, faultlog.ReplyAfterCommit} {
		if tried[f] > 0 {
			faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: f, Tried: tried[f]})
		}
	}
	return nil
}

// serverBug is b.ServerBug, nil-safe on err.
func serverBug(b Backend, err error) error {
	if err == nil {
		return nil
	}
	return b.ServerBug(err)
}

// KilledDuringHammer kills every server session of the strategy's pool
// several times while a hammer sells out sz.KilledStock units: nothing may
// be oversold or lost, no error may come from outside the contract or from
// a server bug, the pool must recover, and no session may be left inside a
// transaction.
func KilledDuringHammer(t *testing.T, b Backend, sz Sizes) error {
	ctx := t.Context()
	in := b.New(ctx, t, sz.KilledConns, "")
	s := in.Strategy
	// The kills are paced by the hammer's progress, not by the clock, so
	// that they all fall inside the run however fast the machine: a
	// sell-out of one-or-two-unit carts makes about stock/1.5 Reserve
	// calls, and a round comes every stock/(2*(rounds+1)) of them.
	var killed atomic.Int64
	var kills sync.WaitGroup
	stop := make(chan struct{})
	progress := make(chan struct{}, 1)
	kills.Go(func() {
		for range sz.Kills {
			select {
			case <-stop:
				return
			case <-progress:
			}
			n, err := in.Kill(ctx)
			if err != nil && ctx.Err() == nil {
				t.Errorf("kill: %v", err)
			}
			killed.Add(int64(n))
		}
	})
	var calls atomic.Int64
	var bugMu sync.Mutex
	var bug error
	every := max(1, sz.KilledStock/int64(2*(sz.Kills+1)))
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: s, Advance: in.Clock.Advance,
		Workers: sz.KilledBuyers, SKUs: 1, Stock: sz.KilledStock, MaxQty: 2, SellOut: true, Faults: true,
		Observe: func(op string, _ time.Duration, err error) {
			if b := serverBug(b, err); b != nil {
				bugMu.Lock()
				bug = cmpOr(bug, fmt.Errorf("%s: %w", op, b))
				bugMu.Unlock()
			}
			if err != nil && strategytest.ErrorKind(err) == "other" {
				bugMu.Lock()
				bug = cmpOr(bug, fmt.Errorf("%s: an error that errors.Is no inventory sentinel: %w", op, err))
				bugMu.Unlock()
			}
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
	t.Logf("%d sessions killed", killed.Load())
	switch {
	case bug != nil:
		return bug
	case !rep.OK():
		return fmt.Errorf("the hammer broke the contract: oversold %d, lost %d, unexpected %v", rep.Oversold, rep.Lost, rep.Unexpected)
	case killed.Load() == 0:
		return errors.New("no session was killed during the run")
	}
	faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: faultlog.BackendKilled,
		Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})

	// The pool recovers: calls succeed again once dead connections are gone.
	// The first call after the kills may still meet one, and fail as any
	// call on a cut connection does; setting the stock again is harmless.
	var last error
	if !eventually(5*time.Second, func() bool {
		last = s.SetStock(context.WithoutCancel(ctx), "after", 5)
		return last == nil
	}) {
		return fmt.Errorf("the pool did not recover: %w", last)
	}
	if !eventually(5*time.Second, func() bool {
		_, last = s.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "after", Qty: 1}}})
		return last == nil
	}) {
		return fmt.Errorf("the pool did not recover: %w", last)
	}
	return noneOpen(ctx, in)
}

// noneOpen waits a while for the instance's pool to have no connection
// checked out and no session inside a transaction.
func noneOpen(ctx context.Context, in *Instance) error {
	if !eventually(5*time.Second, func() bool { return in.InUse() == 0 }) {
		return fmt.Errorf("%d connections left checked out of the pool", in.InUse())
	}
	var open int
	var err error
	if !eventually(5*time.Second, func() bool {
		open, err = in.OpenTransactions(ctx)
		return err == nil && open == 0
	}) {
		if err != nil {
			return err
		}
		return fmt.Errorf("%d sessions left inside a transaction", open)
	}
	return nil
}

// RandomDeadlines makes sz.DeadlineCalls calls (Reserve, Commit, Release)
// with deadlines of 0 to 5 ms: afterwards no goroutine they started may be
// left, no connection checked out, no session inside a transaction, every
// error must be in the contract, and available + held + sold must be the
// stock.
func RandomDeadlines(t *testing.T, b Backend, sz Sizes) error {
	ctx := t.Context()
	in := b.New(ctx, t, sz.DeadlineConns, "")
	s := in.Strategy
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

	var next atomic.Int64
	var mu sync.Mutex
	var ids []string
	var outside error
	var wg sync.WaitGroup
	for w := range sz.DeadlineBuyers {
		rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(w)))
		wg.Go(func() {
			scope.Do(ctx, func(ctx context.Context) {
				var mine []string
				for next.Add(1) <= int64(sz.DeadlineCalls) {
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
						mu.Lock()
						outside = cmpOr(outside, fmt.Errorf("error outside the contract: %w", err))
						mu.Unlock()
					}
				}
				mu.Lock()
				ids = append(ids, mine...)
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	if err := noneOpen(ctx, in); err != nil {
		return err
	}
	if outside != nil {
		return outside
	}
	// The pool's connections are closed before goroutines are counted: a
	// driver may keep one of its own per connection (go-sql-driver does),
	// started by whichever call opened it.
	in.Close()
	scope.Check(t, 5*time.Second)

	// The ledger is the truth: available + held + sold is what was stocked.
	used := map[string]int64{}
	for _, id := range ids {
		r, err := in.Direct.Lookup(ctx, id)
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
		n, err := in.Direct.Available(ctx, sku)
		require.NoError(t, err)
		if n+used[sku] != stock {
			return fmt.Errorf("%s: available %d + held and sold %d is not the stock %d", sku, n, used[sku], stock)
		}
	}
	t.Logf("%d calls with deadlines of 0 to 5ms: %d reservations looked up, nothing left open", sz.DeadlineCalls, len(ids))
	return nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
