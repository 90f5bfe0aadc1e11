package token_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/token"
)

// weirdTable needs quoting: it is safe only if every statement quotes it.
const weirdTable = `flag "x"; DROP TABLE y; --`

func newPostgresStore(t *testing.T) *token.PostgresStore {
	t.Helper()
	st, err := token.NewPostgresStore(testsvc.Postgres(t), &token.PostgresOptions{Schema: testsvc.Schema(t), Table: weirdTable})
	require.NoError(t, err)
	require.NoError(t, st.Migrate(t.Context()))
	return st
}

func TestPostgresStore(t *testing.T) {
	testStore(t, func(t *testing.T) token.Store { return newPostgresStore(t) })
}

func TestPostgresConcurrentSubmissionsOfOneTokenReachInnerOnce(t *testing.T) {
	testSubmittedOnce(t, newPostgresStore(t))
}

func TestPostgresMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	pool := testsvc.Postgres(t)
	schema := testsvc.Schema(t)
	st, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: schema})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { assert.NoError(t, st.Migrate(t.Context())) })
	}
	wg.Wait()
	require.NoError(t, st.Migrate(t.Context()))

	var n int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'token_flag'`, schema).Scan(&n))
	assert.Equal(t, 1, n, "default table")
}

func TestPostgresMigrateCreatesItsSchema(t *testing.T) {
	pool := testsvc.Postgres(t)
	schema := testsvc.Schema(t) + `_own "schema"`
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		assert.NoError(t, err)
	})
	st, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, st.Migrate(t.Context()))
	mine, err := st.Claim(t.Context(), "tok", "a", time.Minute)
	require.NoError(t, err)
	assert.True(t, mine)
}

func TestPostgresDDLNamesTheSchemaAndTableQuoted(t *testing.T) {
	st, err := token.NewPostgresStore(nil, &token.PostgresOptions{Schema: "shop", Table: `t"1`})
	require.NoError(t, err)
	ddl := st.DDL()
	assert.Contains(t, ddl, `CREATE SCHEMA IF NOT EXISTS "shop"`)
	assert.Contains(t, ddl, `CREATE TABLE IF NOT EXISTS "shop"."t""1"`)
	def, err := token.NewPostgresStore(nil, nil)
	require.NoError(t, err)
	assert.Contains(t, def.DDL(), `"inventory"."token_flag"`)
}

func TestPostgresStoreRejectsUnusableNames(t *testing.T) {
	long := strings.Repeat("s", 64)
	for name, opts := range map[string]*token.PostgresOptions{
		"LongSchema": {Schema: long},
		"LongTable":  {Table: long},
		"NULSchema":  {Schema: "a\x00b"},
		"NULTable":   {Table: "a\x00b"},
		"BadUTF8":    {Table: "\xff"},
	} {
		_, err := token.NewPostgresStore(nil, opts)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, name)
	}
}

func TestPostgresStoreWithoutDatabaseGivesDDLAndFailsEveryCall(t *testing.T) {
	ctx := t.Context()
	st, err := token.NewPostgresStore(nil, nil)
	require.NoError(t, err)
	assert.NotEmpty(t, st.DDL())
	require.ErrorIs(t, st.Migrate(ctx), inventory.ErrInvalidRequest)
	_, err = st.Claim(ctx, "tok", "nonce", time.Minute)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	require.ErrorIs(t, st.Unclaim(ctx, "tok", "nonce"), inventory.ErrInvalidRequest)
	_, err = st.Purge(ctx, 10)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
}

func TestPostgresPurgeDeletesOnlyExpiredFlags(t *testing.T) {
	st := newPostgresStore(t)
	ctx := t.Context()
	for _, tok := range []string{"a", "b", "c"} {
		_, err := st.Claim(ctx, tok, "n", time.Millisecond)
		require.NoError(t, err)
	}
	_, err := st.Claim(ctx, "live", "n", time.Hour)
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)

	n, err := st.Purge(ctx, 2)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = st.Purge(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	mine, err := st.Claim(ctx, "live", "other", time.Hour)
	require.NoError(t, err)
	assert.False(t, mine, "a live flag was purged")

	_, err = st.Purge(ctx, 0)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
}
