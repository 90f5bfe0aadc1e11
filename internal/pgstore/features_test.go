package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/pessimistic"
	"github.com/oversell/inventory/strategy/strategytest"
)

// featureStore is a store that offers every feature, with the step of a
// strategy, the clock it reads, and the pool it runs on.
type featureStore struct {
	strategy
	clk *strategytest.Clock
	db  pgstore.DB
}

// featureSteps makes, for one schema, a store with each step that takes
// limits and Partial: sqlcond's (TakeStep) and pessimistic's.
var featureSteps = map[string]func(t *testing.T, db pgstore.DB, schema string, clk *strategytest.Clock) pgstore.Step{
	"take": func(t *testing.T, db pgstore.DB, schema string, clk *strategytest.Clock) pgstore.Step {
		return nil // the store's own TakeStep
	},
	"pessimistic": func(t *testing.T, db pgstore.DB, schema string, clk *strategytest.Clock) pgstore.Step {
		p, err := pessimistic.New(db, &pessimistic.Options{Schema: schema, Now: clk.Now})
		require.NoError(t, err)
		return pessimisticStep{p}
	},
}

// pessimisticStep stands for the pessimistic strategy's step: its Reserve
// runs the strategy itself on the same schema.
type pessimisticStep struct{ r *pessimistic.Reserver }

func (p pessimisticStep) Queue(*pgx.Batch, []inventory.Line) pgstore.Finish { return nil }

func newFeatureStore(t *testing.T, db pgstore.DB, schema string, clk *strategytest.Clock, step string) featureStore {
	t.Helper()
	store, err := pgstore.New(db, &pgstore.Options{Schema: schema, Now: clk.Now, Retention: strategytest.PurgeRetention,
		Limits: true, Backorders: true, Name: step})
	require.NoError(t, err)
	require.NoError(t, store.Migrate(t.Context()))
	st := featureSteps[step](t, db, schema, clk)
	if st == nil {
		st = store.TakeStep()
	}
	return featureStore{strategy{store, st}, clk, db}
}

// Reserve runs the pessimistic strategy itself for its step.
func (f featureStore) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if p, ok := f.step.(pessimisticStep); ok {
		return p.r.Reserve(ctx, req)
	}
	return f.strategy.Reserve(ctx, req)
}

// usage returns the usage rows of sku by buyer.
func (f featureStore) usage(ctx context.Context, sku string) (map[string]int64, error) {
	rows, err := f.db.Query(ctx, "SELECT buyer, used FROM "+f.Table("buyer_usage")+" WHERE sku = $1", sku)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var buyer string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&buyer, &n}, func() error { out[buyer] = n; return nil })
	return out, err
}

// replaceFunction puts in place of the function name of 0008_levels_limits.sql
// its text changed by edit, to make the store wrong on purpose.
func (f featureStore) replaceFunction(t *testing.T, name string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile("migrations/0008_levels_limits.sql")
	require.NoError(t, err)
	src := string(b)
	start := strings.Index(src, "CREATE OR REPLACE FUNCTION {schema}."+name+"(")
	require.GreaterOrEqual(t, start, 0, name)
	end := strings.Index(src[start:], "\n$fn$;") + start + len("\n$fn$;")
	fn := edit(src[start:end])
	require.NotEqual(t, src[start:end], fn, "the edit changed nothing")
	_, err = f.db.Exec(t.Context(), strings.ReplaceAll(fn, "{schema}", pgx.Identifier{f.Schema()}.Sanitize()))
	require.NoError(t, err)
}

// levelsOf checks Levels of sku against want.
func levelsOf(ctx context.Context, f featureStore, sku string, want inventory.Levels) error {
	got, err := f.Levels(ctx, sku)
	if err != nil {
		return fmt.Errorf("Levels(%q): %w", sku, err)
	}
	if got != want {
		return fmt.Errorf("Levels(%q) = %+v, want %+v", sku, got, want)
	}
	return nil
}

