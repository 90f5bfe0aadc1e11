// Package mytest holds what the tests of the MySQL strategies share: the
// harness for the conformance suite, pools of their own, and the server-side
// views the fault tests read. A strategy's test files call it in a few lines.
package mytest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Strategy is a MySQL strategy under test.
type Strategy interface {
	inventory.Strategy
	Migrate(ctx context.Context) error
}

// Maker makes the strategy under test on db, in database schema, reading
// the clock now.
type Maker func(db *sql.DB, schema string, now func() time.Time) (Strategy, error)

// Instance is a strategy under test with its clock and database.
type Instance struct {
	Strategy
	Clock  *strategytest.Clock
	Schema string
}

// New makes a migrated strategy with mk on db, in a database of its own that
// is dropped when the test ends, with a manual clock.
func New(ctx context.Context, tb testing.TB, mk Maker, db *sql.DB) *Instance {
	tb.Helper()
	in := &Instance{Clock: strategytest.NewClock(), Schema: testsvc.MySQLDatabase(tb)}
	s, err := mk(db, in.Schema, in.Clock.Now)
	require.NoError(tb, err)
	require.NoError(tb, s.Migrate(ctx))
	in.Strategy = s
	return in
}

// Harness returns a conformance harness: a strategy made by mk on the shared
// test pool, in a database of its own, with a manual clock.
func Harness(ctx context.Context, tb testing.TB, mk Maker) *strategytest.Harness {
	tb.Helper()
	in := New(ctx, tb, mk, testsvc.MySQL(tb))
	return &strategytest.Harness{Strategy: in.Strategy, Advance: in.Clock.Advance}
}

// Pool returns a pool of its own of at most conns connections on the test
// server, dialled at addr when not empty (a faultproxy's), closed when the
// test ends.
func Pool(tb testing.TB, conns int, addr string) *sql.DB {
	tb.Helper()
	cfg, err := mysql.ParseDSN(testsvc.MySQLURL(tb))
	require.NoError(tb, err)
	if addr != "" {
		cfg.Net, cfg.Addr = "tcp", addr
	}
	db, err := testsvc.OpenMySQL(cfg.FormatDSN(), conns)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	return db
}
