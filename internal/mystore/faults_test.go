package mystore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/faulttest"
	"github.com/oversell/inventory/internal/mystore/mytest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/internal/unreach/unreachtest"
	"github.com/oversell/inventory/pessimistic"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

var makers = map[string]mytest.Maker{
	"sqlcond": func(db *sql.DB, schema string, now func() time.Time) (mytest.Strategy, error) {
		return sqlcond.NewMySQL(db, &sqlcond.Options{Schema: schema, Now: now})
	},
	"pessimistic": func(db *sql.DB, schema string, now func() time.Time) (mytest.Strategy, error) {
		return pessimistic.NewMySQL(db, &pessimistic.Options{Schema: schema, Now: now})
	},
}

// The fault tests every SQL store shares: lost requests and replies
// through a faultproxy, KILL CONNECTION of the strategy's sessions during a
// hammer, random deadlines that leave nothing open. A MySQL strategy's
// Reserve is one CALL that commits in the server.
func TestFaults(t *testing.T) {
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			faulttest.Run(t, mytest.FaultBackend(mk), mytest.CallPoint)
		})
	}
}

// With the server's port closed and no connection left in the pool, every
// call fails with inventory.ErrUnavailable (nothing was sent), not an
// unknown outcome or a raw dial error, and nothing changed, as a strategy on
// the shared pool then reads.
func TestUnreachableServerIsUnavailable(t *testing.T) {
	cfg, err := mysql.ParseDSN(testsvc.MySQLURL(t))
	require.NoError(t, err)
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			proxy, err := faultproxy.New(cfg.Addr)
			require.NoError(t, err)
			defer proxy.Close()
			db := mytest.Pool(t, 2, proxy.Addr())
			in := mytest.New(ctx, t, mk, db)
			require.NoError(t, in.SetStock(ctx, "a", 10))
			held, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
			require.NoError(t, err)

			require.NoError(t, proxy.Close()) // the port now refuses connections
			db.SetMaxIdleConns(0)             // and the pool keeps none

			newID := unreachtest.EveryCallIsUnavailable(ctx, t, in, "mysql", "a", held.ID)
			other, err := mk(testsvc.MySQL(t), in.Schema, in.Clock.Now)
			require.NoError(t, err)
			unreachtest.NothingChanged(ctx, t, other, "a", held.ID, newID, 9)
		})
	}
}

// The reply is lost after the server committed the call, on every call:
// the proxy forwards the statement and drops the server's reply with the
// connection, and another session then sees the commit. Reserve (whose CALL
// commits in the server, its COMMIT the last statement before the reply),
// Commit (an autocommit UPDATE) and Release (a CALL) must fail with
// inventory.ErrOutcomeUnknown, and the same call again, with the same ID,
// must answer as the first would have without applying it twice: the stock
// is taken and given back exactly once.
func TestReplyLostAfterCommitAppliesOnce(t *testing.T) {
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			s, tried, err := replyLostAfterCommit(t, mk, nil)
			require.NoError(t, err)
			faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: faultlog.ReplyAfterCommit, Tried: tried})
		})
	}
}

// freshIDOnRetry takes a Reserve with an ID it has seen for a new order
// and reserves it under a new ID: the retry after a lost reply then takes
// the units again.
type freshIDOnRetry struct {
	mytest.Strategy
	seen map[string]bool
}

func (f *freshIDOnRetry) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if f.seen[req.ID] {
		req.ID = strategytest.RandomID()
	}
	f.seen[req.ID] = true
	return f.Strategy.Reserve(ctx, req)
}

// The check catches a strategy whose retry is not idempotent.
func TestReplyLostAfterCommitCatchesAFreshIDOnRetry(t *testing.T) {
	_, _, err := replyLostAfterCommit(t, makers["sqlcond"], func(s mytest.Strategy) mytest.Strategy {
		return &freshIDOnRetry{Strategy: s, seen: map[string]bool{}}
	})
	require.Error(t, err)
	t.Log("caught:", err)
}

