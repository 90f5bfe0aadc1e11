package mystore_test

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultproxy"
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

// A reservation whose request or reply the network loses fails, with
// inventory.ErrOutcomeUnknown when the server may have committed it; the
// retry by the same ID settles it, and the units are taken once.
func TestLostRequestsAndRepliesApplyOnceOnRetry(t *testing.T) {
	cfg, err := mysql.ParseDSN(testsvc.MySQLURL(t))
	require.NoError(t, err)
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			proxy, err := faultproxy.New(cfg.Addr)
			require.NoError(t, err)
			t.Cleanup(func() { _ = proxy.Close() })
			in := mytest.New(ctx, t, mk, mytest.Pool(t, 4, proxy.Addr()))
			require.NoError(t, in.SetStock(ctx, "a", 100))
			want := int64(100)
			for _, mode := range []faultproxy.Mode{faultproxy.DropReply, faultproxy.DropRequest} {
				for range 3 {
					req := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 2}}}
					proxy.Arm(faultproxy.Rule{Pattern: []byte(req.ID), Mode: mode, Times: 1})
					_, err := in.Reserve(ctx, req)
					require.Error(t, err, "the %v fault reached the caller", mode)
					t.Logf("%s, mode %v: %v", name, mode, err)
					if name == "sqlcond" && mode == faultproxy.DropReply {
						// The CALL commits in the server: only the reply was lost.
						assert.ErrorIs(t, err, inventory.ErrOutcomeUnknown)
					}
					got, err := in.Reserve(ctx, req)
					require.NoError(t, err, "the retry settles it")
					assert.Equal(t, inventory.Held, got.State)
					want -= 2
					n, err := in.Available(ctx, "a")
					require.NoError(t, err)
					require.Equal(t, want, n, "units taken once per ID")
				}
			}
			proxy.Disarm()
		})
	}
}

// Random deadlines in the middle of calls leave no connection checked out of
// the pool and no transaction open on the server, and lose no unit.
func TestRandomDeadlinesLeakNothing(t *testing.T) {
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			db := mytest.Pool(t, 8, "")
			in := mytest.New(ctx, t, mk, db)
			const stock = 1000
			require.NoError(t, in.SetStock(ctx, "a", stock))
			require.NoError(t, in.SetStock(ctx, "b", stock))
			var mu sync.Mutex
			ids := map[string]bool{}
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 25 {
						req := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 1}}}
						dctx, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(3000))*time.Microsecond)
						_, err := in.Reserve(dctx, req)
						cancel()
						if err != nil && !errorsInContract(err) {
							t.Errorf("error outside the contract: %v", err)
						}
						mu.Lock()
						ids[req.ID] = true
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			assert.Zero(t, db.Stats().InUse, "no connection left checked out")

			// Every ID either took one unit of each SKU or nothing.
			var held int64
			for id := range ids {
				r, err := in.Lookup(ctx, id)
				if err == nil {
					assert.Len(t, r.Lines, 2, id)
					held++
				}
			}
			for _, sku := range []string{"a", "b"} {
				n, err := in.Available(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, int64(stock), n+held, "%s: available %d + held %d", sku, n, held)
			}

			// No transaction is left open on any of the pool's connections.
			open := db.Stats().OpenConnections
			var conns []*sql.Conn
			var threads []any
			for range open {
				c, err := db.Conn(ctx)
				require.NoError(t, err)
				conns = append(conns, c)
				var id int64
				require.NoError(t, c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id))
				threads = append(threads, id)
			}
			if len(threads) > 0 {
				var trx int
				q := "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id IN (?" + stringsRepeat(",?", len(threads)-1) + ")"
				require.NoError(t, testsvc.MySQL(t).QueryRowContext(ctx, q, threads...).Scan(&trx))
				assert.Zero(t, trx, "open transactions on the pool's connections")
			}
			for _, c := range conns {
				_ = c.Close()
			}
			t.Logf("%s: %d calls, %d held, %d connections checked", name, len(ids), held, open)
		})
	}
}

func errorsInContract(err error) bool {
	switch strategytest.ErrorKind(err) {
	case "canceled", "outcome_unknown", "contended":
		return true
	}
	return false
}

func stringsRepeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// The server kills the strategy's connections (KILL CONNECTION from another
// session) while the hammer runs: nothing is oversold or lost, and the pool
// recovers.
func TestConnectionsKilledDuringHammer(t *testing.T) {
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			schema := testsvc.MySQLDatabase(t)
			s, err := mk(testsvc.MySQL(t), schema, time.Now)
			require.NoError(t, err)
			require.NoError(t, s.Migrate(ctx))
			// The pool's sessions default to the strategy's database, by
			// which the killer finds them in the process list.
			cfg, err := mysql.ParseDSN(testsvc.MySQLURL(t))
			require.NoError(t, err)
			cfg.DBName = schema
			db, err := testsvc.OpenMySQL(cfg.FormatDSN(), 8)
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			clk := strategytest.NewClock()
			s, err = mk(db, schema, clk.Now)
			require.NoError(t, err)

			admin := testsvc.MySQL(t)
			var killed int
			stop := make(chan struct{})
			var kills sync.WaitGroup
			kills.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(30 * time.Millisecond):
					}
					rows, err := admin.QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE db = ?", schema)
					if err != nil {
						return
					}
					var ids []int64
					for rows.Next() {
						var id int64
						if rows.Scan(&id) == nil {
							ids = append(ids, id)
						}
					}
					rows.Close()
					for _, id := range ids[:min(len(ids), 2)] {
						if _, err := admin.ExecContext(ctx, "KILL CONNECTION ?", id); err == nil {
							killed++
						}
					}
				}
			})
			rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
				Strategy: s, Advance: clk.Advance,
				Workers: 16, SKUs: 1, Stock: 300, MaxQty: 2, SellOut: true, Faults: true,
			})
			close(stop)
			kills.Wait()
			require.NoError(t, err)
			t.Log(rep)
			assert.Zero(t, rep.Oversold, "oversold")
			assert.Zero(t, rep.Lost, "lost")
			assert.Positive(t, killed, "connections were killed during the run")
			t.Logf("%s: %d connections killed", name, killed)

			require.NoError(t, s.SetStock(context.WithoutCancel(ctx), "after", 5))
			assert.EventuallyWithT(t, func(c *assert.CollectT) {
				_, err := s.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "after", Qty: 1}}})
				assert.NoError(c, err)
			}, 5*time.Second, 20*time.Millisecond, "the pool recovers")
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
