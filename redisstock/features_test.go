package redisstock_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// TestFeaturesSurviveLoad sells a SKU with a backorder, extends a hold and
// commits another, lets the writer carry it all to PostgreSQL, then wipes
// Redis and loads it again: the backorder, the stock levels and the
// extended expiry come back as they were, and Reconcile finds nothing. Its
// twin changes the backorder in PostgreSQL behind the writer's back, and
// Reconcile reports it.
func TestFeaturesSurviveLoad(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 8} {
		t.Run(map[int]string{1: "OneBucket", 8: "Buckets"}[buckets], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setup(ctx, t, nil, &redisstock.Options{Buckets: buckets})
			require.NoError(t, in.SetStockWith(ctx, "a", 2, inventory.StockOptions{Backorder: 3}))
			require.NoError(t, in.SetStock(ctx, "b", 5))
			held, err := in.Reserve(ctx, inventory.Request{ID: "held", Lines: []inventory.Line{line("a", 3), line("b", 1)}, TTL: time.Minute})
			require.NoError(t, err)
			sold, err := in.Reserve(ctx, req("sold", line("a", 1), line("b", 2)))
			require.NoError(t, err)
			require.NoError(t, in.Commit(ctx, sold.ID))
			ext, err := in.Extend(ctx, held.ID, 10*time.Minute)
			require.NoError(t, err)
			require.True(t, ext.ExpiresAt.After(held.ExpiresAt), "Extend moved the expiry on")
			n, err := in.AddStock(ctx, "a", 1)
			require.NoError(t, err)
			assert.Equal(t, int64(2), n, "a's available units count the unused backorder")

			want := map[string]inventory.Levels{
				"a": {Available: 2, Held: 3, Sold: 1, Backordered: 1},
				"b": {Available: 2, Held: 1, Sold: 2},
			}
			for sku, lv := range want {
				got, err := in.Levels(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, lv, got, "levels of %s before the Load", sku)
			}
			require.NoError(t, in.Writer.Drain(ctx))
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Empty(t, rep.Differences)

			require.NoError(t, in.Wipe(ctx))
			require.NoError(t, in.Load(ctx))
			for sku, lv := range want {
				got, err := in.Levels(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, lv, got, "levels of %s after the Load", sku)
			}
			got, err := in.Lookup(ctx, held.ID)
			require.NoError(t, err)
			assert.True(t, got.ExpiresAt.Equal(ext.ExpiresAt), "the extended expiry after the Load: %v, want %v", got.ExpiresAt, ext.ExpiresAt)
			// Stock set later keeps the backorder: the units on hand plus it
			// are available, as in the PostgreSQL strategies.
			require.NoError(t, in.SetStock(ctx, "a", 1))
			lv, err := in.Levels(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, inventory.Levels{Available: 4, Held: 3, Sold: 1, Backordered: 0}, lv, "SetStock keeps the backorder")
			require.NoError(t, in.Writer.Drain(ctx))
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Differences)

			// The twin: PostgreSQL's backorder changed behind the writer.
			_, err = testsvc.Postgres(t).Exec(ctx, `UPDATE `+pgx.Identifier{in.Schema, "stock"}.Sanitize()+` SET backorder = 7 WHERE sku = 'a'`)
			require.NoError(t, err)
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Len(t, rep.Differences, 1, "Reconcile reports the backorder PostgreSQL lost")
			assert.Equal(t, "a", rep.Differences[0].SKU)
			rep, err = in.Reconcile(ctx, &redisstock.ReconcileOptions{Repair: true})
			require.NoError(t, err)
			assert.True(t, rep.Repaired)
		})
	}
}