// checkUsageAndLevelsThroughPurge: every way a hold ends takes its units
// off the buyer's usage once, committed units go on counting, and neither
// the usage nor Levels move when Purge deletes the settled reservations.
func checkUsageAndLevelsThroughPurge(ctx context.Context, f featureStore) error {
	if err := f.SetStockWith(ctx, "lim", 10, inventory.StockOptions{Limit: 4, Backorder: 2}); err != nil {
		return err
	}
	line := func(n int64) []inventory.Line { return []inventory.Line{{SKU: "lim", Qty: n}} }
	hold := func(id string, n int64, ttl time.Duration) error {
		_, err := f.Reserve(ctx, inventory.Request{ID: id, Lines: line(n), Buyer: "b", TTL: ttl})
		return err
	}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	add(hold("committed", 2, 0))
	add(f.Commit(ctx, "committed"))
	add(hold("released", 1, 0))
	add(f.Release(ctx, "released"))
	add(hold("cancelled", 1, 0))
	add(f.Cancel(ctx, "cancelled"))
	add(hold("expired", 1, time.Minute))
	f.clk.Advance(2 * time.Minute)
	if _, err := f.ExpireDue(ctx, 10); err != nil {
		add(err)
	}
	add(hold("overdue", 1, time.Minute))
	f.clk.Advance(2 * time.Minute)
	if err := f.Commit(ctx, "overdue"); !errors.Is(err, inventory.ErrNotHeld) {
		add(fmt.Errorf("Commit of an overdue hold: %v, want ErrNotHeld", err))
	}
	add(hold("held", 1, time.Hour))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	want := inventory.Levels{Available: 9, Held: 1, Sold: 2}
	check := func(when string) error {
		u, err := f.usage(ctx, "lim")
		if err != nil {
			return err
		}
		if u["b"] != 3 {
			return fmt.Errorf("%s: usage of b is %d, want 3 (2 committed, 1 held)", when, u["b"])
		}
		return wrapWhen(when, levelsOf(ctx, f, "lim", want))
	}
	if err := check("before Purge"); err != nil {
		return err
	}
	f.clk.Advance(strategytest.PurgeRetention + time.Minute)
	n, err := f.Purge(ctx, 100)
	if err != nil {
		return err
	}
	if n != 5 {
		return fmt.Errorf("Purge deleted %d reservations, want the 5 settled", n)
	}
	if err := check("after Purge"); err != nil {
		return err
	}
	// The limit sees the same: one unit left for b.
	if err := hold("last", 1, 0); err != nil {
		return fmt.Errorf("the last unit of b's limit: %w", err)
	}
	var le *inventory.LimitError
	if err := hold("past", 1, 0); !errors.As(err, &le) || le.Had != 4 {
		return fmt.Errorf("past the limit after Purge: %v, want a *LimitError with Had 4", err)
	}
	// Stock on hand 10, 4 units out: within it, nothing backordered.
	return levelsOf(ctx, f, "lim", inventory.Levels{Available: 8, Held: 2, Sold: 2})
}

func wrapWhen(when string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", when, err)
}

func TestUsageAndLevelsThroughPurge(t *testing.T) {
	for name := range featureSteps {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFeatureStore(t, testsvc.Postgres(t), testsvc.Schema(t), strategytest.NewClock(), name)
			require.NoError(t, checkUsageAndLevelsThroughPurge(t.Context(), f))
		})
	}
}

// TestUsageAndLevelsChecksCatchWrongStores shows that the check fails a
// store whose release gives the units back without taking them off the
// buyer's usage (the function of before 0008), and one whose Levels sums
// the ledger, which Purge deletes, for the units sold.
func TestUsageAndLevelsChecksCatchWrongStores(t *testing.T) {
	for name, wrong := range map[string]struct {
		fn   string
		edit func(string) string
	}{
		"ReleaseKeepsUsage": {"stock_give_lines", func(s string) string {
			return strings.Replace(s, "CASE WHEN l.counted THEN", "CASE WHEN false THEN", 1)
		}},
		"LevelsSumTheLedger": {"stock_levels", func(s string) string {
			return strings.Replace(s, "coalesce(a.received_before,", "coalesce(NULL,", 1)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFeatureStore(t, testsvc.Postgres(t), testsvc.Schema(t), strategytest.NewClock(), "take")
			f.replaceFunction(t, wrong.fn, wrong.edit)
			err := checkUsageAndLevelsThroughPurge(t.Context(), f)
			assert.Error(t, err)
			t.Log("caught:", err)
		})
	}
}