// replyLostAfterCommit runs the check of TestReplyLostAfterCommitAppliesOnce
// on a strategy made by mk, wrapped by wrap when not nil, and returns the
// strategy, the calls it broke and the first broken guarantee.
func replyLostAfterCommit(t *testing.T, mk mytest.Maker, wrap func(mytest.Strategy) mytest.Strategy) (inventory.Strategy, int64, error) {
	ctx := t.Context()
	rig := newLostReplyRig(t, mk, wrap)
	b, proxy, s, direct, stock := rig.b, rig.proxy, rig.s, rig.direct, rig.stock
	for sku, n := range stock {
		require.NoError(t, direct.SetStock(ctx, sku, n))
	}
	checkStock := rig.checkStock
	state := func(id string) inventory.State {
		r, err := direct.Lookup(ctx, id)
		if err != nil {
			return 0
		}
		return r.State
	}
	// lose makes call with the reply to the statement carrying pattern
	// dropped, and checks that the server had committed it.
	lose := func(what string, pattern []byte, call func() error, committed inventory.State, id string) error {
		before := proxy.Fired()
		proxy.Arm(faultproxy.Rule{Pattern: pattern, Mode: faultproxy.DropReply, Times: 1})
		err := call()
		proxy.Disarm()
		require.Greater(t, proxy.Fired(), before, "%s: the rule never fired", what)
		if !errors.Is(err, inventory.ErrOutcomeUnknown) {
			return fmt.Errorf("%s: the commit's reply was lost, but the error is not inventory.ErrOutcomeUnknown: %v", what, err)
		}
		if got := state(id); got != committed {
			return fmt.Errorf("%s: state %v after the lost reply, want %v: the server committed before the reply was lost", what, got, committed)
		}
		return nil
	}

	var tried int64
	for i := range 6 {
		req := inventory.Request{ID: strategytest.RandomID(), TTL: time.Hour, Lines: []inventory.Line{{SKU: "a", Qty: 2}}}
		if i%2 == 1 {
			req.Lines = append(req.Lines, inventory.Line{SKU: "b", Qty: 3})
		}
		what := fmt.Sprintf("reserve %d", i)
		if err := lose(what, mytest.CallPoint.Pattern(req.ID), func() error { _, err := s.Reserve(ctx, req); return err }, inventory.Held, req.ID); err != nil {
			return s, tried, err
		}
		tried++
		for _, l := range req.Lines {
			stock[l.SKU] -= l.Qty
		}
		if err := checkStock(what + ", before the retry"); err != nil {
			return s, tried, err
		}
		res, err := s.Reserve(ctx, req)
		if err != nil {
			return s, tried, fmt.Errorf("%s: the retry: %w", what, err)
		}
		if res.State != inventory.Held || !inventory.SameLines(req.Lines, res.Lines) {
			return s, tried, fmt.Errorf("%s: the retry answered %v %v, not the first reservation", what, res.State, res.Lines)
		}
		if err := checkStock(what + ", after the retry"); err != nil {
			return s, tried, err
		}

		op, settle, final := "commit", s.Commit, inventory.Committed
		if i%3 == 1 {
			op, settle, final = "release", s.Release, inventory.Released
		}
		if i%3 == 2 {
			continue
		}
		what = fmt.Sprintf("%s %d", op, i)
		if err := lose(what, b.SettlePattern(op, req.ID), func() error { return settle(ctx, req.ID) }, final, req.ID); err != nil {
			return s, tried, err
		}
		tried++
		if final == inventory.Released {
			for _, l := range req.Lines {
				stock[l.SKU] += l.Qty
			}
		}
		if err := checkStock(what + ", before the retry"); err != nil {
			return s, tried, err
		}
		if err := settle(ctx, req.ID); err != nil {
			return s, tried, fmt.Errorf("%s: the retry: %w", what, err)
		}
		if got := state(req.ID); got != final {
			return s, tried, fmt.Errorf("%s: state %v after the retry, want %v", what, got, final)
		}
		if err := checkStock(what + ", after the retry"); err != nil {
			return s, tried, err
		}
	}
	return s, tried, nil
}

// lostReplyRig is where the checks of lost replies start: a strategy made
// by mk behind a faultproxy, wrapped by wrap when not nil, the same store
// reached directly, and the units each SKU is to have available, 1000 of
// "a" and of "b" until the check sets them.
type lostReplyRig struct {
	ctx    context.Context // the test's
	b      faulttest.Backend
	proxy  *faultproxy.Proxy
	s      mytest.Strategy
	direct inventory.Strategy
	stock  map[string]int64
}

func newLostReplyRig(t *testing.T, mk mytest.Maker, wrap func(mytest.Strategy) mytest.Strategy) *lostReplyRig {
	b := mytest.FaultBackend(mk)
	proxy, err := faultproxy.New(b.Addr(t))
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	in := b.New(t.Context(), t, 2, proxy.Addr())
	r := &lostReplyRig{ctx: t.Context(), b: b, proxy: proxy, s: in.Strategy.(mytest.Strategy), direct: in.Direct,
		stock: map[string]int64{"a": 1000, "b": 1000}}
	if wrap != nil {
		r.s = wrap(r.s)
	}
	return r
}

// checkStock reports the first SKU whose available units, read directly,
// are not those of r.stock.
func (r *lostReplyRig) checkStock(what string) error {
	for sku, want := range r.stock {
		got, err := r.direct.Available(r.ctx, sku)
		if err != nil {
			return fmt.Errorf("%s: available of %s: %w", what, sku, err)
		}
		if got != want {
			return fmt.Errorf("%s: %s has %d available, want %d: changed other than once", what, sku, got, want)
		}
	}
	return nil
}
