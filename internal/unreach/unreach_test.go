package unreach_test

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/unreach"
)

func TestMySQLErrTellsAServerThatCouldNotBeReached(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	full := &mysql.MySQLError{Number: 1040, Message: "Too many connections"}
	for err, want := range map[error]bool{
		dial:                         true,
		fmt.Errorf("open: %w", dial): true,
		&net.DNSError{Name: "db"}:    true,
		full:                         true,
		&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}: false,
		&net.OpError{Op: "read", Err: errors.New("reset")}:          false,
		mysql.ErrInvalidConn: false,
	} {
		assert.Equal(t, want, unreach.MySQLErr(err), "%v", err)
	}
	u := unreach.Wrap("reserve", unreach.MySQL, full)
	assert.ErrorIs(t, u, inventory.ErrUnavailable)
	assert.Nil(t, unreach.Wrap("reserve", unreach.MySQL, mysql.ErrInvalidConn), "a connection lost after sending is not unreachable")
	assert.Nil(t, unreach.Wrap("reserve", unreach.Postgres, full), "a MySQL error is not PostgreSQL's")
}

func TestLostTellsABrokenConnectionFromAnAnswer(t *testing.T) {
	for err, want := range map[error]bool{
		io.ErrUnexpectedEOF:                                                      true,
		fmt.Errorf("read: %w", io.EOF):                                           true,
		mysql.ErrInvalidConn:                                                     true,
		driver.ErrBadConn:                                                        true,
		fmt.Errorf("x: %w", syscall.ECONNRESET):                                  true,
		&net.OpError{Op: "read", Err: errors.New("reset")}:                       true,
		&net.OpError{Op: "read", Err: timeout{}}:                                 false,
		&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}:              false,
		&pgconn.PgError{Severity: "ERROR", Code: "23505"}:                        false,
		errors.New("sqlcond: reserve: stock row missing"):                        false,
		&inventory.UnavailableError{Op: "reserve", Server: "postgres", Err: nil}: true,
		&pgconn.PgError{Severity: "FATAL", Code: "57P01"}:                        true,
	} {
		u := unreach.Lost("reserve", unreach.Postgres, err)
		assert.Equal(t, want, u != nil, "%v", err)
		if want {
			assert.ErrorIs(t, u, inventory.ErrUnavailable, "%v", err)
		}
	}
	assert.NotNil(t, unreach.Lost("reserve", unreach.Redis, io.EOF))
	assert.NotNil(t, unreach.Lost("reserve", unreach.MySQL, &mysql.MySQLError{Number: 1927, Message: "Connection was killed"}))
	assert.Nil(t, unreach.Lost("reserve", unreach.Postgres, &mysql.MySQLError{Number: 1927}), "a MySQL error is not PostgreSQL's")
}

// timeout is a net.Error that timed out: a deadline, not a broken link.
type timeout struct{}

func (timeout) Error() string   { return "i/o timeout" }
func (timeout) Timeout() bool   { return true }
func (timeout) Temporary() bool { return true }
