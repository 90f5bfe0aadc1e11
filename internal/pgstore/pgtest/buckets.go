package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// bucketsK is the number of stock buckets the bucket tests split a SKU into.
const bucketsK = 8

// Bucketed is a strategy under test that splits SKUs into stock buckets.
type Bucketed interface {
	Strategy
	inventory.StockConfigurer
	inventory.Rebalancer
}

// RunBuckets checks the stock buckets of strategies made by mk, which must
// split every SKU that SetStock creates into eight buckets
// (SKUDefaults), beyond what the conformance suite checks with such a
// strategy: the last unit of a SKU is sold whichever bucket a buyer starts
// from, and a line larger than any bucket is served; units come back to the
// bucket they were taken from; Rebalance makes and loses no unit while
// buyers reserve, checked in one snapshot again and again while it runs.
// Each check also runs against a deliberately wrong rule, put in the
// schema's functions in place of the right one, and must catch it.
func RunBuckets(t *testing.T, mk Maker) {
	t.Run("LastUnitIsSold", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		require.NoError(t, strategytest.LastUnitIsSold(t.Context(), in.probe()))
	})
	t.Run("LastUnitIsSoldCatchesARefusalByOneBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.replace(t, wrongTake)
		err := strategytest.LastUnitIsSold(t.Context(), in.probe())
		require.Error(t, err, "a take that refuses when its first bucket is short went unnoticed")
		t.Logf("caught: %v", err)
	})
	t.Run("LastUnitIsSoldCatchesAFallOverThatStopsAtOneBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.replace(t, wrongMore)
		err := strategytest.LastUnitIsSold(t.Context(), in.probe())
		require.Error(t, err, "a fall-over that looks at no other bucket went unnoticed")
		t.Logf("caught: %v", err)
	})
	t.Run("UnitsReturnToTheirBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		require.NoError(t, strategytest.UnitsReturnToTheirBucket(t.Context(), in.probe()))
	})
	t.Run("UnitsReturnToTheirBucketCatchesTheWrongBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.replace(t, wrongGive)
		err := strategytest.UnitsReturnToTheirBucket(t.Context(), in.probe())
		require.Error(t, err, "units given back to the next bucket went unnoticed")
		t.Logf("caught: %v", err)
	})
	t.Run("GiveBackWaitsForNoHeldBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		require.NoError(t, giveBackFree(t, in))
	})
	t.Run("GiveBackWaitsForNoHeldBucketCatchesAReturnThatWaits", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.mutate(t, "stock_return", "c.bucket = b_ FOR UPDATE SKIP LOCKED", "c.bucket = b_ FOR UPDATE")
		err := giveBackFree(t, in)
		require.Error(t, err, "a return that waits for the bucket another transaction holds went unnoticed")
		t.Logf("caught: %v", err)
	})
	t.Run("RebalanceUnderBuyersKeepsEveryUnit", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		v, err := rebalanceHammer(t.Context(), in)
		require.NoError(t, err)
		assert.Empty(t, v, "snapshots in which the units did not add up")
	})
	t.Run("RebalanceUnderBuyersCatchesAnUnlockedRebalance", func(t *testing.T) {
		t.Parallel()
		// The wrong rebalance loses units only when a buyer takes some
		// between its read and its write: a loaded machine may run a whole
		// hammer without that, so it gets a few, each on a schema of its own.
		var v []string
		for run := 0; run < 4 && len(v) == 0; run++ {
			in := newBucketed(t, mk)
			in.replace(t, wrongSpread)
			var err error
			v, err = rebalanceHammer(t.Context(), in)
			require.NoError(t, err)
		}
		require.NotEmpty(t, v, "a rebalance that reads the buckets without locking them went unnoticed in four hammers")
		t.Logf("caught: %s", v[0])
	})
}

