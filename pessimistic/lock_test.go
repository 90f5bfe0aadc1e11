package pessimistic_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/pessimistic"
	"github.com/oversell/inventory/strategy/strategytest"
)

func TestLockedRowFailsContendedAndChangesNothing(t *testing.T) {
	for name, c := range map[string]struct {
		opts    pessimistic.Options
		minWait time.Duration
	}{
		"NoWait":      {opts: pessimistic.Options{NoWait: true}},
		"LockTimeout": {opts: pessimistic.Options{LockTimeout: 100 * time.Millisecond}, minWait: 100 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			pool := testsvc.Postgres(t)
			opts := c.opts
			opts.Schema = testsvc.Schema(t)
			r, err := pessimistic.New(pool, &opts)
			require.NoError(t, err)
			require.NoError(t, r.Migrate(ctx))
			require.NoError(t, r.SetStock(ctx, "a", 10))
			require.NoError(t, r.SetStock(ctx, "b", 10))

			// Another transaction holds the row of b.
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)
			_, err = tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{opts.Schema, "stock"}.Sanitize()+" WHERE sku = 'b' FOR UPDATE")
			require.NoError(t, err)

			req := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 1}}}
			start := time.Now()
			_, err = r.Reserve(ctx, req)
			elapsed := time.Since(start)
			require.ErrorIs(t, err, inventory.ErrContended)
			assert.GreaterOrEqual(t, elapsed, c.minWait)
			assert.Less(t, elapsed, 5*time.Second)
			require.NoError(t, tx.Rollback(ctx))

			_, err = r.Lookup(ctx, req.ID)
			assert.ErrorIs(t, err, inventory.ErrNotFound, "nothing recorded")
			for _, sku := range []string{"a", "b"} {
				n, err := r.Available(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, int64(10), n, "nothing taken from %s", sku)
			}
			_, err = r.Reserve(ctx, req)
			require.NoError(t, err, "the retry goes through once the lock is gone")
		})
	}
}

func TestNegativeLockTimeoutIsRefused(t *testing.T) {
	_, err := pessimistic.New(testsvc.Postgres(t), &pessimistic.Options{LockTimeout: -time.Second})
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
}
