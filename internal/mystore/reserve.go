package mystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// maxVictimRounds bounds the attempts of one reservation that InnoDB picks
// as a deadlock victim or times out on a lock; past them, Reserve fails with
// inventory.ErrContended.
const maxVictimRounds = 4

// Call is a procedure that runs a whole reservation in the server, in one
// round trip: it records the reservation, takes the units of its lines in
// SKU order and commits, or rolls back and signals why. Its parameters are
// the reservation ID, its expiry and creation times (microseconds since the
// Unix epoch), the SKUs of the lines, sorted, joined by 0x1F, and their
// quantities joined by commas, then Args. A refused line signals 30002 with
// the message "... line refused at INDEX".
type Call struct {
	sql  string
	args []any
	// one, when not empty, is the CALL of a procedure of the same kind for a
	// cart of one line, whose parameters are the ID, the two times, the
	// line's SKU and its quantity, then args.
	one string
	// waitFinal: a lock wait timeout or a NOWAIT refusal is
	// inventory.ErrContended at once instead of being tried again.
	waitFinal bool
	// lock is how a reservation with a Buyer or Partial, which the store
	// takes in a transaction of its own (recordWith), waits for its row
	// locks: as the procedure does.
	lock lockWait
}

// lockWait is how the locking read of recordWith waits for a row another
// transaction holds.
type lockWait struct {
	noWait  bool  // fail at once (FOR UPDATE NOWAIT)
	seconds int64 // above 0: the session's innodb_lock_wait_timeout for the read
}

// NewCall returns the Call of the procedure proc of the store's database
// with the trailing arguments args. When waitFinal is set, a lock the
// procedure could not get in time (a lock wait timeout, NOWAIT) fails the
// reservation with inventory.ErrContended at once; otherwise it is tried
// again, as a deadlock victim always is, a few times.
func (s *Store) NewCall(proc string, waitFinal bool, args ...any) *Call {
	return &Call{
		sql:       "CALL " + s.Table(proc) + "(" + Placeholders(5+len(args), "?") + ")",
		args:      args,
		waitFinal: waitFinal,
	}
}

// LockingCall is the Call of the locking reserve procedure: each line's
// stock row locked with SELECT ... FOR UPDATE in SKU order, checked, then
// updated. With noWait a lock that is taken fails at once: the procedure
// sets the session's innodb_lock_wait_timeout to 0 while it runs (MariaDB
// refuses NOWAIT inside a procedure; MySQL 8 raises 0 to its minimum, 1 s).
// Otherwise a waitSeconds above 0 is that timeout while the procedure runs,
// and 0 leaves the session's. The session's own is put back before the
// procedure returns. A lock not had in time fails with
// inventory.ErrContended.
func (s *Store) LockingCall(noWait bool, waitSeconds int64) *Call {
	var wait any // NULL: the session's
	switch {
	case noWait:
		wait = int64(0)
	case waitSeconds > 0:
		wait = waitSeconds
	}
	c := s.NewCall(ProcLockingReserve, true, wait)
	c.one = "CALL " + s.Table(procLockingReserveOne) + "(" + Placeholders(6, "?") + ")"
	c.lock = lockWait{noWait: noWait, seconds: waitSeconds}
	if noWait {
		c.lock.seconds = 0
	}
	return c
}

// ReserveConditional holds the lines of req for req.TTL (0: the default TTL)
// with one CALL of the reserve procedure: the reservation rows, then a
// conditional UPDATE per line in SKU order, then COMMIT, all in the server,
// so that a hot row is locked only while the server finishes the call. It
// keeps the inventory.Reserver contract as the ledger's rules put it: a
// taken ID returns the first reservation or inventory.ErrConflict; a refused
// line its *inventory.InsufficientStockError, *inventory.UnknownSKUError or
// (a SKU with a limit per buyer, in a request without a Buyer)
// *inventory.LimitError; a deadlock victim or lock wait timeout is retried a
// few times, then inventory.ErrContended; a connection lost after the CALL
// was sent, an *inventory.OutcomeUnknownError.
//
// A request with a Buyer or Partial is taken in a transaction of the
// store's own instead (see the package documentation): the ledger rows,
// the stock rows locked in SKU order with the buyer's usage rows, each line
// decided by the rules of ledger.Grant under those locks, the units taken,
// the usage counted, COMMIT.
func (s *Store) ReserveConditional(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return s.Reserve(ctx, req, s.conditional)
}

