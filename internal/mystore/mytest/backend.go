package mytest

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faulttest"
	"github.com/oversell/inventory/internal/testsvc"
)

// Server error numbers the fault tests read.
const (
	errShutdown      = 1053 // ER_SERVER_SHUTDOWN
	errLockWait      = 1205 // ER_LOCK_WAIT_TIMEOUT
	errDeadlock      = 1213 // ER_LOCK_DEADLOCK
	errInterrupted   = 1317 // ER_QUERY_INTERRUPTED
	errKilled        = 1927 // ER_CONNECTION_KILLED (MariaDB)
	errCheckMariaDB  = 4025 // ER_CONSTRAINT_FAILED
	errCheckMySQL    = 3819 // ER_CHECK_CONSTRAINT_VIOLATED
	errLockNoWaitMy8 = 3572 // ER_LOCK_NOWAIT
)

// CallPoint is the one CALL of a MySQL strategy's Reserve, the first
// statement that carries the request's ID, which commits in the server:
// losing its reply leaves the outcome unknown.
var CallPoint = faulttest.Point{Name: "call", Pattern: func(id string) []byte { return []byte(id) }, Commits: true}

// FaultBackend returns the MySQL side of the shared fault tests, for
// strategies made by mk.
func FaultBackend(mk Maker) faulttest.Backend { return backend{mk} }

type backend struct{ mk Maker }

func (backend) Addr(tb testing.TB) string {
	tb.Helper()
	cfg, err := mysql.ParseDSN(testsvc.MySQLURL(tb))
	require.NoError(tb, err)
	return cfg.Addr
}

// New makes the strategy on a pool whose sessions default to the
// strategy's database, by which the process list finds them.
func (b backend) New(ctx context.Context, tb testing.TB, conns int, addr string) *faulttest.Instance {
	tb.Helper()
	admin := testsvc.MySQL(tb)
	in := New(ctx, tb, b.mk, admin) // migrated beside the pool under test
	cfg, err := mysql.ParseDSN(testsvc.MySQLURL(tb))
	require.NoError(tb, err)
	cfg.DBName = in.Schema
	if addr != "" {
		cfg.Net, cfg.Addr = "tcp", addr
	}
	db, err := testsvc.OpenMySQL(cfg.FormatDSN(), conns)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	s, err := b.mk(db, in.Schema, in.Clock.Now)
	require.NoError(tb, err)
	return &faulttest.Instance{
		Strategy: s, Clock: in.Clock, Direct: in.Strategy,
		Kill: func(ctx context.Context) (int, error) {
			ids, err := sessions(ctx, admin, in.Schema, false)
			n := 0
			for _, id := range ids {
				// A session may end by itself in between: not an error.
				if _, kerr := admin.ExecContext(ctx, "KILL CONNECTION ?", id); kerr == nil {
					n++
				}
			}
			return n, err
		},
		OpenTransactions: func(ctx context.Context) (int, error) {
			ids, err := sessions(ctx, admin, in.Schema, true)
			return len(ids), err
		},
		InUse: func() int { return db.Stats().InUse },
		Close: func() { _ = db.Close() },
	}
}

// sessions returns the IDs of the server sessions whose default database
// is schema; with idleInTx, only those inside a transaction while no
// statement runs.
func sessions(ctx context.Context, db *sql.DB, schema string, idleInTx bool) ([]int64, error) {
	q := "SELECT id FROM information_schema.processlist WHERE db = ?"
	if idleInTx {
		q = "SELECT p.id FROM information_schema.processlist p JOIN information_schema.innodb_trx t " +
			"ON t.trx_mysql_thread_id = p.id WHERE p.db = ? AND p.command = 'Sleep'"
	}
	rows, err := db.QueryContext(ctx, q, schema)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// SettlePattern: a Commit's first statement with the ID is the UPDATE
// that commits it; a Release's is the return_units CALL, matched by the ID
// followed by its next parameter, the state Released as an 8-byte integer,
// so that no lookup matches it.
func (backend) SettlePattern(op, id string) []byte {
	if op == "release" {
		return binary.LittleEndian.AppendUint64([]byte(id), uint64(inventory.Released))
	}
	return []byte(id)
}

// ServerBug reports a deadlock or a CHECK violation reaching the caller, or
// an error the server answered with other than ending the session or a
// lock wait a strategy reports as inventory.ErrContended.
func (backend) ServerBug(err error) error {
	var my *mysql.MySQLError
	if !errors.As(err, &my) {
		return nil
	}
	switch my.Number {
	case errDeadlock, errCheckMariaDB, errCheckMySQL:
		return fmt.Errorf("strategy bug: %w", err)
	case errShutdown, errInterrupted, errKilled:
		return nil
	case errLockWait, errLockNoWaitMy8:
		if errors.Is(err, inventory.ErrContended) {
			return nil
		}
	}
	return fmt.Errorf("unexpected server error: %w", err)
}
