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

// Step is the part of Store.Reserve that takes the units of a request, for
// a strategy that takes them inside a transaction the store opens.
type Step interface {
	// SQL lists the statements Take runs for n lines, which the store
	// prepares (Stmt) before it takes a connection for the transaction: a
	// prepare needs a connection of its own the first time.
	SQL(n int) []string
	// Begin runs on the call's connection before the transaction begins
	// (a session setting, say); End after it ended, committed or not. An
	// error End returns makes the store close the connection.
	Begin(ctx context.Context, conn *sql.Conn) error
	End(ctx context.Context, conn *sql.Conn) error
	// Take takes the units of lines (valid, sorted by SKU) in tx, which
	// already holds the reservation's ledger rows, or refuses: an
	// *inventory.UnknownSKUError or *inventory.InsufficientStockError, or
	// any other error, rolls the reservation back and is returned.
	Take(ctx context.Context, tx *sql.Tx, lines []inventory.Line) error
}

// ReserveConditional holds the lines of req for req.TTL (0: the default TTL)
// with one CALL of the reserve procedure: the reservation rows, then a
// conditional UPDATE per line in SKU order, then COMMIT, all in the server,
// so that a hot row is locked only while the server finishes the call. It
// keeps the inventory.Reserver contract as the ledger's rules put it: a
// taken ID returns the first reservation or inventory.ErrConflict; a refused
// line its *inventory.InsufficientStockError or *inventory.UnknownSKUError;
// a deadlock victim or lock wait timeout is retried a few times, then
// inventory.ErrContended; a connection lost after the CALL was sent, an
// *inventory.OutcomeUnknownError.
func (s *Store) ReserveConditional(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return ledger.Reserve(ctx, s.name, reserving{s: s}, req, s.ttl, s.Now())
}

// Reserve holds the lines of req for req.TTL (0: the default TTL), taking
// their units with step inside a READ COMMITTED transaction that first
// records the reservation. Errors as ReserveConditional's.
func (s *Store) Reserve(ctx context.Context, req inventory.Request, step Step) (inventory.Reservation, error) {
	return ledger.Reserve(ctx, s.name, reserving{s: s, step: step}, req, s.ttl, s.Now())
}

// reserving is the store as the ledger's rules see it while Reserve runs.
type reserving struct {
	s    *Store
	step Step // nil: the reserve procedure
}

func (r reserving) Record(ctx context.Context, res inventory.Reservation, now time.Time) error {
	var err error
	for range maxVictimRounds {
		if r.step == nil {
			err = r.s.call(ctx, res, now)
		} else {
			err = r.s.recordTx(ctx, res, now, r.step)
		}
		if errors.Is(err, inventory.ErrContended) || !Retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if Retryable(err) && !errors.Is(err, inventory.ErrContended) {
		return fmt.Errorf("%s: reserve %q: %w: %w", r.s.name, res.ID, inventory.ErrContended, err)
	}
	return err
}

func (r reserving) Refusal(ctx context.Context, l inventory.Line) error { return r.s.refusal(ctx, l) }

func (r reserving) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	return r.s.Lookup(ctx, id)
}

// call runs the reserve procedure once.
func (s *Store) call(ctx context.Context, res inventory.Reservation, now time.Time) error {
	var skus, qtys strings.Builder
	for i, l := range res.Lines {
		if i > 0 {
			skus.WriteByte(0x1f)
			qtys.WriteByte(',')
		}
		skus.WriteString(l.SKU)
		qtys.WriteString(strconv.FormatInt(l.Qty, 10))
	}
	st, err := s.Stmt(ctx, s.q.reserve)
	if err != nil {
		return s.fail(ctx, "reserve", err)
	}
	_, err = st.ExecContext(ctx, []byte(res.ID), micros(res.ExpiresAt), micros(now), []byte(skus.String()), qtys.String())
	if i, ok := refusedLine(err); ok && i >= 0 && i < len(res.Lines) {
		return &ledger.RefusedError{Line: res.Lines[i]}
	}
	if Retryable(err) {
		return err
	}
	return s.afterCommit(ctx, "reserve", res.ID, err)
}

// recordTx runs one attempt of Reserve with step: the ledger rows and step's
// take, in one transaction on one connection.
func (s *Store) recordTx(ctx context.Context, res inventory.Reservation, now time.Time, step Step) (err error) {
	for _, q := range append(step.SQL(len(res.Lines)), s.q.insertRes, s.insertLinesSQL(len(res.Lines))) {
		if _, err := s.Stmt(ctx, q); err != nil {
			return s.fail(ctx, "reserve", err)
		}
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.fail(ctx, "reserve", err)
	}
	defer func() {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if eerr := step.End(ectx, conn); eerr != nil {
			_ = conn.Raw(func(any) error { return errBadConn })
		}
		_ = conn.Close()
	}()
	if err := step.Begin(ctx, conn); err != nil {
		return s.fail(ctx, "reserve", err)
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return s.fail(ctx, "reserve", err)
	}
	if err := s.insertLedger(ctx, tx, res, now); err != nil {
		rollback(tx)
		if Retryable(err) {
			return err
		}
		return s.fail(ctx, "reserve", err)
	}
	if err := step.Take(ctx, tx, res.Lines); err != nil {
		rollback(tx)
		if Retryable(err) && !hasNumber(err, errLockWaitTimeout) {
			return err // a deadlock victim: try again
		}
		return s.fail(ctx, "reserve", err)
	}
	return s.afterCommit(ctx, "reserve", res.ID, tx.Commit())
}

// errBadConn marks a connection whose session could not be restored, so
// that database/sql closes it instead of reusing it.
var errBadConn = errors.New("driver: bad connection")

// insertLedger writes the reservation and its lines in tx.
func (s *Store) insertLedger(ctx context.Context, tx *sql.Tx, res inventory.Reservation, now time.Time) error {
	st, err := s.Stmt(ctx, s.q.insertRes)
	if err != nil {
		return err
	}
	if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, []byte(res.ID), micros(res.ExpiresAt), micros(now)); err != nil {
		return err
	}
	st, err = s.Stmt(ctx, s.insertLinesSQL(len(res.Lines)))
	if err != nil {
		return err
	}
	args := make([]any, 0, 3*len(res.Lines))
	for _, l := range res.Lines {
		args = append(args, []byte(res.ID), []byte(l.SKU), l.Qty)
	}
	_, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	return err
}

func (s *Store) insertLinesSQL(n int) string {
	return "INSERT INTO " + s.Table("reservation_line") + " (reservation_id, sku, qty) VALUES " + Placeholders(n, "(?, ?, ?)")
}

// refusal reads the stock of a refused line to say why it was refused.
func (s *Store) refusal(ctx context.Context, l inventory.Line) error {
	n, err := s.Available(ctx, l.SKU)
	if err != nil {
		return err
	}
	return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
}

// ReadStock reads, in tx, the available units of the SKUs of lines with
// query, which takes the SKUs as its arguments and returns rows of (sku,
// available), and checks them: the refusal of the first line the stock
// cannot serve, or nil.
func (s *Store) ReadStock(ctx context.Context, tx *sql.Tx, query string, lines []inventory.Line) error {
	args := make([]any, len(lines))
	for i, l := range lines {
		args[i] = []byte(l.SKU)
	}
	st, err := s.Stmt(ctx, query)
	if err != nil {
		return err
	}
	rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	read := make(map[string]int64, len(lines))
	for rows.Next() {
		var sku []byte
		var n int64
		if err := rows.Scan(&sku, &n); err != nil {
			return err
		}
		read[string(sku)] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return ledger.Check(read, lines)
}
