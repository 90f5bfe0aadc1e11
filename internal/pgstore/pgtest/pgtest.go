// Package pgtest holds what the tests of the PostgreSQL strategies share:
// pools of their own on the test database, the harness for the conformance
// suite, the fault tests and the benchmarks against the bare conditional
// UPDATE. A strategy's test files call it in a few lines.
package pgtest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Strategy is a PostgreSQL strategy under test.
type Strategy interface {
	inventory.Strategy
	Migrate(ctx context.Context) error
}

// Maker makes the strategy under test on db, in schema, reading the clock
// now.
type Maker func(db pgstore.DB, schema string, now func() time.Time) (Strategy, error)

// PoolConfig describes a pool made by Pool.
type PoolConfig struct {
	// MaxConns is the size of the pool. Default: 8.
	MaxConns int32
	// AppName is the application_name of its connections, by which tests
	// find their server processes. Default: one unique to the pool.
	AppName string
	// Addr is the host:port to dial instead of the server's own, such as a
	// faultproxy's. Default: the server's.
	Addr string
	// Configure, if set, changes the pool's configuration last.
	Configure func(*pgxpool.Config)
}

// Pool returns a pool of its own on the test database, closed when the test
// ends, or skips the test as testsvc does when there is no server.
func Pool(tb testing.TB, cfg PoolConfig) *pgxpool.Pool {
	tb.Helper()
	pc, err := pgxpool.ParseConfig(testsvc.PostgresURL(tb))
	require.NoError(tb, err)
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 8
	}
	pc.MinConns = 0
	if cfg.AppName == "" {
		cfg.AppName = AppName()
	}
	pc.ConnConfig.RuntimeParams["application_name"] = cfg.AppName
	if cfg.Addr != "" {
		host, port, err := splitHostPort(cfg.Addr)
		require.NoError(tb, err)
		pc.ConnConfig.Host, pc.ConnConfig.Port = host, port
		pc.ConnConfig.Fallbacks = nil
	}
	if cfg.Configure != nil {
		cfg.Configure(pc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return pool
}

// AppName returns an application_name no other pool uses.
func AppName() string { return "invtest-" + strategytest.RandomID()[:12] }

func splitHostPort(addr string) (string, uint16, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			p, err := strconv.ParseUint(addr[i+1:], 10, 16)
			if err != nil {
				return "", 0, fmt.Errorf("pgtest: bad address %q: %w", addr, err)
			}
			return addr[:i], uint16(p), nil
		}
	}
	return "", 0, fmt.Errorf("pgtest: bad address %q", addr)
}

// Instance is a strategy under test with its clock and schema.
type Instance struct {
	Strategy
	Clock  *strategytest.Clock
	Schema string
}

// New makes a migrated strategy with mk on db, in a schema of its own that is
// dropped when the test ends, with a manual clock.
func New(ctx context.Context, tb testing.TB, mk Maker, db pgstore.DB) *Instance {
	tb.Helper()
	in := &Instance{Clock: strategytest.NewClock(), Schema: testsvc.Schema(tb)}
	s, err := mk(db, in.Schema, in.Clock.Now)
	require.NoError(tb, err)
	require.NoError(tb, s.Migrate(ctx))
	in.Strategy = s
	return in
}

// Harness returns a conformance harness: a strategy made by mk on the shared
// test pool, in a schema of its own, with a manual clock.
func Harness(ctx context.Context, tb testing.TB, mk Maker) *strategytest.Harness {
	tb.Helper()
	in := New(ctx, tb, mk, testsvc.Postgres(tb))
	return &strategytest.Harness{Strategy: in.Strategy, Advance: in.Clock.Advance}
}

// Backends returns the process IDs of the server backends whose
// application_name is app.
func Backends(ctx context.Context, tb testing.TB, app string) []int32 {
	tb.Helper()
	rows, err := testsvc.Postgres(tb).Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
	require.NoError(tb, err)
	var pids []int32
	for rows.Next() {
		var pid int32
		require.NoError(tb, rows.Scan(&pid))
		pids = append(pids, pid)
	}
	require.NoError(tb, rows.Err())
	return pids
}

// PurgeHarness returns a harness for the purge checks: a strategy made by mk
// (which must set Options.Retention to strategytest.PurgeRetention) as
// Harness makes it, and its Purge.
func PurgeHarness(ctx context.Context, tb testing.TB, mk Maker) *strategytest.PurgeHarness {
	tb.Helper()
	in := New(ctx, tb, mk, testsvc.Postgres(tb))
	p, ok := in.Strategy.(inventory.Purger)
	require.True(tb, ok, "%T has no Purge", in.Strategy)
	return &strategytest.PurgeHarness{Strategy: in.Strategy, Purger: p, Advance: in.Clock.Advance}
}
