package pessimistic_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/mystore/mytest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/pessimistic"
	"github.com/oversell/inventory/strategy/strategytest"
)

func newMySQL(db *sql.DB, schema string, now func() time.Time) (mytest.Strategy, error) {
	return pessimistic.NewMySQL(db, &pessimistic.Options{Schema: schema, Now: now})
}

func TestMySQLConformance(t *testing.T) {
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return mytest.Harness(ctx, t, newMySQL)
	})
}

func TestMySQLLockedRowFailsContendedAndChangesNothing(t *testing.T) {
	for name, c := range map[string]struct {
		opts    pessimistic.Options
		minWait time.Duration
	}{
		"NoWait":      {opts: pessimistic.Options{NoWait: true}},
		"LockTimeout": {opts: pessimistic.Options{LockTimeout: 500 * time.Millisecond}, minWait: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			db := mytest.Pool(t, 4, "")
			opts := c.opts
			opts.Schema = testsvc.MySQLDatabase(t)
			r, err := pessimistic.NewMySQL(db, &opts)
			require.NoError(t, err)
			require.NoError(t, r.Migrate(ctx))
			require.NoError(t, r.SetStock(ctx, "a", 10))
			require.NoError(t, r.SetStock(ctx, "b", 10))

			// Another transaction holds the row of b.
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			defer tx.Rollback()
			_, err = tx.ExecContext(ctx, "SELECT sku FROM `"+opts.Schema+"`.stock WHERE sku = 'b' FOR UPDATE")
			require.NoError(t, err)

			// A request with a Buyer is taken in a transaction of the
			// store's own, which waits for its locks in the same way.
			lines := []inventory.Line{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 1}}
			reqs := []inventory.Request{
				{ID: strategytest.RandomID(), Lines: lines},
				{ID: strategytest.RandomID(), Lines: lines, Buyer: "buyer-1"},
			}
			for _, req := range reqs {
				start := time.Now()
				_, err = r.Reserve(ctx, req)
				elapsed := time.Since(start)
				t.Logf("%s, buyer %q: %v after %v", name, req.Buyer, err, elapsed)
				require.ErrorIs(t, err, inventory.ErrContended)
				assert.GreaterOrEqual(t, elapsed, c.minWait)
				assert.Less(t, elapsed, 5*time.Second)
			}
			require.NoError(t, tx.Rollback())

			for _, req := range reqs {
				_, err = r.Lookup(ctx, req.ID)
				assert.ErrorIs(t, err, inventory.ErrNotFound, "nothing recorded")
			}
			for _, sku := range []string{"a", "b"} {
				n, err := r.Available(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, int64(10), n, "nothing taken from %s", sku)
			}
			for _, req := range reqs {
				_, err = r.Reserve(ctx, req)
				require.NoError(t, err, "the retry goes through once the lock is gone")
			}

			// The session's lock wait timeout is the server's again.
			var def, now int64
			require.NoError(t, db.QueryRowContext(ctx, "SELECT @@GLOBAL.innodb_lock_wait_timeout").Scan(&def))
			for range 4 {
				require.NoError(t, db.QueryRowContext(ctx, "SELECT @@SESSION.innodb_lock_wait_timeout").Scan(&now))
				assert.Equal(t, def, now)
			}
		})
	}
}
