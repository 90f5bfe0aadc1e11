package unreach_test

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/go-sql-driver/mysql"
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
