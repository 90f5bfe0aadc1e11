package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
	"github.com/oversell/inventory/internal/unreach"
)

// Errors the store's own statements raise through reserve_abort, for the
// ledger's rules. They never leave the package.
var (
	errTaken = ledger.ErrTaken
	errMoved = ledger.ErrMoved
)

// aborted is the error of a statement that raised through reserve_abort: the
// server answered and the batch rolled back; err says what it means.
type aborted struct{ err error }

func (a *aborted) Error() string { return a.err.Error() }
func (a *aborted) Unwrap() error { return a.err }

// SQLSTATEs the store maps to inventory.ErrContended.
const (
	codeLockNotAvailable     = "55P03"
	codeSerializationFailure = "40001"
)

// rollbackTimeout bounds a rollback, which runs even when the caller's
// context has ended, so that the connection goes back to the pool clean.
const rollbackTimeout = 5 * time.Second

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// answered reports whether err is the server's answer to a statement, after
// which the transaction is known to have rolled back (a FATAL error is not:
// it may come after a commit).
func answered(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	sev := pgErr.SeverityUnlocalized
	if sev == "" {
		sev = pgErr.Severity
	}
	return sev != "FATAL" && sev != "PANIC"
}

// final reports whether err is already an answer for the caller: an error of
// the store's own or an inventory error, which pass through unchanged.
func final(err error) bool {
	var ab *aborted
	return errors.As(err, &ab) || ledger.Final(err)
}

// fail wraps the error of a call that changed nothing.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	var ab *aborted
	if errors.As(err, &ab) {
		return ab.err
	}
	if ctx.Err() == nil {
		if u := unreach.Wrap(op, unreach.Postgres, err); u != nil {
			return u
		}
		if u := unreach.Lost(op, unreach.Postgres, fmt.Errorf("%s: %w", s.name, err)); u != nil {
			return u
		}
	}
	return ledger.Fail(ctx, s.name, op, err, hasCode(err, codeLockNotAvailable) || hasCode(err, codeSerializationFailure))
}

// afterCommit classifies the error of a call that sent a commit (COMMIT, or a
// batch or statement that is its own implicit transaction). When the server
// answered with an error, or nothing reached it, nothing changed; otherwise
// the outcome is unknown.
//
// pgconn.SafeToRetry tells that nothing reached the server, except for
// pgconn.ErrConnClosed: pgconn also reports a connection that died while it
// waited for the answer to a query it had sent as "conn closed", safe to
// retry. So that one counts as unknown. A *pgconn.ConnectError (the pool
// could not open a connection: the server is down or full) sent nothing: it
// is an *inventory.UnavailableError.
func (s *Store) afterCommit(ctx context.Context, op, id string, err error) error {
	var connect *pgconn.ConnectError
	switch {
	case err == nil:
		return nil
	case final(err), answered(err), errors.Is(err, pgx.ErrTxCommitRollback), errors.As(err, &connect),
		pgconn.SafeToRetry(err) && !errors.Is(err, pgconn.ErrConnClosed):
		return s.fail(ctx, op, err)
	}
	return ledger.Unknown(s.name, op, id, err)
}

// rollback ends tx whatever became of ctx.
func (s *Store) rollback(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = tx.Rollback(rctx)
}

// limitError is the *inventory.LimitError of a statement that raised
// codeLimit for a line of sku by buyer; its DETAIL is "<limit> <usage>".
func limitError(err error, sku, buyer string) error {
	e := &inventory.LimitError{SKU: sku, Buyer: buyer}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		_, _ = fmt.Sscanf(pgErr.Detail, "%d %d", &e.Limit, &e.Had)
	}
	return e
}