// TestLevelsOfBucketsAfterRetention: Levels of a SKU in buckets, with a
// backorder, agree with what happened, before and after Purge.
func TestLevelsOfBucketsAfterRetention(t *testing.T) {
	ctx := t.Context()
	f := newFeatureStore(t, testsvc.Postgres(t), testsvc.Schema(t), strategytest.NewClock(), "take")
	require.NoError(t, f.SetStockWith(ctx, "b", 6, inventory.StockOptions{Buckets: 4, Backorder: 3}))
	var sold, held int64
	for i := range 8 {
		id := fmt.Sprintf("r%d", i)
		_, err := f.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "b", Qty: 1}}, TTL: time.Minute})
		require.NoError(t, err, id)
		switch i % 4 {
		case 0:
			require.NoError(t, f.Commit(ctx, id))
			sold++
		case 1:
			require.NoError(t, f.Release(ctx, id))
		case 2:
			require.NoError(t, f.Cancel(ctx, id))
		default:
			held++
		}
	}
	// A partial line gathers what the buckets have left: 9 - 2 sold - 2 held.
	p, err := f.Reserve(ctx, inventory.Request{ID: "p", Lines: []inventory.Line{{SKU: "b", Qty: 9, Min: 2}}, Partial: true, TTL: time.Hour})
	require.NoError(t, err)
	require.Equal(t, []inventory.Line{{SKU: "b", Qty: 5}}, p.Lines)
	require.NoError(t, f.Commit(ctx, "p"))
	sold += 5
	n, err := f.AddStock(ctx, "b", 2)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	want := inventory.Levels{Available: 2, Held: held, Sold: sold, Backordered: 1}
	require.NoError(t, levelsOf(ctx, f, "b", want))
	f.clk.Advance(2 * time.Minute) // the held ones are due, not yet expired: still held
	require.NoError(t, levelsOf(ctx, f, "b", want))
	f.clk.Advance(strategytest.PurgeRetention)
	purged, err := f.Purge(ctx, 100)
	require.NoError(t, err)
	assert.Equal(t, 7, purged)
	require.NoError(t, levelsOf(ctx, f, "b", want))
	expired, err := f.ExpireDue(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 2, expired)
	require.NoError(t, levelsOf(ctx, f, "b", inventory.Levels{Available: 4, Sold: sold}))
}

// TestLevelsOfSKUsMadeBeforeTheMigration: the statement 0008 runs after its
// transaction counts what a SKU received before, from its ledger, so that
// Levels is right for it, and Levels is right before it has run too.
func TestLevelsOfSKUsMadeBeforeTheMigration(t *testing.T) {
	ctx := t.Context()
	f := newFeatureStore(t, testsvc.Postgres(t), testsvc.Schema(t), strategytest.NewClock(), "take")
	require.NoError(t, f.SetStockWith(ctx, "old", 10, inventory.StockOptions{Buckets: 2}))
	for i, qty := range []int64{3, 2, 1} {
		_, err := f.Reserve(ctx, inventory.Request{ID: fmt.Sprint("o", i), Lines: []inventory.Line{{SKU: "old", Qty: qty}}})
		require.NoError(t, err)
	}
	require.NoError(t, f.Commit(ctx, "o0"))
	require.NoError(t, f.Release(ctx, "o1"))
	want := inventory.Levels{Available: 6, Held: 1, Sold: 3}
	require.NoError(t, levelsOf(ctx, f, "old", want))
	// As an installation of before: nothing counted, not yet counted.
	_, err := f.db.Exec(ctx, "UPDATE "+f.Table("stock")+" SET received = 0, received_before = NULL")
	require.NoError(t, err)
	require.NoError(t, levelsOf(ctx, f, "old", want), "not yet counted")
	n, err := f.AddStock(ctx, "old", 4)
	require.NoError(t, err)
	require.Equal(t, int64(10), n)
	want.Available = 10
	require.NoError(t, levelsOf(ctx, f, "old", want), "not yet counted, stock added")
	_, err = f.db.Exec(ctx, "DELETE FROM "+f.Table("schema_migrations")+" WHERE version = -8")
	require.NoError(t, err)
	require.NoError(t, f.Migrate(ctx))
	var before *int64
	require.NoError(t, f.db.QueryRow(ctx, "SELECT received_before FROM "+f.Table("stock")+" WHERE sku = 'old'").Scan(&before))
	require.NotNil(t, before, "counted")
	assert.Equal(t, int64(10), *before, "10 set, counted before the 4 added")
	require.NoError(t, levelsOf(ctx, f, "old", want))
}

