// Package unreach tells the errors of a server that could not be reached,
// before anything was sent to it, from the others, for PostgreSQL (pgx),
// Redis (go-redis) and MySQL (go-sql-driver/mysql), and turns them into
// *inventory.UnavailableError. Every
// strategy classifies through it, so that "the store could not be reached;
// nothing changed; safe to retry" means the same everywhere.
package unreach

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oversell/inventory"
)

// Server names, as inventory.UnavailableError.Server carries them.
const (
	Postgres = "postgres"
	Redis    = "redis"
	MySQL    = "mysql"
)

// PostgresErr reports whether err is pgx's failure to open a connection
// (refused, timed out, a name that does not resolve, a server that is
// starting, shutting down or full): a *pgconn.ConnectError. No statement was
// sent on such a connection.
func PostgresErr(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// RedisErr reports whether err is go-redis's failure to open a connection:
// a dial that was refused, timed out or could not resolve the name. No
// command was written to such a connection.
func RedisErr(err error) bool { return dialErr(err) }

// MySQLErr reports whether err is the MySQL driver's failure to open a
// connection: a dial that was refused, timed out or could not resolve the
// name, or a server that turned the connection away in its handshake
// because it is full (ER_CON_COUNT_ERROR, 1040). No statement was sent.
func MySQLErr(err error) bool {
	var me *mysql.MySQLError
	return dialErr(err) || (errors.As(err, &me) && me.Number == erConCount)
}

// erConCount is MySQL's "Too many connections", answered in the handshake.
const erConCount = 1040

// dialErr reports whether err is a dial that failed or a name that did not
// resolve.
func dialErr(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// Wrap returns err as an *inventory.UnavailableError of op on server when
// it is that server's failure to be reached (PostgresErr, RedisErr,
// MySQLErr), err
// itself when it already is one, and nil otherwise.
func Wrap(op, server string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, inventory.ErrUnavailable):
		return err
	case server == Postgres && PostgresErr(err), server == Redis && RedisErr(err), server == MySQL && MySQLErr(err):
		return &inventory.UnavailableError{Op: op, Server: server, Err: err}
	}
	return nil
}

// Lost returns err as an *inventory.UnavailableError of op on server when it
// is the loss of the connection to the server under the call: the
// connection closed, reset or broken, or the session or call ended by the
// server (PostgreSQL: terminated, shut down; MySQL: killed, shut down). It
// is for calls that changed nothing whatever became of the connection, such
// as the statements of a transaction before its COMMIT (the server rolls
// back a transaction whose connection it loses), reads, or a Redis script
// whose effects the caller undid; a call that may have committed is
// classified as an unknown outcome instead.
// It returns err itself when it already is an UnavailableError, and nil
// otherwise.
func Lost(op, server string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, inventory.ErrUnavailable):
		return err
	case lostConn(err),
		server == Postgres && sessionEnded(err), server == MySQL && callKilled(err):
		return &inventory.UnavailableError{Op: op, Server: server, Err: err}
	}
	return nil
}

// sessionEnded reports whether err is PostgreSQL ending the session under
// the call: terminated by an administrator (57P01, pg_terminate_backend), a
// crash shutdown (57P02) or a server that cannot take it now (57P03).
func sessionEnded(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03")
}

// callKilled reports whether err is MySQL ending the call or its
// connection: KILL (ER_CONNECTION_KILLED, 1927), KILL QUERY
// (ER_QUERY_INTERRUPTED, 1317) or a shutdown (ER_SERVER_SHUTDOWN, 1053).
func callKilled(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1927 || me.Number == 1317 || me.Number == 1053)
}

// lostConn reports whether err is a connection that broke under a call, as
// pgx and the MySQL driver report it.
func lostConn(err error) bool {
	var op *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) ||
		(errors.As(err, &op) && (op.Op == "read" || op.Op == "write") && !op.Timeout())
}