// TestLimitsSurviveLoad sells a SKU with a limit per buyer to two buyers,
// one of them with a partial cart over several buckets, lets the writer
// carry it to PostgreSQL, then wipes Redis and loads it again: the limit
// and every buyer's usage come back from the ledger (the buyer's held and
// committed lines), Reconcile finds nothing, and a release after the Load
// frees the usage. Its twins change the limit and a line's count in
// PostgreSQL behind the writer's back, and Reconcile reports each.
func TestLimitsSurviveLoad(t *testing.T) {
	t.Parallel()
	for _, buckets := range []int{1, 8} {
		t.Run(map[int]string{1: "OneBucket", 8: "Buckets"}[buckets], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setup(ctx, t, nil, &redisstock.Options{Buckets: buckets})
			require.NoError(t, in.SetStockWith(ctx, "lim", 10, inventory.StockOptions{Limit: 3}))
			require.NoError(t, in.SetStock(ctx, "free", 5))
			refusedAt := func(buyer string, had int64) {
				t.Helper()
				_, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{line("lim", 1)}, Buyer: buyer})
				var le *inventory.LimitError
				require.ErrorAs(t, err, &le, "buyer %s is at the limit", buyer)
				assert.Equal(t, inventory.LimitError{SKU: "lim", Buyer: buyer, Limit: 3, Had: had}, *le)
			}
			sold, err := in.Reserve(ctx, inventory.Request{ID: "sold", Lines: []inventory.Line{line("lim", 2), line("free", 1)}, Buyer: "b1"})
			require.NoError(t, err)
			require.NoError(t, in.Commit(ctx, sold.ID))
			held, err := in.Reserve(ctx, inventory.Request{ID: "held", Lines: []inventory.Line{line("lim", 1)}, Buyer: "b1"})
			require.NoError(t, err)
			part, err := in.Reserve(ctx, inventory.Request{ID: "part", Partial: true, Buyer: "b2",
				Lines: []inventory.Line{{SKU: "lim", Qty: 5, Min: 1}, {SKU: "free", Qty: 9, Min: 2}}})
			require.NoError(t, err)
			assert.Equal(t, []inventory.Line{line("free", 4), line("lim", 3)}, part.Lines, "a partial cart holds the rest of the limit and of the stock")
			gone, err := in.Reserve(ctx, inventory.Request{ID: "gone", Lines: []inventory.Line{line("lim", 2)}, Buyer: "b3"})
			require.NoError(t, err)
			require.NoError(t, in.Release(ctx, gone.ID))
			refusedAt("b1", 3)
			refusedAt("b2", 3)

			require.NoError(t, in.Writer.Drain(ctx))
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Empty(t, rep.Differences)

			require.NoError(t, in.Wipe(ctx))
			require.NoError(t, in.Load(ctx))
			refusedAt("b1", 3)
			refusedAt("b2", 3)
			got, err := in.Lookup(ctx, part.ID)
			require.NoError(t, err)
			assert.Equal(t, part.Lines, got.Lines)
			assert.Equal(t, "b2", got.Buyer)
			assert.True(t, got.Partial)
			// Released after the Load, the hold leaves the usage.
			require.NoError(t, in.Release(ctx, held.ID))
			_, err = in.Reserve(ctx, inventory.Request{ID: "again", Lines: []inventory.Line{line("lim", 1)}, Buyer: "b1"})
			require.NoError(t, err, "b1 has its 2 sold and may hold 1 again")
			refusedAt("b1", 3)
			require.NoError(t, in.Writer.Drain(ctx))
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Differences)

			// The twins: PostgreSQL's limit, then a line's count, changed
			// behind the writer.
			db := testsvc.Postgres(t)
			_, err = db.Exec(ctx, `UPDATE `+pgx.Identifier{in.Schema, "stock"}.Sanitize()+` SET buyer_limit = 7 WHERE sku = 'lim'`)
			require.NoError(t, err)
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Len(t, rep.Differences, 1, "Reconcile reports the limit PostgreSQL lost")
			assert.Equal(t, "stock", rep.Differences[0].Kind)
			rep, err = in.Reconcile(ctx, &redisstock.ReconcileOptions{Repair: true})
			require.NoError(t, err)
			assert.True(t, rep.Repaired)
			_, err = db.Exec(ctx, `UPDATE `+pgx.Identifier{in.Schema, "reservation_line"}.Sanitize()+` SET counted = false WHERE reservation_id = 'sold' AND sku = 'lim'`)
			require.NoError(t, err)
			rep, err = in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Len(t, rep.Differences, 1, "Reconcile reports the usage PostgreSQL lost")
			assert.Equal(t, redisstock.Difference{Kind: "usage", SKU: "lim", Buyer: "b1", Redis: "3", Postgres: "1"}, rep.Differences[0])
			_, err = db.Exec(ctx, `UPDATE `+pgx.Identifier{in.Schema, "reservation_line"}.Sanitize()+` SET counted = true WHERE reservation_id = 'sold' AND sku = 'lim'`)
			require.NoError(t, err)
		})
	}
}

