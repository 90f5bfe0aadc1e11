package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"

	"github.com/oversell/inventory"
)

func TestAfterCommitTellsUnknownOutcomesFromRefusals(t *testing.T) {
	s := &Store{name: "test"}
	ctx := context.Background()
	for name, c := range map[string]struct {
		err     error
		unknown bool
	}{
		"ServerError":        {&pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "23505"}, false},
		"Terminated":         {&pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}, true},
		"ConnectionLost":     {io.ErrUnexpectedEOF, true},
		"ClosedWhileWaiting": {fmt.Errorf("read: %w", pgconn.ErrConnClosed), true},
		"CommitRolledBack":   {pgx.ErrTxCommitRollback, false},
		"ConnectFailed":      {&pgconn.ConnectError{}, false},
		"Taken":              {errTaken, false},
		"Refused":            {&RefusedError{Line: inventory.Line{SKU: "a", Qty: 1}}, false},
		"Insufficient":       {&inventory.InsufficientStockError{SKU: "a"}, false},
	} {
		err := s.afterCommit(ctx, "reserve", "id", c.err)
		assert.Equal(t, c.unknown, errors.Is(err, inventory.ErrOutcomeUnknown), name)
		assert.ErrorIs(t, err, c.err, "%s keeps its cause", name)
	}
}

func TestLockFailuresAreContended(t *testing.T) {
	s := &Store{name: "test"}
	for _, code := range []string{codeLockNotAvailable, codeSerializationFailure} {
		err := s.fail(context.Background(), "reserve", &pgconn.PgError{Severity: "ERROR", Code: code})
		assert.ErrorIs(t, err, inventory.ErrContended, code)
	}
	err := s.fail(context.Background(), "reserve", &pgconn.PgError{Severity: "ERROR", Code: "40P01"})
	assert.NotErrorIs(t, err, inventory.ErrContended, "a deadlock is a bug, not contention")
}

func TestFailKeepsTheContextError(t *testing.T) {
	s := &Store{name: "test"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.fail(ctx, "reserve", io.ErrUnexpectedEOF)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
