package mystore_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
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