// TestLimitAcrossPools runs buyers of SKUs with a limit from two pools,
// as two processes would, one with each step, and checks the limit and
// the usage: no buyer ever had more than the limit held and committed,
// every hold that ended took its units off once, and each SKU's units add
// up.
func TestLimitAcrossPools(t *testing.T) {
	require.NoError(t, limitAcrossPools(t, nil))
}

// TestLimitAcrossPoolsCatchesAnUnguardedCount shows that the check fails a
// store that, for a SKU in buckets, adds to the usage it read before the
// take without checking it again under the row lock.
func TestLimitAcrossPoolsCatchesAnUnguardedCount(t *testing.T) {
	err := limitAcrossPools(t, func(f featureStore) {
		f.replaceFunction(t, "stock_take_line", func(s string) string {
			return strings.Replace(s, " WHERE u.used + EXCLUDED.used <= lim", "", 1)
		})
	})
	assert.Error(t, err)
	t.Log("caught:", err)
}

func limitAcrossPools(t *testing.T, wrong func(featureStore)) error {
	const (
		limit   = 3
		buyers  = 3
		workers = 12
		rounds  = 12
	)
	ctx := t.Context()
	schema := testsvc.Schema(t)
	clk := strategytest.NewClock()
	stepB := "pessimistic"
	if wrong != nil {
		stepB = "take" // the wrong function is the take's: both pools run it
	}
	a := newFeatureStore(t, pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 4}), schema, clk, "take")
	b := newFeatureStore(t, pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 4}), schema, clk, stepB)
	if wrong != nil {
		wrong(a)
	}
	skus := []string{"whole", "split"}
	require.NoError(t, a.SetStockWith(ctx, "whole", 40, inventory.StockOptions{Limit: limit}))
	require.NoError(t, a.SetStockWith(ctx, "split", 60, inventory.StockOptions{Limit: limit, Buckets: 8}))

	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	// The pessimistic strategy serves SKUs kept whole only.
	skusOf := func(w int) []string {
		if w%2 == 1 && stepB == "pessimistic" {
			return skus[:1]
		}
		return skus
	}
	// First a burst per SKU: every worker that sells it at once, one unit
	// each, for one buyer; exactly the limit is held.
	for _, sku := range skus {
		start := make(chan struct{})
		var burst sync.WaitGroup
		for w := range workers {
			f := a
			if w%2 == 1 {
				f = b
			}
			if !slices.Contains(skusOf(w), sku) {
				continue
			}
			burst.Go(func() {
				<-start
				_, err := f.Reserve(ctx, inventory.Request{ID: fmt.Sprint("burst-", sku, w), Buyer: "burst", Lines: []inventory.Line{{SKU: sku, Qty: 1}}})
				var le *inventory.LimitError
				if err != nil && !errors.As(err, &le) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("burst %d: %w", w, err))
					mu.Unlock()
				}
			})
		}
		close(start)
		burst.Wait()
		var burstHeld int64
		if err := a.db.QueryRow(ctx, "SELECT coalesce(sum(l.qty), 0) FROM "+a.Table("reservation")+" r JOIN "+a.Table("reservation_line")+
			" l ON l.reservation_id = r.id WHERE r.buyer = 'burst' AND l.sku = $1", sku).Scan(&burstHeld); err != nil {
			return err
		}
		if burstHeld != limit {
			errs = append(errs, fmt.Errorf("buyers at once for one buyer hold %d units of %s, want the limit of %d", burstHeld, sku, limit))
		}
	}
	for w := range workers {
		wg.Go(func() {
			f := a
			if w%2 == 1 {
				f = b
			}
			rng := rand.New(rand.NewPCG(uint64(w), 8))
			for i := range rounds {
				req := inventory.Request{ID: fmt.Sprintf("w%d-%d", w, i), Buyer: fmt.Sprint("b", rng.IntN(buyers))}
				for _, sku := range skusOf(w) {
					if rng.IntN(3) > 0 {
						req.Lines = append(req.Lines, inventory.Line{SKU: sku, Qty: 1 + rng.Int64N(2)})
					}
				}
				if len(req.Lines) == 0 {
					req.Lines = []inventory.Line{{SKU: "whole", Qty: 1}}
				}
				if req.Partial = rng.IntN(2) == 0; req.Partial {
					for j := range req.Lines {
						req.Lines[j].Qty++
					}
				}
				_, err := f.Reserve(ctx, req)
				var le *inventory.LimitError
				switch {
				case errors.As(err, &le):
					continue
				case err != nil:
					mu.Lock()
					errs = append(errs, fmt.Errorf("Reserve(%+v): %w", req, err))
					mu.Unlock()
					return
				}
				switch rng.IntN(4) {
				case 0:
					err = f.Release(ctx, req.ID)
				case 1:
					err = f.Cancel(ctx, req.ID)
				case 2:
					err = f.Commit(ctx, req.ID)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("settling %s: %w", req.ID, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The ledger as it is now: what each buyer holds and bought.
	type key struct{ sku, buyer string }
	had := map[key]int64{}
	rows, err := a.db.Query(ctx, "SELECT l.sku, r.buyer, sum(l.qty) FILTER (WHERE r.state = 1), sum(l.qty) FILTER (WHERE r.state = 2) FROM "+
		a.Table("reservation")+" r JOIN "+a.Table("reservation_line")+" l ON l.reservation_id = r.id GROUP BY 1, 2")
	if err != nil {
		return err
	}
	var k key
	var heldN, soldN *int64
	perSKU := map[string]inventory.Levels{}
	if _, err := pgx.ForEachRow(rows, []any{&k.sku, &k.buyer, &heldN, &soldN}, func() error {
		lv := perSKU[k.sku]
		if heldN != nil {
			had[k] += *heldN
			lv.Held += *heldN
		}
		if soldN != nil {
			had[k] += *soldN
			lv.Sold += *soldN
		}
		perSKU[k.sku] = lv
		return nil
	}); err != nil {
		return err
	}
	for _, sku := range skus {
		u, err := a.usage(ctx, sku)
		if err != nil {
			return err
		}
		for buyer := range buyers {
			name := fmt.Sprint("b", buyer)
			n := had[key{sku, name}]
			if n > limit {
				errs = append(errs, fmt.Errorf("buyer %s holds and bought %d units of %s, over the limit of %d", name, n, sku, limit))
			}
			if u[name] != n {
				errs = append(errs, fmt.Errorf("usage of %s on %s is %d, the ledger says %d", name, sku, u[name], n))
			}
		}
		lv, err := a.Levels(ctx, sku)
		if err != nil {
			return err
		}
		want := perSKU[sku]
		total := map[string]int64{"whole": 40, "split": 60}[sku]
		if lv.Held != want.Held || lv.Sold != want.Sold || lv.Available+lv.Held+lv.Sold != total {
			errs = append(errs, fmt.Errorf("Levels(%s) = %+v, the ledger says held %d, sold %d, of %d", sku, lv, want.Held, want.Sold, total))
		}
	}
	// Every hold expires: only committed units go on counting.
	clk.Advance(time.Hour)
	for {
		n, err := a.ExpireDue(ctx, 50)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	for _, sku := range skus {
		u, err := a.usage(ctx, sku)
		if err != nil {
			return err
		}
		for buyer := range buyers {
			name := fmt.Sprint("b", buyer)
			k := key{sku, name}
			want := had[k]
			if want > 0 {
				var sold int64
				if err := a.db.QueryRow(ctx, "SELECT coalesce(sum(l.qty), 0) FROM "+a.Table("reservation")+" r JOIN "+a.Table("reservation_line")+
					" l ON l.reservation_id = r.id WHERE r.state = 2 AND l.sku = $1 AND r.buyer = $2", sku, name).Scan(&sold); err != nil {
					return err
				}
				want = sold
			}
			if u[name] != want {
				errs = append(errs, fmt.Errorf("after expiry, usage of %s on %s is %d, want the %d committed", name, sku, u[name], want))
			}
		}
	}
	return errors.Join(errs...)
}
