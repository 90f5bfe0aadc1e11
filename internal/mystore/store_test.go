package mystore_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// racy reads the stock without a lock and writes back what it read minus
// the request, with a pause between: the read-then-write every strategy must
// avoid.
type racy struct {
	mystore.Ledger
	s *mystore.Store
}

func (r *racy) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.s.Reserve(ctx, req, r)
}

func (r *racy) read() string {
	return "SELECT sku, available FROM " + r.s.Table("stock") + " WHERE sku = ?"
}
func (r *racy) write() string {
	return "UPDATE " + r.s.Table("stock") + " SET available = ? WHERE sku = ?"
}
func (r *racy) SQL(int) []string                       { return []string{r.read(), r.write()} }
func (r *racy) Begin(context.Context, *sql.Conn) error { return nil }
func (r *racy) End(context.Context, *sql.Conn) error   { return nil }

func (r *racy) Take(ctx context.Context, tx *sql.Tx, lines []inventory.Line) error {
	for _, l := range lines {
		var sku []byte
		var n int64
		if err := tx.QueryRowContext(ctx, r.read(), []byte(l.SKU)).Scan(&sku, &n); err != nil {
			return err
		}
		if n < l.Qty {
			return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
		}
		time.Sleep(5 * time.Millisecond) // the racy window, made certain
		if _, err := tx.ExecContext(ctx, r.write(), n-l.Qty, []byte(l.SKU)); err != nil {
			return err
		}
	}
	return nil
}

// The hammer catches a read-then-write on MariaDB too: it oversells.
func TestHammerCatchesReadThenWrite(t *testing.T) {
	ctx := t.Context()
	s, err := mystore.New(testsvc.MySQL(t), &mystore.Options{Schema: testsvc.MySQLDatabase(t)})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: &racy{Ledger: s.Ledger(), s: s},
		Workers:  8, SKUs: 1, Stock: 20, MaxLines: 1, OpsPerWorker: 10,
	})
	require.NoError(t, err)
	t.Log(rep)
	assert.Positive(t, rep.Oversold, "the racy strategy oversold")
}

// A hostile database name is one identifier: Migrate makes that database and
// touches no other.
func TestHostileSchemaNameIsQuoted(t *testing.T) {
	ctx := t.Context()
	db := testsvc.MySQL(t)
	victim := testsvc.MySQLDatabase(t)
	_, err := db.ExecContext(ctx, "CREATE DATABASE `"+victim+"`")
	require.NoError(t, err)
	hostile := "x`; DROP DATABASE `" + victim + "`; --"
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+strings.ReplaceAll(hostile, "`", "``")+"`")
	})
	s, err := mystore.New(db, &mystore.Options{Schema: hostile})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.SetStock(ctx, "a", 3))
	_, err = s.ReserveConditional(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "a", Qty: 2}}})
	require.NoError(t, err)
	n, err := s.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)

	var got string
	require.NoError(t, db.QueryRowContext(ctx, "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?", victim).Scan(&got))
	require.NoError(t, db.QueryRowContext(ctx, "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?", hostile).Scan(&got))
	assert.Equal(t, hostile, got)

	ddl, err := mystore.DDL(hostile)
	require.NoError(t, err)
	assert.Contains(t, ddl, "CREATE DATABASE IF NOT EXISTS `x``; DROP DATABASE ``")
}

func TestUnusableSchemaNamesAreRefused(t *testing.T) {
	for _, name := range []string{strings.Repeat("a", 65), "a\x00b", "trailing ", "\xff"} {
		_, err := mystore.QuoteSchema(name)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "%q", name)
	}
	_, err := mystore.New(nil, nil)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
}

// Migrate is idempotent and safe from many callers at once.
func TestMigrateConcurrently(t *testing.T) {
	ctx := t.Context()
	db := testsvc.MySQL(t)
	name := testsvc.MySQLDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := mystore.New(db, &mystore.Options{Schema: name})
			if err == nil {
				err = s.Migrate(ctx)
			}
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM `"+name+"`.schema_migrations").Scan(&n))
	assert.Equal(t, 2, n, "each migration recorded once")
}
