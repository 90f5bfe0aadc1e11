package pgstore

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The migrations, applied in name order. Each is idempotent on its own, so
// that DDL can be run more than once; {schema} stands for the quoted schema.
//
// A line that reads exactly outsideTx ends the part of a file that runs in
// the migration transaction: each part that follows such a line is one
// statement that PostgreSQL refuses inside a transaction, such as CREATE
// INDEX CONCURRENTLY (see Migrate).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// outsideTx is the line that starts a statement to run outside the
// migration transaction.
const outsideTx = "-- inventory:outside-transaction"

type migration struct {
	version int
	name    string
	sql     string   // run in the migration transaction
	outside []string // run after it, one statement each, outside any transaction
}

// loadMigrations lists the embedded migrations in order. File names start
// with their version: 0001_init.sql.
var loadMigrations = sync.OnceValues(func() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("pgstore: migration %s does not start with a version", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		parts := strings.Split(string(b), "\n"+outsideTx+"\n")
		ms = append(ms, migration{version: v, name: e.Name(), sql: parts[0], outside: parts[1:]})
	}
	return ms, nil
})

func expand(sql, quoted string) string {
	return strings.ReplaceAll(sql, "{schema}", quoted)
}

// DDL returns the SQL that creates the schema named schema and everything in
// it, for users who run their own migration tool. It is idempotent and runs
// whole in one transaction. It fails as QuoteSchema does for an unusable name.
//
// The statements that Migrate runs outside its transaction come last, as
// comments: on a new schema the SQL above them has done their work already
// (an index on an empty table); on a ledger with rows, run each on its own,
// outside a transaction, once the rest has run.
func DDL(schema string) (string, error) {
	quoted, err := QuoteSchema(schema)
	if err != nil {
		return "", err
	}
	migrations, err := loadMigrations()
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString("CREATE SCHEMA IF NOT EXISTS " + quoted + ";\n")
	for _, m := range migrations {
		sb.WriteString("\n-- " + m.name + "\n")
		sb.WriteString(expand(m.sql, quoted))
	}
	for _, m := range migrations {
		for _, stmt := range m.outside {
			sb.WriteString("\n-- " + m.name + ": on a ledger with rows, run on its own, outside a transaction:\n")
			for line := range strings.Lines(expand(stmt, quoted)) {
				sb.WriteString("-- " + line)
			}
			sb.WriteString("\n")
		}
	}
	return sb.String(), nil
}

// migrateLockKey is the advisory lock that serializes migrations of one
// schema across processes.
func migrateLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/oversell/inventory/migrate\x00"))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

// Migrate creates or upgrades the schema and its tables. It is idempotent and
// safe to run from many processes at once: it holds a transaction-level
// advisory lock while it works, and records the migrations it applied in the
// schema's schema_migrations table. Everything happens in one transaction,
// but the statements a migration marks to run outside one (CREATE INDEX
// CONCURRENTLY, which builds an index without blocking writes): those run
// after that transaction commits, in order, on one connection holding a
// session-level advisory lock of their own, and their migration is recorded
// again under the negative of its version once they have all succeeded. The
// lock is taken by polling, never by waiting in a statement: a CREATE INDEX
// CONCURRENTLY waits for every transaction older than its snapshot, a
// process waiting in a statement for the lock among them.
func (s *Store) Migrate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue("SELECT pg_advisory_xact_lock($1)", migrateLockKey(s.schema))
	br := s.db.SendBatch(ctx, b)
	tx := br.Tx()
	if tx == nil {
		_ = br.Close()
		return errNoBeginTx(s.name, "migrate")
	}
	defer s.rollback(ctx, tx) // a no-op once committed
	if err := br.Close(); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	versions := s.quoted + ".schema_migrations"
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.quoted+";\n"+
		"CREATE TABLE IF NOT EXISTS "+versions+" (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM "+versions)
	if err != nil {
		return s.fail(ctx, "migrate", err)
	}
	applied := make(map[int]bool)
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return s.fail(ctx, "migrate", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	pending := false // statements outside the transaction are yet to run
	for _, m := range migrations {
		pending = pending || len(m.outside) > 0 && !applied[-m.version]
		if applied[m.version] {
			continue
		}
		if _, err := tx.Exec(ctx, expand(m.sql, s.quoted)); err != nil {
			return s.fail(ctx, "migrate", fmt.Errorf("%s: %w", m.name, err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+versions+" (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return s.fail(ctx, "migrate", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	if !pending {
		return nil
	}
	return s.migrateOutside(ctx, migrations, versions)
}

// outsidePoll is the pause between attempts to take the lock of the
// statements that run outside the migration transaction.
const outsidePoll = 50 * time.Millisecond

// migrateOutside runs the statements of migrations that run outside a
// transaction and are not recorded yet, under a session-level advisory lock
// on one connection, and records each migration whose statements all ran
// under the negative of its version.
func (s *Store) migrateOutside(ctx context.Context, migrations []migration, versions string) error {
	s, done, err := s.on(ctx, "migrate")
	if err != nil {
		return err
	}
	defer done()
	key := migrateLockKey(s.schema + "\x00outside")
	for {
		var got bool
		if err := s.db.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
			return s.fail(ctx, "migrate", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return s.fail(ctx, "migrate", ctx.Err())
		case <-time.After(outsidePoll):
		}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_, _ = s.db.Exec(uctx, "SELECT pg_advisory_unlock($1)", key)
	}()
	for _, m := range migrations {
		if len(m.outside) == 0 {
			continue
		}
		var recorded bool
		if err := s.db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+versions+" WHERE version = $1)", -m.version).Scan(&recorded); err != nil {
			return s.fail(ctx, "migrate", err)
		}
		if recorded {
			continue
		}
		for _, stmt := range m.outside {
			// No arguments: pgx sends it by the simple protocol, alone, so
			// that it is not inside a transaction.
			if _, err := s.db.Exec(ctx, expand(stmt, s.quoted)); err != nil {
				return s.fail(ctx, "migrate", fmt.Errorf("%s: %w", m.name, err))
			}
		}
		if _, err := s.db.Exec(ctx, "INSERT INTO "+versions+" (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", -m.version, m.name); err != nil {
			return s.fail(ctx, "migrate", err)
		}
	}
	return nil
}