// RunFlushBuckets checks what the groupcommit flush does with SKUs in
// buckets, on strategies made by mk(home), which must split every SKU that
// SetStock creates into eight buckets and take from home bucket home:
// a line is taken from the home bucket and recorded with it, Release
// and expiry in the flush give units back to their bucket, and the expiry
// in the flush of one Reserver never waits for the home bucket of another
// on the same schema, held by that one's flush, and a commit reads no hold
// but its own, whatever the statistics of the ledger. Each check also runs
// against the installed flush changed into a deliberately wrong one, and
// must catch it.
func RunFlushBuckets(t *testing.T, mkHome func(home int) Maker) {
	const home, other = 3, 5
	mk := mkHome(home)
	const dropRelease = "bx_qty := bx_qty || a_;"
	const useHome = "THEN p_home % s.buckets END"
	t.Run("TakesFromItsHomeBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		require.NoError(t, homeTaken(t.Context(), in, home))
	})
	t.Run("TakesFromItsHomeBucketCatchesAFlushThatIgnoresIt", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.mutate(t, pgstore.FlushFunction, useHome, "THEN 0 END")
		err := homeTaken(t.Context(), in, home)
		require.Error(t, err, "a flush that takes from bucket 0 whatever its home went unnoticed")
		t.Logf("caught: %v", err)
	})
	const waitOther = "c.bucket = bx_bkt[j] FOR UPDATE SKIP LOCKED"
	t.Run("ExpiryWaitsForNoOtherHomeBucket", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		require.NoError(t, expiryFree(t, in, mkHome(other), home, other))
	})
	t.Run("ExpiryWaitsForNoOtherHomeBucketCatchesAFlushThatWaits", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.mutate(t, pgstore.FlushFunction, waitOther, "c.bucket = bx_bkt[j] FOR UPDATE")
		err := expiryFree(t, in, mkHome(other), home, other)
		require.Error(t, err, "a flush that waits for another Reserver's home bucket to give expired units back went unnoticed")
		t.Logf("caught: %v", err)
	})
	const byKey = "r.id = y_ AND r.state::int = 1 AND r.expires_at > now_;"
	t.Run("CommitReadsNoOtherHold", func(t *testing.T) {
		t.Parallel()
		in := newBucketedOn(t, mk, Pool(t, PoolConfig{MaxConns: 1}))
		require.NoError(t, commitByKey(t, in))
	})
	t.Run("CommitReadsNoOtherHoldCatchesAFlushThatReadsTheHolds", func(t *testing.T) {
		t.Parallel()
		in := newBucketedOn(t, mk, Pool(t, PoolConfig{MaxConns: 1}))
		in.mutate(t, pgstore.FlushFunction, byKey, "r.id = y_ AND r.state = 1 AND r.expires_at > now_;")
		err := commitByKey(t, in)
		require.Error(t, err, "a flush whose commit reads the holds through reservation_held_due went unnoticed")
		t.Logf("caught: %v", err)
	})
	t.Run("UnitsReturnToTheirBucketCatchesAFlushThatDropsReleases", func(t *testing.T) {
		t.Parallel()
		in := newBucketed(t, mk)
		in.mutate(t, pgstore.FlushFunction, dropRelease, "NULL;")
		err := strategytest.UnitsReturnToTheirBucket(t.Context(), in.probe())
		require.Error(t, err, "a flush that drops the units released from buckets went unnoticed")
		t.Logf("caught: %v", err)
	})
}

