package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// Step is the step of Store.Reserve that takes the units of a request from
// stock: the part in which the PostgreSQL strategies differ. The store does
// the rest (validation, the ledger, idempotency, commit, errors).
type Step interface {
	// Queue queues on b the statements that take the units of lines, or
	// read and lock their rows. lines are valid and sorted by SKU. b already
	// holds the statement that records the reservation, and the queued
	// statements run after it in the same transaction. Their results are
	// read through the callbacks of pgx.QueuedQuery (Exec, Query, QueryRow);
	// an error a callback returns rolls the reservation back and is returned
	// by Reserve (see Reserve for the errors a step may return).
	//
	// Queue returns the function that completes the step once b has run, or
	// nil when the queued statements take the units by themselves. With nil,
	// b runs in one round trip as one implicit transaction, which commits
	// unless a statement fails: a statement that refuses a line must then
	// raise an error, so build it with GuardSQL and queue it with
	// QueueRefusable or QueueGuarded.
	//
	// Queue is called once per attempt and must not block.
	Queue(b *pgx.Batch, lines []inventory.Line) Finish
}

// Take is one reservation as a RequestStep takes it.
type Take struct {
	ID      string
	Lines   []inventory.Line // valid and sorted by SKU, with the Min of the request
	Buyer   string           // Request.Buyer; empty: none
	Partial bool             // Request.Partial
	// Held is what the step held of each line, in the order of Lines. It
	// starts at each line's Qty; a step that holds fewer (with Partial)
	// sets it before the reservation commits: in a callback of a queued
	// statement, or in Finish.
	Held []int64
}

// RequestStep is a Step that takes every rule of a request and of its SKUs
// in the same transaction as the units: the limit per buyer of a SKU
// (inventory.StockOptions.Limit) with the buyer's usage, and
// inventory.Request.Partial. Store.Reserve calls QueueTake in place of
// Queue; a request with a Buyer or Partial is refused with
// inventory.ErrUnsupported by a step that is not one.
type RequestStep interface {
	Step
	// QueueTake is Step.Queue for t, which it may fill in (Take.Held).
	QueueTake(b *pgx.Batch, t *Take) Finish
}

// Committer is a Step that wants to know the moment its reservation is
// committed: Committed runs once the server has acknowledged the COMMIT of a
// step that returned a Finish, before Reserve hands the connection back to
// the pool (one more round trip) and returns. A step that holds something
// for the length of the transaction, such as a lock, lets go of it there.
type Committer interface {
	Committed()
}

// Finish completes a Step after its first batch has run, inside the still
// open transaction: it checks what that batch read and queues on b the
// statements that take the units. It does no I/O. The store sends b with
// COMMIT at its end, in one round trip, so that row locks taken by the first
// batch are held for that round trip only. A queued statement whose failure
// must roll the reservation back raises an error (GuardSQL); an error Finish
// returns rolls it back too and is returned by Reserve.
type Finish func(b *pgx.Batch) error

// StepFunc adapts a function to the Step interface.
type StepFunc func(b *pgx.Batch, lines []inventory.Line) Finish

// Queue calls f(b, lines).
func (f StepFunc) Queue(b *pgx.Batch, lines []inventory.Line) Finish { return f(b, lines) }

// RefusedError is what a Step returns for a line it cannot take. Reserve
// rolls back, reads the SKU's stock and returns an *inventory.UnknownSKUError
// or an *inventory.InsufficientStockError in its place.
type RefusedError = ledger.RefusedError

// GuardSQL wraps stmt, a data-modifying statement with a RETURNING clause,
// into one that raises an error when stmt returns no row, so that the batch
// it runs in rolls back whole. Build the statement once and queue it with
// QueueRefusable or QueueGuarded.
func (s *Store) GuardSQL(stmt string) string {
	return "WITH t AS (" + stmt + ")\nSELECT " + s.quoted + ".reserve_abort('" + codeRefused + "') WHERE NOT EXISTS (SELECT FROM t)"
}

// QueueRefusable queues sql, made by GuardSQL, with args on b. When it finds
// no row, the reservation fails with a *RefusedError for line.
func QueueRefusable(b *pgx.Batch, line inventory.Line, sql string, args ...any) {
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		_, err := br.Exec()
		if hasCode(err, codeRefused) {
			return &aborted{err: &RefusedError{Line: line}}
		}
		return err
	}
}

