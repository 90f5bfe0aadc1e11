package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/unreach"
)

// DB is the part of a PostgreSQL client a PostgresStore uses. *pgxpool.Pool,
// *pgx.Conn and pgx.Tx satisfy it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PostgresOptions configures a PostgresStore. A nil *PostgresOptions takes
// every default.
type PostgresOptions struct {
	// Schema holds the flag table. It is quoted, so any name is safe.
	// Default: "inventory".
	Schema string
	// Table is the name of the flag table. It is quoted, so any name is safe.
	// Default: "token_flag".
	Table string
}

// PostgresStore keeps the flags in a PostgreSQL table, one row per token,
// whose primary key makes the first insert win. Create the table with Migrate,
// or run DDL in your own migrations.
type PostgresStore struct {
	db     DB
	schema string
	table  string

	qTable, qIndex string
	insertSQL      string
	selectSQL      string
	deleteSQL      string
	takeOverSQL    string
	purgeSQL       string
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns a PostgresStore on db. It fails with an error that
// errors.Is inventory.ErrInvalidRequest when opts names an unusable schema or
// table: empty, longer than 63 bytes, not UTF-8, or holding a NUL byte. It
// does not touch the database: call Migrate, or run DDL, before use. db may
// be nil to read DDL only; every call that needs the database then fails
// with an error that errors.Is inventory.ErrInvalidRequest.
func NewPostgresStore(db DB, opts *PostgresOptions) (*PostgresStore, error) {
	s := &PostgresStore{db: db, schema: "inventory", table: "token_flag"}
	if opts != nil {
		if opts.Schema != "" {
			s.schema = opts.Schema
		}
		if opts.Table != "" {
			s.table = opts.Table
		}
	}
	if _, err := pgstore.QuoteSchema(s.schema); err != nil {
		return nil, err
	}
	if _, err := pgstore.QuoteSchema(s.table); err != nil {
		var ve *inventory.ValidationError
		if errors.As(err, &ve) {
			return nil, &inventory.ValidationError{Field: "Table", Reason: ve.Reason}
		}
		return nil, err
	}
	s.qTable = pgx.Identifier{s.schema, s.table}.Sanitize()
	s.qIndex = pgx.Identifier{s.table + "_expires_at_idx"}.Sanitize()
	// A flag past its expiry is free: the insert takes it over.
	s.insertSQL = `INSERT INTO ` + s.qTable + ` AS f (token, nonce, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (token) DO UPDATE SET nonce = EXCLUDED.nonce, expires_at = EXCLUDED.expires_at
WHERE f.expires_at <= now()
RETURNING nonce`
	s.selectSQL = `SELECT nonce FROM ` + s.qTable + ` WHERE token = $1 AND expires_at > now()`
	s.deleteSQL = `DELETE FROM ` + s.qTable + ` WHERE token = $1 AND nonce = $2`
	s.takeOverSQL = `UPDATE ` + s.qTable + ` SET nonce = $3, expires_at = now() + $4::bigint * interval '1 microsecond'
WHERE token = $1 AND nonce IN ($2, $3) AND expires_at > now()`
	s.purgeSQL = `DELETE FROM ` + s.qTable + ` WHERE token IN (
SELECT token FROM ` + s.qTable + ` WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`
	return s, nil
}

// errNilDB is what the calls of a PostgresStore made without a database
// return.
var errNilDB = &inventory.ValidationError{Field: "db", Reason: "nil"}

// DDL returns the statements that create the schema and the flag table if
// they do not exist, for users who run their own migration tool.
func (s *PostgresStore) DDL() string {
	return fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %s;
CREATE TABLE IF NOT EXISTS %s (
	token      text        PRIMARY KEY,
	nonce      text        NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS %s ON %s (expires_at);
`, pgx.Identifier{s.schema}.Sanitize(), s.qTable, s.qIndex, s.qTable)
}

// Migrate runs DDL in one transaction under an advisory lock, so processes
// starting together do not trip over each other. It is idempotent.
func (s *PostgresStore) Migrate(ctx context.Context) error {
	if s.db == nil {
		return errNilDB
	}
	// Without arguments the statements go in one simple-protocol query,
	// which PostgreSQL runs as one transaction.
	lock := `SELECT pg_advisory_xact_lock(hashtextextended('github.com/oversell/inventory/token', 0));` + "\n"
	if _, err := s.db.Exec(ctx, lock+s.DDL()); err != nil {
		return fmt.Errorf("token: migrate %s: %w", s.qTable, err)
	}
	return nil
}

// Claim implements Store: an INSERT ... ON CONFLICT that sets the flag when
// it is free (one round trip), and when it is not, a read of the nonce that
// holds it (a second round trip, for duplicates only).
func (s *PostgresStore) Claim(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error) {
	if s.db == nil {
		return false, errNilDB
	}
	us := max(ttl.Microseconds(), 1)
	// The row read on conflict may be gone by the time it is read (unclaimed
	// or expired); then the insert is tried again.
	for range 8 {
		var holder string
		err := s.repeat(ctx, "claim", func() error { return s.db.QueryRow(ctx, s.insertSQL, tok, nonce, us).Scan(&holder) })
		if err == nil {
			return holder == nonce, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, err
		}
		err = s.repeat(ctx, "claim", func() error { return s.db.QueryRow(ctx, s.selectSQL, tok).Scan(&holder) })
		if err == nil {
			return holder == nonce, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, err
		}
	}
	return false, fmt.Errorf("token: claim of a flag that keeps changing hands: %w", ErrInProgress)
}

// Holder implements Store with one SELECT.
func (s *PostgresStore) Holder(ctx context.Context, tok string) (string, error) {
	if s.db == nil {
		return "", errNilDB
	}
	var holder string
	err := s.repeat(ctx, "holder", func() error { return s.db.QueryRow(ctx, s.selectSQL, tok).Scan(&holder) })
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", err
	}
	return holder, nil
}

// TakeOver implements Store with one conditional UPDATE.
func (s *PostgresStore) TakeOver(ctx context.Context, tok, old, nonce string, ttl time.Duration) (bool, error) {
	if s.db == nil {
		return false, errNilDB
	}
	var tag pgconn.CommandTag
	err := s.repeat(ctx, "take over", func() (err error) {
		tag, err = s.db.Exec(ctx, s.takeOverSQL, tok, old, nonce, max(ttl.Microseconds(), 1))
		return err
	})
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Unclaim implements Store: it deletes the row if it holds nonce.
func (s *PostgresStore) Unclaim(ctx context.Context, tok, nonce string) error {
	if s.db == nil {
		return errNilDB
	}
	return s.repeat(ctx, "unclaim", func() error {
		_, err := s.db.Exec(ctx, s.deleteSQL, tok, nonce)
		return err
	})
}

// storeAttempts bounds the tries of one store statement whose connection
// was lost.
const storeAttempts = 3

// repeat runs f, one statement of op, again when its connection was lost
// while it ran (the server may or may not have run it): every statement of
// the store gives the same answer when made twice with the same nonce, so
// the repeat is harmless. pgx does not repeat a statement it has sent, as
// go-redis does for the RedisStore. A server that cannot be reached, or a
// connection still lost after storeAttempts tries, is an
// *inventory.UnavailableError: the flag is as the last try left it, and
// no stock was touched.
func (s *PostgresStore) repeat(ctx context.Context, op string, f func() error) error {
	var err error
	for range storeAttempts {
		if err = f(); err == nil || !lostConn(ctx, err) {
			break
		}
	}
	if u := unreach.Wrap(op, unreach.Postgres, err); u != nil {
		return u
	}
	if err != nil && lostConn(ctx, err) {
		return &inventory.UnavailableError{Op: op, Server: unreach.Postgres, Err: err}
	}
	return err
}

// lostConn reports whether err is a connection that failed under a
// statement, rather than an answer of the server or the end of ctx. A FATAL
// error (its session terminated by an administrator, a server shutting down
// or restarting: SQLSTATE class 57P) ends the connection too: the server
// may or may not have run the statement.
func lostConn(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, pgx.ErrNoRows) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL" || strings.HasPrefix(pgErr.Code, "57P")
	}
	return true
}

// Purge deletes at most limit flags whose expiry has passed and reports how
// many it deleted. limit must be positive. Expired flags do no harm (their tokens are refused before
// the store is asked, and a claim takes them over), they only take space;
// call Purge now and then, for example next to the inventory Sweeper. It is
// safe to call from many processes at once.
func (s *PostgresStore) Purge(ctx context.Context, limit int) (int, error) {
	if err := inventory.ValidateLimit(limit); err != nil {
		return 0, err
	}
	if s.db == nil {
		return 0, errNilDB
	}
	tag, err := s.db.Exec(ctx, s.purgeSQL, limit)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