// commitByKey checks that a flush that commits one hold reads no other
// hold, however many there are: on a ledger no ANALYZE has seen (autovacuum
// is off on it), the flushes of one session settle on a plan while it is
// small and keep it; then 300 holds are made, one is committed, and the
// entries of reservation_held_due that the commit read, from the server's
// statistics of b's one connection, must be far fewer than the holds.
func commitByKey(t *testing.T, b *bucketed) error {
	ctx := t.Context()
	var version int
	require.NoError(t, b.db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version))
	if version < 150000 {
		t.Skipf("reading a session's statistics at once needs pg_stat_force_next_flush, PostgreSQL 15 or later; the server is %d", version)
	}
	_, err := b.db.Exec(ctx, "ALTER TABLE "+b.quoted+".reservation SET (autovacuum_enabled = false)")
	require.NoError(t, err)
	if err := b.SetStockWith(ctx, "key", 1_000_000, inventory.StockOptions{Buckets: bucketsK}); err != nil {
		return err
	}
	one := []inventory.Line{{SKU: "key", Qty: 1}}
	for range 8 {
		id := strategytest.RandomID()
		if _, err := b.Reserve(ctx, inventory.Request{ID: id, Lines: one}); err != nil {
			return err
		}
		if err := b.Commit(ctx, id); err != nil {
			return err
		}
	}
	const holds = 300
	ids := make([]string, holds)
	errs := make([]error, holds)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = strategytest.RandomID()
		wg.Go(func() {
			_, errs[i] = b.Reserve(ctx, inventory.Request{ID: ids[i], Lines: one})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	read := func() (int64, error) {
		if _, err := b.db.Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
			return 0, err
		}
		var n int64
		err := b.db.QueryRow(ctx, "SELECT coalesce(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes WHERE schemaname = $1 AND indexrelname = 'reservation_held_due'", b.Schema).Scan(&n)
		return n, err
	}
	before, err := read()
	if err != nil {
		return err
	}
	if err := b.Commit(ctx, ids[0]); err != nil {
		return err
	}
	after, err := read()
	if err != nil {
		return err
	}
	t.Logf("a commit among %d holds read %d entries of reservation_held_due", holds, after-before)
	if after-before >= holds/10 {
		return fmt.Errorf("a commit among %d holds read %d entries of reservation_held_due", holds, after-before)
	}
	return nil
}

// homeTaken reserves lines of a SKU of eight buckets of ten units and
// checks that each was taken from bucket home and recorded with it.
func homeTaken(ctx context.Context, b *bucketed, home int) error {
	const per = 10
	if err := b.SetStockWith(ctx, "home", bucketsK*per, inventory.StockOptions{Buckets: bucketsK}); err != nil {
		return err
	}
	for i := range 3 {
		id := strategytest.RandomID()
		if _, err := b.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "home", Qty: 2}}}); err != nil {
			return err
		}
		per2, err := b.buckets(ctx, "home")
		if err != nil {
			return err
		}
		for k, n := range per2 {
			want := int64(per)
			if k == home%bucketsK {
				want = per - 2*int64(i+1)
			}
			if n != want {
				return fmt.Errorf("buckets %v after %d lines of 2 from home bucket %d", per2, i+1, home%bucketsK)
			}
		}
		var rec *int32
		if err := b.db.QueryRow(ctx, "SELECT bucket FROM "+b.quoted+".reservation_line WHERE reservation_id = $1", id).Scan(&rec); err != nil {
			return err
		}
		if rec == nil || int(*rec) != home%bucketsK {
			return fmt.Errorf("the line taken from bucket %d is recorded with bucket %v", home%bucketsK, rec)
		}
	}
	return nil
}

// holdTimeout bounds a call made while a test holds a bucket row, and how
// long the test holds it: a call that waits for the row runs into it.
const holdTimeout = 10 * time.Second

// holdBucket locks bucket k of sku in a transaction of its own, as a
// buyer or a flush of another process would, until the test ends or the
// returned function runs.
func holdBucket(t *testing.T, b *bucketed, sku string, k int) func() {
	t.Helper()
	tx, err := testsvc.Postgres(t).Begin(t.Context())
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRow(t.Context(), "SELECT count(*) FROM (SELECT FROM "+b.quoted+".stock_bucket WHERE sku = $1 AND bucket = $2 FOR UPDATE) x", sku, k).Scan(&n))
	require.Equal(t, 1, n, "bucket %d of %s", k, sku)
	var once sync.Once
	done := func() { once.Do(func() { _ = tx.Rollback(context.WithoutCancel(t.Context())) }) }
	t.Cleanup(done)
	return done
}