// QueueGuarded queues sql, made by GuardSQL, with args on b. When it finds no
// row, the reservation fails with onAbort.
func QueueGuarded(b *pgx.Batch, onAbort error, sql string, args ...any) {
	queueCoded(b, codeRefused, onAbort, sql, args...)
}

// queueCoded queues sql on b, failing with mapped in place of the error it
// raises with the SQLSTATE code.
func queueCoded(b *pgx.Batch, code string, mapped error, sql string, args ...any) {
	b.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		_, err := br.Exec()
		if hasCode(err, code) {
			return &aborted{err: mapped}
		}
		return err
	}
}

// Reserve holds the lines of req for req.TTL (0: the default TTL), taking
// their units with step, and records the reservation in the same
// transaction. It keeps the inventory.Reserver contract:
//
//   - req is validated first (inventory.ErrInvalidRequest), then ctx.
//   - The statement that records the reservation runs first. Its INSERT ...
//     ON CONFLICT DO NOTHING on the primary key waits for an in-flight
//     transaction recording the same ID; when that one commits, the ID is
//     taken, the batch rolls back before step touches any stock, and Reserve
//     returns the recorded reservation as it is now (when its lines are the
//     same) or inventory.ErrConflict.
//   - A step refuses with a *RefusedError (turned into the SKU's
//     *inventory.UnknownSKUError or *inventory.InsufficientStockError), or
//     with those typed errors directly; any inventory error it returns
//     (ErrContended, say) comes back unchanged. Nothing is recorded then.
//   - PostgreSQL's lock_not_available (55P03) and serialization_failure
//     (40001) come back as errors that errors.Is inventory.ErrContended.
//   - When the connection fails after the commit was sent (COMMIT, or the
//     batch that is its own implicit transaction), the result is an
//     *inventory.OutcomeUnknownError; calling Reserve again with the same
//     request settles it.
func (s *Store) Reserve(ctx context.Context, req inventory.Request, step Step) (inventory.Reservation, error) {
	l := &lazy{s: s, op: "reserve"}
	defer l.done()
	return ledger.Reserve(ctx, s.name, reserving{l, step}, req, s.ttl, s.Now())
}

// reserving is the store as the ledger's rules see it while Reserve runs
// with step, on one connection taken when the first statement is to be sent.
type reserving struct {
	l    *lazy
	step Step
}

func (r reserving) Record(ctx context.Context, res inventory.Reservation, now time.Time) ([]int64, error) {
	if _, ok := r.step.(RequestStep); !ok && (res.Buyer != "" || res.Partial) {
		return nil, inventory.RefuseUnoffered(r.l.s.name, inventory.Request{ID: res.ID, Lines: res.Lines, Buyer: res.Buyer, Partial: res.Partial}, false, false)
	}
	s, err := r.l.store(ctx)
	if err != nil {
		return nil, err
	}
	return s.record(ctx, res, now, r.step)
}

func (r reserving) Refusal(ctx context.Context, line inventory.Line) error {
	s, err := r.l.store(ctx)
	if err != nil {
		return err
	}
	return s.refusal(ctx, line)
}

func (r reserving) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	s, err := r.l.store(ctx)
	if err != nil {
		return inventory.Reservation{}, err
	}
	return s.Lookup(ctx, id)
}