// Reserve holds the lines of req for req.TTL (0: the default TTL) with one
// CALL of c, or, for a request with a Buyer or Partial, in a transaction of
// the store's own that waits for row locks as c does. Errors as
// ReserveConditional's, but for a lock not had in time when c says so
// (LockingCall).
func (s *Store) Reserve(ctx context.Context, req inventory.Request, c *Call) (inventory.Reservation, error) {
	return ledger.Reserve(ctx, s.name, reserving{s: s, c: c}, req, s.ttl, s.Now())
}

// reserving is the store as the ledger's rules see it while Reserve runs.
type reserving struct {
	s *Store
	c *Call
}

// Record holds every line whole with one CALL of the procedure, or, for a
// request with a Buyer or Partial, with recordWith.
func (r reserving) Record(ctx context.Context, res inventory.Reservation, now time.Time) ([]int64, error) {
	var held []int64
	var err error
	for range maxVictimRounds {
		if res.Buyer != "" || res.Partial {
			held, err = r.s.recordWith(ctx, r.c, res, now)
		} else {
			err = r.s.call(ctx, r.c, res, now)
		}
		if errors.Is(err, inventory.ErrContended) || !Retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if Retryable(err) && !errors.Is(err, inventory.ErrContended) {
		return nil, fmt.Errorf("%s: reserve %q: %w: %w", r.s.name, res.ID, inventory.ErrContended, err)
	}
	return held, err
}

func (r reserving) Refusal(ctx context.Context, l inventory.Line) error { return r.s.refusal(ctx, l) }

func (r reserving) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return r.s.Lookup(ctx, id)
}

// call runs c once for res. It returns the server's refusal unwrapped when
// it may be tried again (Retryable).
func (s *Store) call(ctx context.Context, c *Call, res inventory.Reservation, now time.Time) error {
	query := c.sql
	args := make([]any, 0, 5+len(c.args))
	args = append(args, []byte(res.ID), micros(res.ExpiresAt), micros(now))
	if len(res.Lines) == 1 && c.one != "" {
		query = c.one
		args = append(args, []byte(res.Lines[0].SKU), res.Lines[0].Qty)
	} else {
		var skus, qtys strings.Builder
		for i, l := range res.Lines {
			if i > 0 {
				skus.WriteByte(0x1f)
				qtys.WriteByte(',')
			}
			skus.WriteString(l.SKU)
			qtys.WriteString(strconv.FormatInt(l.Qty, 10))
		}
		args = append(args, []byte(skus.String()), qtys.String())
	}
	st, err := s.Stmt(ctx, query)
	if err != nil {
		return s.fail(ctx, "reserve", err)
	}
	_, err = st.ExecContext(ctx, append(args, c.args...)...)
	if i, ok := refusedLine(err); ok && i >= 0 && i < len(res.Lines) {
		return &ledger.RefusedError{Line: res.Lines[i]}
	}
	switch {
	case c.waitFinal && hasNumber(err, errLockWaitTimeout, errLockNoWait):
		return s.fail(ctx, "reserve", err)
	case Retryable(err):
		return err
	}
	return s.afterCommit(ctx, "reserve", res.ID, err)
}

// refusal reads the stock of a line the procedure refused to say why, by
// the rules of ledger.Grant for a request without a Buyer, the only ones it
// takes: an *inventory.LimitError for a SKU with a limit per buyer, else an
// *inventory.InsufficientStockError (the number it reports may be stale by
// the time it is read), or an *inventory.UnknownSKUError.
func (s *Store) refusal(ctx context.Context, l inventory.Line) error {
	n, limit, err := s.read(ctx, l.SKU)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return &inventory.UnknownSKUError{SKU: l.SKU}
	case err != nil:
		return s.fail(ctx, "reserve", fmt.Errorf("line %q refused; reading its stock: %w", l.SKU, err))
	}
	if _, err := ledger.Grant(l, "", false, ledger.Row{Available: n, Limit: limit}); err != nil {
		return err
	}
	return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
}