// giveBackFree cancels a reservation of a SKU of eight buckets of ten
// units while another transaction holds the bucket its line came from, and
// checks that the units came back at once, to another bucket, none made or
// lost; it returns what went wrong.
func giveBackFree(t *testing.T, b *bucketed) error {
	ctx := t.Context()
	const per = 10
	if err := b.SetStockWith(ctx, "free", bucketsK*per, inventory.StockOptions{Buckets: bucketsK}); err != nil {
		return err
	}
	req := inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "free", Qty: 3}}, TTL: time.Minute}
	if _, err := b.Reserve(ctx, req); err != nil {
		return err
	}
	var k int32
	if err := b.db.QueryRow(ctx, "SELECT bucket FROM "+b.quoted+".reservation_line WHERE reservation_id = $1", req.ID).Scan(&k); err != nil {
		return err
	}
	done := holdBucket(t, b, "free", int(k))
	cctx, cancel := context.WithTimeout(ctx, holdTimeout)
	defer cancel()
	if err := b.Cancel(cctx, req.ID); err != nil {
		return fmt.Errorf("cancel while another transaction holds bucket %d: %w", k, err)
	}
	done()
	got, err := b.buckets(ctx, "free")
	if err != nil {
		return err
	}
	var sum int64
	for _, n := range got {
		sum += n
	}
	if sum != bucketsK*per || got[k] != per-3 {
		return fmt.Errorf("buckets %v after a line of 3 from bucket %d came back while it was held", got, k)
	}
	return nil
}

// expiryFree has b, with home bucket home, reserve a line of a SKU of
// eight buckets of ten units, and then, while another transaction holds
// bucket home as b's flush would, has a Reserver made by mkOther on b's
// schema, with home bucket other, expire it; it checks that the expiry did
// not wait and gave the units to bucket other. It returns what went wrong.
func expiryFree(t *testing.T, b *bucketed, mkOther Maker, home, other int) error {
	ctx := t.Context()
	const per = 10
	o, err := mkOther(b.db, b.Schema, b.Clock.Now)
	if err != nil {
		return err
	}
	if err := b.SetStockWith(ctx, "exp", bucketsK*per, inventory.StockOptions{Buckets: bucketsK}); err != nil {
		return err
	}
	if _, err := b.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "exp", Qty: 3}}, TTL: time.Minute}); err != nil {
		return err
	}
	// A flush goes on after its caller's context ends: let go of the row
	// then, so that a flush that waits for it ends, and gives the units
	// to the bucket it waited for.
	done := holdBucket(t, b, "exp", home%bucketsK)
	defer time.AfterFunc(holdTimeout, done).Stop()
	b.Clock.Advance(2 * time.Minute)
	cctx, cancel := context.WithTimeout(ctx, holdTimeout)
	defer cancel()
	n, err := o.ExpireDue(cctx, 10)
	if err != nil {
		return fmt.Errorf("expiry by the Reserver of home bucket %d while bucket %d is held: %w", other, home%bucketsK, err)
	}
	if n != 1 {
		return fmt.Errorf("expired %d holds, want 1", n)
	}
	done()
	got, err := b.buckets(ctx, "exp")
	if err != nil {
		return err
	}
	for i, n := range got {
		want := int64(per)
		switch i {
		case home % bucketsK:
			want = per - 3
		case other % bucketsK:
			want = per + 3
		}
		if n != want {
			return fmt.Errorf("buckets %v after the line of 3 from bucket %d expired while it was held", got, home%bucketsK)
		}
	}
	return nil
}

// bucketed is one strategy of the bucket tests, on its own schema.
type bucketed struct {
	Bucketed
	*Instance
	db     pgstore.DB
	quoted string
}

func newBucketed(t *testing.T, mk Maker) *bucketed {
	t.Helper()
	return newBucketedOn(t, mk, testsvc.Postgres(t))
}

// newBucketedOn is newBucketed on db.
func newBucketedOn(t *testing.T, mk Maker, db pgstore.DB) *bucketed {
	t.Helper()
	in := New(t.Context(), t, mk, db)
	s, ok := in.Strategy.(Bucketed)
	require.True(t, ok, "%T does not split SKUs into stock buckets", in.Strategy)
	return &bucketed{Bucketed: s, Instance: in, db: db, quoted: pgx.Identifier{in.Schema}.Sanitize()}
}

