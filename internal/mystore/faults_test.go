package mystore_test

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
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
			ctx := t.Context()
			b := mytest.FaultBackend(mk)
			proxy, err := faultproxy.New(b.Addr(t))
			require.NoError(t, err)
			defer proxy.Close()
			in := b.New(ctx, t, 2, proxy.Addr())
			s, direct := in.Strategy, in.Direct
			stock := map[string]int64{"a": 1000, "b": 1000}
			for sku, n := range stock {
				require.NoError(t, direct.SetStock(ctx, sku, n))
			}
			checkStock := func(what string) {
				t.Helper()
				for sku, want := range stock {
					got, err := direct.Available(ctx, sku)
					require.NoError(t, err)
					require.Equal(t, want, got, "%s: %s changed other than once", what, sku)
				}
			}
			state := func(id string) inventory.State {
				r, err := direct.Lookup(ctx, id)
				if err != nil {
					return 0
				}
				return r.State
			}
			// lose makes call with the reply to the statement carrying
			// pattern dropped, and checks that the server had committed it.
			lose := func(what string, pattern []byte, call func() error, committed inventory.State, id string) {
				t.Helper()
				before := proxy.Fired()
				proxy.Arm(faultproxy.Rule{Pattern: pattern, Mode: faultproxy.DropReply, Times: 1})
				err := call()
				proxy.Disarm()
				require.Greater(t, proxy.Fired(), before, "%s: the rule never fired", what)
				require.ErrorIs(t, err, inventory.ErrOutcomeUnknown, "%s: the commit's reply was lost", what)
				require.Equal(t, committed, state(id), "%s: the server committed before the reply was lost", what)
			}

			var tried int64
			for i := range 6 {
				req := inventory.Request{ID: strategytest.RandomID(), TTL: time.Hour, Lines: []inventory.Line{{SKU: "a", Qty: 2}}}
				if i%2 == 1 {
					req.Lines = append(req.Lines, inventory.Line{SKU: "b", Qty: 3})
				}
				what := fmt.Sprintf("reserve %d", i)
				lose(what, mytest.CallPoint.Pattern(req.ID), func() error { _, err := s.Reserve(ctx, req); return err }, inventory.Held, req.ID)
				tried++
				for _, l := range req.Lines {
					stock[l.SKU] -= l.Qty
				}
				checkStock(what + ", before the retry")
				res, err := s.Reserve(ctx, req)
				require.NoError(t, err, what+": the retry")
				assert.Equal(t, inventory.Held, res.State)
				assert.True(t, inventory.SameLines(req.Lines, res.Lines), "%s: the retry answers the first reservation", what)
				checkStock(what + ", after the retry")

				op, settle, final := "commit", s.Commit, inventory.Committed
				if i%3 == 1 {
					op, settle, final = "release", s.Release, inventory.Released
				}
				if i%3 == 2 {
					continue
				}
				what = fmt.Sprintf("%s %d", op, i)
				lose(what, b.SettlePattern(op, req.ID), func() error { return settle(ctx, req.ID) }, final, req.ID)
				tried++
				if final == inventory.Released {
					for _, l := range req.Lines {
						stock[l.SKU] += l.Qty
					}
				}
				checkStock(what + ", before the retry")
				require.NoError(t, settle(ctx, req.ID), what+": the retry")
				assert.Equal(t, final, state(req.ID))
				checkStock(what + ", after the retry")
			}
			faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: faultlog.ReplyAfterCommit, Tried: tried})
		})
	}
}