// TestLimitRulesCatchWrongScripts runs the rules LimitPerBuyer checks on
// two deliberately wrong scripts: one whose take forgets the buyer's
// usage (the buyer gets past the limit), one whose give forgets to take it
// off (a released hold goes on counting). Each breaks the rule it breaks,
// so the suite's checks catch them.
func TestLimitRulesCatchWrongScripts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, old, wrong string }{
		{"TakeForgetsTheUsage", "use(6 + n, hl, cnt, q.y, 1)", ""},
		{"GiveForgetsTheUsage", "use(ufirst, ls, took.c, took.y, -1)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setupBare(ctx, t, nil, nil)
			require.Contains(t, redisstock.ScriptSource, tc.old)
			in.SetScriptSource(strings.Replace(redisstock.ScriptSource, tc.old, tc.wrong, 1))
			require.NoError(t, in.SetStockWith(ctx, "lim", 10, inventory.StockOptions{Limit: 2}))
			reserve := func() error {
				_, err := in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{line("lim", 1)}, Buyer: "b1"})
				return err
			}
			first, err := in.Reserve(ctx, inventory.Request{ID: "first", Lines: []inventory.Line{line("lim", 1)}, Buyer: "b1"})
			require.NoError(t, err)
			require.NoError(t, reserve())
			if tc.name == "TakeForgetsTheUsage" {
				assert.NoError(t, reserve(), "the wrong script lets the buyer past the limit")
				return
			}
			require.NoError(t, in.Release(ctx, first.ID))
			assert.ErrorIs(t, reserve(), inventory.ErrLimitExceeded, "the wrong script counts a released hold")
		})
	}
}

// TestPartialCartAcrossBucketsIsWholeOrNothing reserves a partial cart of
// a buyer whose first line (a SKU with a limit) its bucket can hold in
// part and whose second line, in a later bucket, is short of its Min: the
// first bucket's take is undone whole, its units and the buyer's usage
// with it, and nothing is reserved. The same cart with a Min the second
// bucket can serve holds each line at the size its own bucket's take
// decided.
func TestPartialCartAcrossBucketsIsWholeOrNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setup(ctx, t, nil, &redisstock.Options{Buckets: 16})
	first, second := "a-lim", ""
	for i := 0; second == ""; i++ {
		if s := "z-" + strconv.Itoa(i); in.Bucket(s) != in.Bucket(first) {
			second = s
		}
	}
	require.NoError(t, in.SetStockWith(ctx, first, 5, inventory.StockOptions{Limit: 3}))
	require.NoError(t, in.SetStock(ctx, second, 2))
	cart := func(id string, min int64) inventory.Request {
		return inventory.Request{ID: id, Buyer: "b1", Partial: true,
			Lines: []inventory.Line{{SKU: first, Qty: 9, Min: 1}, {SKU: second, Qty: 4, Min: min}}}
	}
	_, err := in.Reserve(ctx, cart("refused", 3))
	require.ErrorIs(t, err, inventory.ErrInsufficientStock, "the second line is short of its Min")
	for sku, n := range map[string]int64{first: 5, second: 2} {
		got, err := in.Available(ctx, sku)
		require.NoError(t, err)
		assert.Equal(t, n, got, "the first bucket's take was undone whole: %s", sku)
	}
	_, err = in.Lookup(ctx, "refused")
	require.ErrorIs(t, err, inventory.ErrNotFound)
	res, err := in.Reserve(ctx, cart("held", 2))
	require.NoError(t, err, "the undo took the usage off: the limit is all the buyer's again")
	assert.Equal(t, []inventory.Line{line(first, 3), line(second, 2)}, res.Lines)
	got, err := in.Lookup(ctx, "held")
	require.NoError(t, err)
	assert.Equal(t, res.Lines, got.Lines)
}