// record runs one attempt of Reserve: the ledger insert and step, in one
// transaction. It returns the units held of each line.
func (s *Store) record(ctx context.Context, res inventory.Reservation, now time.Time, step Step) ([]int64, error) {
	skus, qtys := splitLines(res.Lines)
	var tail pgx.Batch
	var finish Finish
	t := &Take{ID: res.ID, Lines: res.Lines, Buyer: res.Buyer, Partial: res.Partial, Held: slices.Clone(qtys)}
	if rs, ok := step.(RequestStep); ok {
		finish = rs.QueueTake(&tail, t)
	} else {
		finish = step.Queue(&tail, res.Lines)
	}

	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(tail.QueuedQueries)+2)}
	if finish != nil {
		b.BeginTx(txOptions)
	}
	if res.Buyer == "" && !res.Partial {
		queueCoded(b, codeTaken, errTaken, s.q.record, res.ID, res.ExpiresAt, now, skus, qtys)
	} else {
		queueCoded(b, codeTaken, errTaken, s.q.recordAs, res.ID, res.ExpiresAt, now, skus, qtys, nullable(res.Buyer), res.Partial)
	}
	b.QueuedQueries = append(b.QueuedQueries, tail.QueuedQueries...)
	br := s.db.SendBatch(ctx, b)
	if finish == nil {
		return t.Held, s.afterCommit(ctx, "reserve", res.ID, br.Close())
	}

	tx := br.Tx()
	if tx == nil {
		_ = br.Close()
		return nil, errNoBeginTx(s.name, "reserve")
	}
	if err := br.Close(); err != nil {
		s.rollback(ctx, tx)
		return nil, s.fail(ctx, "reserve", err)
	}
	var last pgx.Batch
	if err := finish(&last); err != nil {
		s.rollback(ctx, tx)
		return nil, s.fail(ctx, "reserve", err)
	}
	committed, _ := step.(Committer)
	return t.Held, s.commit(ctx, tx, &last, "reserve", res.ID, committed)
}

// nullable returns s, or nil (NULL) when it is empty.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// txOptions begins the store's explicit transactions. They end with a COMMIT
// queued at the end of their last batch (see commit), after which pgx's own
// Commit only has to hand the connection back: its commit query is the empty
// statement, which costs a round trip outside any lock.
var txOptions = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, CommitQuery: ";"}

// commit sends b with COMMIT at its end on tx, begun with txOptions, and
// ends tx. When the server acknowledged the COMMIT it tells c, if not nil,
// before handing the connection back.
func (s *Store) commit(ctx context.Context, tx pgx.Tx, b *pgx.Batch, op, id string, c Committer) error {
	b.Queue("commit")
	err := tx.SendBatch(ctx, b).Close()
	if err != nil || tx.Conn().PgConn().TxStatus() != 'I' {
		// Something failed before COMMIT ran (the server skips the rest of
		// a failed batch), or the connection died: roll back, in case.
		s.rollback(ctx, tx)
		if err == nil {
			err = errors.New("the transaction is still open after COMMIT")
		}
		return s.afterCommit(ctx, op, id, err)
	}
	if c != nil {
		c.Committed()
	}
	_ = tx.Commit(ctx) // the empty statement: hands the connection back
	return nil
}

func errNoBeginTx(name, op string) error {
	return fmt.Errorf("%s: %s: the client's SendBatch does not begin transactions (pgx.Batch.BeginTx)", name, op)
}

// refusal reads the stock of a refused line to say why it was refused. The
// number it reports may be stale by the time it is read.
func (s *Store) refusal(ctx context.Context, l inventory.Line) error {
	avail, found, err := s.available(ctx, l.SKU)
	switch {
	case err != nil:
		return s.fail(ctx, "reserve", fmt.Errorf("line %q refused; reading its stock: %w", l.SKU, err))
	case !found:
		return &inventory.UnknownSKUError{SKU: l.SKU}
	}
	return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: avail}
}

// StockRead is what a step's plain or locking read of stock found: the
// available units per SKU. It is filled when the batch the read was queued
// on has run.
type StockRead map[string]int64

// QueueStockRead queues on b the query sql, which takes the SKUs as $1 and
// returns rows of (sku, available), and returns the StockRead it fills.
func QueueStockRead(b *pgx.Batch, sql string, lines []inventory.Line) StockRead {
	skus := make([]string, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	read := make(StockRead, len(lines))
	b.Queue(sql, skus).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var sku string
			var n int64
			if err := rows.Scan(&sku, &n); err != nil {
				return err
			}
			read[sku] = n
		}
		return rows.Err()
	})
	return read
}

// Check returns the refusal of the first line, in the order given, that the
// stock read cannot serve: an *inventory.UnknownSKUError or an
// *inventory.InsufficientStockError. Nil when every line can be taken.
func (r StockRead) Check(lines []inventory.Line) error { return ledger.Check(r, lines) }
