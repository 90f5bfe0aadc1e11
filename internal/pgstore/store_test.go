package pgstore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

var (
	_ pgstore.DB = (*pgxpool.Pool)(nil)
	_ pgstore.DB = (*pgx.Conn)(nil)
)

// condStep takes units with the conditional UPDATE, as sqlcond does.
type condStep struct{ sql string }

func newCondStep(s *pgstore.Store) *condStep {
	return &condStep{sql: s.GuardSQL("UPDATE " + s.Table("stock") +
		" SET available = available - $2 WHERE sku = $1 AND available >= $2 RETURNING 1")}
}

func (c *condStep) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	for _, l := range lines {
		pgstore.QueueRefusable(b, l, c.sql, l.SKU, l.Qty)
	}
	return nil
}

// strategy makes a Store with a step a whole inventory.Strategy.
type strategy struct {
	*pgstore.Store
	step pgstore.Step
}

func (s strategy) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return s.Store.Reserve(ctx, req, s.step)
}

// dropSchema drops a schema the test made itself when the test ends.
func dropSchema(t *testing.T, name string) {
	t.Helper()
	pool := testsvc.Postgres(t)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		assert.NoError(t, err)
	})
}

func tableCount(ctx context.Context, t *testing.T, schema string) int {
	t.Helper()
	var n int
	require.NoError(t, testsvc.Postgres(t).QueryRow(ctx,
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema).Scan(&n))
	return n
}

func TestUnusableSchemaNamesAreRefused(t *testing.T) {
	for name, schema := range map[string]string{
		"Long":       strings.Repeat("s", 64),
		"NUL":        "in\x00side",
		"InvalidUTF": "bad\xff",
	} {
		_, err := pgstore.New(testsvc.Postgres(t), &pgstore.Options{Schema: schema})
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, name)
		_, err = pgstore.DDL(schema)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, name)
	}
	_, err := pgstore.New(nil, nil)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "nil db")
	s, err := pgstore.New(testsvc.Postgres(t), nil)
	require.NoError(t, err)
	assert.Equal(t, pgstore.DefaultSchema, s.Schema())
	assert.Equal(t, `"inventory"."stock"`, s.Table("stock"))
}

func TestHostileSchemaNameIsQuotedHarmlessly(t *testing.T) {
	ctx := t.Context()
	// A canary "stock" table first on the search path: the hostile name's
	// DROP TABLE stock would hit it if the name ever reached SQL unquoted.
	canary := testsvc.Schema(t)
	pool := testsvc.Postgres(t)
	_, err := pool.Exec(ctx, "CREATE TABLE "+pgx.Identifier{canary, "stock"}.Sanitize()+" (canary int)")
	require.NoError(t, err)
	cfg, err := pgx.ParseConfig(testsvc.PostgresURL(t))
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = canary
	conn, err := pgx.ConnectConfig(ctx, cfg) // a *pgx.Conn is a DB too
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })

	hostile := `x"; DROP TABLE stock; -- ` + strategytest.RandomID()[:8]
	dropSchema(t, hostile)
	clk := strategytest.NewClock()
	store, err := pgstore.New(conn, &pgstore.Options{Schema: hostile, Now: clk.Now})
	require.NoError(t, err)
	s := strategy{store, newCondStep(store)}
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.SetStock(ctx, "a", 10))
	r, err := s.Reserve(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "a", Qty: 3}}, TTL: time.Minute})
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, r.ID))
	_, err = s.Reserve(ctx, inventory.Request{ID: "r2", Lines: []inventory.Line{{SKU: "a", Qty: 2}}, TTL: time.Minute})
	require.NoError(t, err)
	clk.Advance(2 * time.Minute)
	n, err := s.ExpireDue(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	avail, err := s.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(7), avail)

	var canaryLeft bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{canary, "stock"}.Sanitize()).Scan(&canaryLeft))
	assert.True(t, canaryLeft, "the canary table survived")
	assert.Equal(t, 9, tableCount(ctx, t, hostile), "the tables live in the schema with the hostile name")
}

func TestMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	ctx := t.Context()
	pool := testsvc.Postgres(t)
	name := "invtest_migrate_" + strategytest.RandomID()[:8] // not created: Migrate makes it
	dropSchema(t, name)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			s, err := pgstore.New(pool, &pgstore.Options{Schema: name})
			if err == nil {
				err = s.Migrate(ctx)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "migration %d", i)
	}
	s, err := pgstore.New(pool, &pgstore.Options{Schema: name})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx), "again")
	var applied, outside int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE version > 0), count(*) FILTER (WHERE version < 0) FROM "+
		pgx.Identifier{name, "schema_migrations"}.Sanitize()).Scan(&applied, &outside))
	files, err := os.ReadDir("migrations")
	require.NoError(t, err)
	assert.Equal(t, len(files), applied, "each migration recorded once")
	assert.Equal(t, 2, outside, "the statements outside the transaction recorded once, for 0005 and 0008")
	assert.Equal(t, 9, tableCount(ctx, t, name))
}

func TestDDLIsIdempotentAndMakesAWorkingSchema(t *testing.T) {
	ctx := t.Context()
	pool := testsvc.Postgres(t)
	name := "invtest_ddl_" + strategytest.RandomID()[:8]
	dropSchema(t, name)
	ddl, err := pgstore.DDL(name)
	require.NoError(t, err)
	for range 2 {
		_, err := pool.Exec(ctx, ddl)
		require.NoError(t, err)
	}
	store, err := pgstore.New(pool, &pgstore.Options{Schema: name})
	require.NoError(t, err)
	s := strategy{store, newCondStep(store)}
	require.NoError(t, s.SetStock(ctx, "a", 5))
	_, err = s.Reserve(ctx, inventory.Request{ID: "r", Lines: []inventory.Line{{SKU: "a", Qty: 5}}})
	require.NoError(t, err)
	_, err = s.Reserve(ctx, inventory.Request{ID: "r2", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	assert.ErrorIs(t, err, inventory.ErrInsufficientStock)
	require.NoError(t, s.Migrate(ctx), "Migrate over a schema made by DDL")
}

func TestCheckConstraintRefusesNegativeStock(t *testing.T) {
	ctx := t.Context()
	store, err := pgstore.New(testsvc.Postgres(t), &pgstore.Options{Schema: testsvc.Schema(t)})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx))
	require.NoError(t, store.SetStock(ctx, "a", 1))
	_, err = testsvc.Postgres(t).Exec(ctx, "UPDATE "+store.Table("stock")+" SET available = available - 2")
	var pgErr interface{ SQLState() string }
	require.True(t, errors.As(err, &pgErr))
	assert.Equal(t, "23514", pgErr.SQLState(), "the last line of defence holds")
}

// racyStep reads the stock, checks it in Go, and writes the new number
// back: the read-then-write with neither the conditional WHERE nor a row
// lock.
type racyStep struct{ read, write string }

func (r *racyStep) Queue(b *pgx.Batch, lines []inventory.Line) pgstore.Finish {
	read := pgstore.QueueStockRead(b, r.read, lines)
	return func(b *pgx.Batch) error {
		if err := read.Check(lines); err != nil {
			return err
		}
		for _, l := range lines {
			b.Queue(r.write, l.SKU, read[l.SKU]-l.Qty)
		}
		return nil
	}
}

// TestReadThenWriteWithoutGuardOversells shows why the strategies matter: the
// same store with a step that reads, checks in Go and writes the number back
// sells more than it has on real PostgreSQL under the suite's hammer.
func TestReadThenWriteWithoutGuardOversells(t *testing.T) {
	ctx := t.Context()
	clk := strategytest.NewClock()
	store, err := pgstore.New(testsvc.Postgres(t), &pgstore.Options{Schema: testsvc.Schema(t), Now: clk.Now})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx))
	stock := store.Table("stock")
	s := strategy{store, &racyStep{
		read:  "SELECT sku, available FROM " + stock + " WHERE sku = ANY ($1::text[])",
		write: "UPDATE " + stock + " SET available = $2 WHERE sku = $1",
	}}
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: s, Advance: clk.Advance, Workers: 64, Stock: 300, SellOut: true,
	})
	require.NoError(t, err)
	t.Log(rep)
	assert.Positive(t, rep.Oversold, "the read-then-write oversells")
	assert.Greater(t, rep.Granted, int64(300), "more units granted than exist")
	assert.False(t, rep.OK())
}