// probe is b to the store-neutral bucket rules of strategytest.
func (b *bucketed) probe() *strategytest.BucketProbe {
	return &strategytest.BucketProbe{Strategy: b.Bucketed, Advance: b.Clock.Advance, Buckets: b.buckets, IDStartingAt: idStartingAt}
}

// replace runs sql, with {schema} the quoted schema, to put a wrong
// function in place of a right one.
func (b *bucketed) replace(t *testing.T, sql string) {
	t.Helper()
	_, err := b.db.Exec(t.Context(), strings.ReplaceAll(sql, "{schema}", b.quoted))
	require.NoError(t, err)
}

// mutate puts in place of the schema's function fn its own definition with
// old replaced by new: a deliberately wrong twin of it.
func (b *bucketed) mutate(t *testing.T, fn, old, new string) {
	t.Helper()
	var def string
	require.NoError(t, b.db.QueryRow(t.Context(), "SELECT pg_get_functiondef($1::regproc)", b.quoted+"."+fn).Scan(&def))
	require.Equal(t, 1, strings.Count(def, old), "%s does not hold %q once", fn, old)
	_, err := b.db.Exec(t.Context(), strings.Replace(def, old, new, 1))
	require.NoError(t, err)
}

// buckets returns the available units of each bucket of sku.
func (b *bucketed) buckets(ctx context.Context, sku string) ([]int64, error) {
	out := make([]int64, bucketsK)
	rows, err := b.db.Query(ctx, "SELECT bucket, available FROM "+b.quoted+".stock_bucket WHERE sku = $1 AND bucket < $2", sku, bucketsK)
	if err != nil {
		return nil, err
	}
	var bucket int32
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&bucket, &n}, func() error {
		out[bucket] = n
		return nil
	})
	return out, err
}

// idStartingAt returns an ID, made from tag, whose reservation looks for
// units from bucket k first.
func idStartingAt(k int, tag string) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d-%d", tag, k, i)
		if int(pgstore.BucketStart(id)%bucketsK) == k {
			return id
		}
	}
}

// rebalanceHammer runs buyers on two SKUs of eight buckets with the stock
// fixed, while Rebalance runs on both again and again and a watcher checks,
// each time in one statement and so one snapshot, that the units of each
// SKU (its row, its buckets, held and sold) add up to its stock. It returns
// the snapshots that did not add up.
func rebalanceHammer(ctx context.Context, b *bucketed) ([]string, error) {
	const stock = 120
	skus := []string{strategytest.SKUName(0), strategytest.SKUName(1)}
	count := `SELECT s.sku, s.available + coalesce((SELECT sum(c.available) FROM {schema}.stock_bucket c WHERE c.sku = s.sku), 0)
	+ coalesce((SELECT sum(l.qty) FROM {schema}.reservation_line l JOIN {schema}.reservation r ON r.id = l.reservation_id
		WHERE l.sku = s.sku AND r.state IN (1, 2)), 0)
FROM {schema}.stock s WHERE s.sku = ANY ($1)`
	count = strings.ReplaceAll(count, "{schema}", b.quoted)

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	var rebalances, checks atomic.Int64
	wg.Go(func() {
		for runCtx.Err() == nil {
			for _, sku := range skus {
				if err := b.Rebalance(runCtx, sku); err == nil {
					rebalances.Add(1)
				} else if runCtx.Err() == nil && !errors.Is(err, inventory.ErrUnknownSKU) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("rebalance %s: %v", sku, err))
					mu.Unlock()
				}
			}
		}
	})
	wg.Go(func() {
		for runCtx.Err() == nil {
			rows, err := b.db.Query(runCtx, count, skus)
			if err != nil {
				continue
			}
			var sku string
			var n int64
			_, err = pgx.ForEachRow(rows, []any{&sku, &n}, func() error {
				if n != stock {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %d units, not %d, after %d rebalances", sku, n, stock, rebalances.Load()))
					mu.Unlock()
				}
				return nil
			})
			if err == nil {
				checks.Add(1)
			}
		}
	})
	rep, err := strategytest.Hammer(ctx, strategytest.HammerConfig{
		Strategy: b.Bucketed, Advance: b.Clock.Advance, Workers: 24, SKUs: len(skus), Stock: stock,
		// A run of a fixed time, not of a fixed number of carts, so that
		// Rebalance and the watcher get their turns however loaded the
		// machine: a loaded one made the carts before one Rebalance ran.
		MaxQty: 3, MaxLines: 2, Duration: 1500 * time.Millisecond, FixedStock: true,
	})
	stop()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if !rep.OK() {
		bad = append(bad, "hammer: "+rep.String())
	}
	if checks.Load() == 0 || rebalances.Load() == 0 {
		return nil, fmt.Errorf("the watcher checked %d times while Rebalance ran %d times: nothing was tested", checks.Load(), rebalances.Load())
	}
	return bad, nil
}

