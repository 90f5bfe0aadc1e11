package pgtest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/faulttest"
	"github.com/oversell/inventory/internal/testsvc"
)

// backend is the PostgreSQL side of the shared fault tests, for strategies
// made by mk.
type backend struct{ mk Maker }

var _ faulttest.Backend = backend{}

func (backend) Addr(tb testing.TB) string { return serverAddr(tb) }

// New makes the strategy on a pool whose backends carry an application_name
// of their own, by which they are terminated and counted.
func (b backend) New(ctx context.Context, tb testing.TB, conns int, addr string) *faulttest.Instance {
	tb.Helper()
	app := AppName()
	pool := Pool(tb, PoolConfig{MaxConns: int32(conns), AppName: app, Addr: addr})
	in := New(ctx, tb, b.mk, pool)
	direct, err := b.mk(testsvc.Postgres(tb), in.Schema, in.Clock.Now)
	require.NoError(tb, err)
	admin := testsvc.Postgres(tb)
	return &faulttest.Instance{
		Strategy: in.Strategy, Clock: in.Clock, Direct: direct,
		Kill: func(ctx context.Context) (int, error) {
			var n int
			err := admin.QueryRow(ctx,
				"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
			return n, err
		},
		OpenTransactions: func(ctx context.Context) (int, error) {
			var n int
			err := admin.QueryRow(ctx,
				"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'", app).Scan(&n)
			return n, err
		},
		InUse: func() int { return int(pool.Stat().AcquiredConns()) },
		Close: pool.Close,
	}
}

// SettlePattern is WritePattern: the settle statements bind the ID, then a
// timestamp.
func (backend) SettlePattern(_, id string) []byte { return WritePattern(id) }

// ServerBug reports a deadlock (40P01), a CHECK violation (23514), or an
// error the server answered with other than ending the connection.
func (backend) ServerBug(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return nil
	}
	switch pgErr.Code {
	case "40P01", "23514":
		return fmt.Errorf("strategy bug: %w", err)
	case "57P01", "57P02", "57P03": // the server ended the connection
		return nil
	}
	if pgErr.Severity != "FATAL" {
		return fmt.Errorf("unexpected server error: %w", err)
	}
	return nil
}
