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

	"github.com/jackc/pgx/v5"
)

// The migrations, applied in name order. Each is idempotent on its own, so
// that DDL can be run more than once; {schema} stands for the quoted schema.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
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
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return ms, nil
})

func expand(sql, quoted string) string {
	return strings.ReplaceAll(sql, "{schema}", quoted)
}

// DDL returns the SQL that creates the schema named schema and everything in
// it, for users who run their own migration tool. It is idempotent. It fails
// as QuoteSchema does for an unusable name.
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
// schema's schema_migrations table. Everything happens in one transaction.
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
	for _, m := range migrations {
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
	return nil
}
