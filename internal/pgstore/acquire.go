package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oversell/inventory/internal/unreach"
)

// pool is a DB that hands out connections, as *pgxpool.Pool does. The store
// takes one before it sends anything, so that a call that ends while it
// waits for a connection is known to have sent nothing.
type pool interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// Acquire returns a client bound to one connection of the store's pool for
// the length of one call, and the function that hands it back; when the
// store's DB is not a pool (a *pgx.Conn), the DB itself and a no-op. Nothing
// has been sent when it fails: the error is the context's when it ended
// while waiting (never inventory.ErrOutcomeUnknown), an
// *inventory.UnavailableError when the server could not be reached, and the
// pool's error otherwise.
func (s *Store) Acquire(ctx context.Context, op string) (DB, func(), error) {
	p, ok := s.db.(pool)
	if !ok {
		return s.db, func() {}, nil
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, nil, s.unsent(ctx, op, err)
	}
	return c, c.Release, nil
}

// on returns a copy of the store bound to one connection (see Acquire) and
// the function that hands it back. The copy's calls do not acquire again.
func (s *Store) on(ctx context.Context, op string) (*Store, func(), error) {
	db, release, err := s.Acquire(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	if db == s.db {
		return s, release, nil
	}
	c := *s
	c.db = db
	return &c, release, nil
}

// unsent classifies the error of a call that sent nothing.
func (s *Store) unsent(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %s: waiting for a connection: %w", s.name, op, cerr)
	}
	if u := unreach.Wrap(op, unreach.Postgres, fmt.Errorf("%s: %w", s.name, err)); u != nil {
		return u
	}
	return fmt.Errorf("%s: %s: %w", s.name, op, err)
}

// lazy is a store that takes its connection when the call first needs one,
// after the checks that send nothing (validation, the context), for the
// ledger's rules, which run those checks themselves.
type lazy struct {
	s       *Store
	op      string
	on      *Store
	release func()
}

// store returns the store on the call's connection, acquiring it the first
// time.
func (l *lazy) store(ctx context.Context) (*Store, error) {
	if l.on == nil {
		on, release, err := l.s.on(ctx, l.op)
		if err != nil {
			return nil, err
		}
		l.on, l.release = on, release
	}
	return l.on, nil
}

// done hands the connection back, if one was taken.
func (l *lazy) done() {
	if l.release != nil {
		l.release()
	}
}
