package mystore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// racy is a reserve procedure that reads the stock of its one line without
// a lock and writes back what it read minus the request, with a pause
// between: the read-then-write every strategy must avoid.
const racy = "CREATE PROCEDURE {db}.racy_reserve(" + `
	IN p_id VARBINARY(128), IN p_expires BIGINT, IN p_created BIGINT,
	IN p_skus VARBINARY(13000), IN p_qtys VARCHAR(1200))
MODIFIES SQL DATA
BEGIN
	DECLARE v_avail BIGINT;
	DECLARE v_qty BIGINT DEFAULT CAST(p_qtys AS SIGNED);
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
	SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	INSERT INTO {db}.reservation (id, state, expires_at, created_at) VALUES (p_id, 1, p_expires, p_created);
	INSERT INTO {db}.reservation_line (reservation_id, sku, qty) VALUES (p_id, p_skus, v_qty);
	SELECT available INTO v_avail FROM {db}.stock WHERE sku = p_skus;
	IF v_avail < v_qty THEN
		SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = 'inventory: line refused at 0';
	END IF;
	DO SLEEP(0.005);
	UPDATE {db}.stock SET available = v_avail - v_qty WHERE sku = p_skus;
	COMMIT;
END`

type racyReserver struct {
	mystore.Ledger
	s *mystore.Store
	c *mystore.Call
}

func (r *racyReserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	return r.s.Reserve(ctx, req, r.c)
}

// The hammer catches a read-then-write on MariaDB too: it oversells.
func TestHammerCatchesReadThenWrite(t *testing.T) {
	ctx := t.Context()
	db := testsvc.MySQLDatabase(t)
	s, err := mystore.New(testsvc.MySQL(t), &mystore.Options{Schema: db})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	_, err = testsvc.MySQL(t).ExecContext(ctx, strings.ReplaceAll(racy, "{db}", "`"+db+"`"))
	require.NoError(t, err)
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: &racyReserver{Ledger: s.Ledger(), s: s, c: s.NewCall("racy_reserve", false)},
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
	assert.Equal(t, 7, n, "each migration recorded once")
}