// wrongTake refuses a line when the bucket a buyer starts from is short,
// whatever the other buckets hold.
const wrongTake = `CREATE OR REPLACE FUNCTION {schema}.stock_take(p_id text, p_sku text, p_qty bigint, p_start bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
	k int;
BEGIN
	SELECT s.buckets INTO k FROM {schema}.stock s WHERE s.sku = p_sku;
	IF NOT FOUND OR k <= 1 THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;
	UPDATE {schema}.stock_bucket SET available = available - p_qty WHERE sku = p_sku AND bucket = p_start % k AND available >= p_qty;
	IF NOT FOUND THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;
	UPDATE {schema}.reservation_line SET bucket = p_start % k WHERE reservation_id = p_id AND sku = p_sku;
END
$fn$`

// wrongMore looks at no bucket beyond those the caller holds, and counts
// the SKU's units as those of the buckets it holds: a take or a flush then
// refuses a line when the bucket it starts from is short, whatever the
// other buckets hold.
const wrongMore = `CREATE OR REPLACE FUNCTION {schema}.stock_bucket_more(p_sku text, p_qty bigint, p_start bigint, p_held int[], p_av bigint[],
	OUT o_bucket int, OUT o_avail bigint, OUT o_total bigint)
LANGUAGE sql AS $fn$
	SELECT NULL::int, NULL::bigint, coalesce((SELECT sum(x) FROM unnest(p_av) AS x), 0)::bigint
$fn$`

// wrongGive gives the units of a line back to the bucket after the one
// they were taken from.
const wrongGive = `CREATE OR REPLACE FUNCTION {schema}.stock_give_lines(p_id text) RETURNS void
LANGUAGE sql AS $fn$
	SELECT {schema}.stock_give(coalesce(array_agg(l.sku), '{}'), coalesce(array_agg((l.bucket + 1) % 8), '{}'), coalesce(array_agg(l.qty), '{}'))
	FROM {schema}.reservation_line l WHERE l.reservation_id = p_id
$fn$`

// wrongSpread spreads the units of a SKU again from a read that takes no
// lock, so that units buyers take meanwhile come back.
const wrongSpread = `CREATE OR REPLACE FUNCTION {schema}.stock_spread(p_sku text, p_total bigint, p_delta bigint, p_buckets int, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
	k     int;
	total bigint;
BEGIN
	SELECT s.buckets INTO k FROM {schema}.stock s WHERE s.sku = p_sku;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	total := coalesce(p_total, {schema}.stock_available(p_sku) + coalesce(p_delta, 0));
	k := greatest(coalesce(p_buckets, k), 2);
	PERFORM pg_sleep(0.002);
	UPDATE {schema}.stock SET available = 0, buckets = k WHERE sku = p_sku;
	INSERT INTO {schema}.stock_bucket AS t (sku, bucket, available)
	SELECT p_sku, g.b, total / k + CASE WHEN g.b < total % k THEN 1 ELSE 0 END FROM generate_series(0, k - 1) AS g (b)
	ON CONFLICT (sku, bucket) DO UPDATE SET available = EXCLUDED.available;
	RETURN total;
END
$fn$`
