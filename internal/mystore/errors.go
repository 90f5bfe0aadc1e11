package mystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/oversell/inventory/internal/ledger"
	"github.com/oversell/inventory/internal/unreach"
)

// Server error numbers the store reads.
const (
	errDupKey          = 1062 // ER_DUP_ENTRY: the reservation ID is taken
	errLockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT; MariaDB's answer to NOWAIT too
	errDeadlock        = 1213 // ER_LOCK_DEADLOCK: InnoDB chose this transaction as the victim
	errLockNoWait      = 3572 // ER_LOCK_NOWAIT (MySQL 8)
	errShutdown        = 1053 // ER_SERVER_SHUTDOWN
	errInterrupted     = 1317 // ER_QUERY_INTERRUPTED
	errKilled          = 1927 // ER_CONNECTION_KILLED (MariaDB)
	errRefused         = 30002
	errMovedCode       = 30003
)

// maxReadRounds bounds the attempts of a read (Lookup, Available) whose
// connection was lost under it: a read changes nothing, so it is sent again
// on another connection.
const maxReadRounds = 3

// lostConn reports whether err is a connection lost mid-call (killed, cut)
// while ctx is still alive: not the server's answer, not the context's end.
func lostConn(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && !answered(err) && !ledger.Final(err) &&
		!errors.Is(err, sql.ErrNoRows) && (errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) ||
		hasNumber(err, errKilled, errShutdown, errInterrupted))
}

// rollbackTimeout bounds a rollback, which runs even when the caller's
// context has ended, so that the connection goes back to the pool clean.
const rollbackTimeout = 5 * time.Second

func number(err error) (uint16, bool) {
	var my *mysql.MySQLError
	if errors.As(err, &my) {
		return my.Number, true
	}
	return 0, false
}

func hasNumber(err error, nums ...uint16) bool {
	n, ok := number(err)
	if !ok {
		return false
	}
	for _, m := range nums {
		if n == m {
			return true
		}
	}
	return false
}

// Retryable reports whether err is the server's refusal of a whole
// transaction that may succeed when sent again unchanged: a deadlock victim
// (1213) or a lock wait timeout (1205). Nothing was changed by it.
func Retryable(err error) bool { return hasNumber(err, errDeadlock, errLockWaitTimeout) }

// Contended reports whether err is a lock the transaction could not get:
// NOWAIT, a lock wait timeout or a deadlock.
func Contended(err error) bool {
	return hasNumber(err, errLockWaitTimeout, errLockNoWait, errDeadlock)
}

// answered reports whether err is the server's answer to a statement, after
// which the statement is known not to have committed. A connection killed or
// a server shut down while the statement ran is not: it may come after the
// commit.
func answered(err error) bool {
	n, ok := number(err)
	return ok && n != errShutdown && n != errInterrupted && n != errKilled
}

// refusedLine returns the index of the line the reserve procedure refused,
// read from its message ("... line refused at 3").
func refusedLine(err error) (int, bool) {
	var my *mysql.MySQLError
	if !errors.As(err, &my) || my.Number != errRefused {
		return 0, false
	}
	i := strings.LastIndexByte(my.Message, ' ')
	n, perr := strconv.Atoi(my.Message[i+1:])
	return n, perr == nil
}

// fail wraps the error of a call that changed nothing.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if hasNumber(err, errDupKey) {
		return ledger.ErrTaken
	}
	if hasNumber(err, errMovedCode) {
		return ledger.ErrMoved
	}
	if ledger.CtxErr(ctx) == nil { // a dial cut short by ctx's deadline is the deadline's
		if u := unreach.Wrap(op, unreach.MySQL, fmt.Errorf("%s: %w", s.name, err)); u != nil {
			return u
		}
		if u := unreach.Lost(op, unreach.MySQL, fmt.Errorf("%s: %w", s.name, err)); u != nil {
			return u
		}
	}
	return ledger.Fail(ctx, s.name, op, err, Contended(err))
}

// sentNothing reports whether err says the call never reached the server:
// database/sql's bad connection (returned only when nothing was written),
// or a connection that could not be opened.
func sentNothing(err error) bool {
	var op *net.OpError
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		(errors.As(err, &op) && op.Op == "dial")
}

// afterCommit classifies the error of a call that sent a commit (COMMIT, or a
// statement or procedure that commits by itself). When the server answered
// with an error, or nothing reached it, nothing changed; otherwise the
// outcome is unknown: a lost connection, a killed one, or a context that
// ended while the answer was awaited.
func (s *Store) afterCommit(ctx context.Context, op, id string, err error) error {
	switch {
	case err == nil:
		return nil
	case ledger.Final(err), answered(err), sentNothing(err):
		return s.fail(ctx, op, err)
	}
	return ledger.Unknown(s.name, op, id, err)
}

// CommitError classifies err, the error of a call that sent a commit for the
// operation op on id, as the store's own calls do: an
// *inventory.OutcomeUnknownError when the server may have committed it, else
// the error of a call that changed nothing.
func (s *Store) CommitError(ctx context.Context, op, id string, err error) error {
	return s.afterCommit(ctx, op, id, err)
}

// rollback ends tx whatever became of ctx.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }
