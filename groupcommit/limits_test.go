package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/sqlcond"
)

// limitMakers are the Reservers the checks of limits per buyer run on, with
// the buckets they give the SKUs with a limit: SKUs kept whole, and SKUs in
// eight stock buckets.
var limitMakers = map[string]struct {
	mk      pgtest.Maker
	buckets int
}{"Whole": {newStrategy, 0}, "Buckets": {newBucketed, 8}}

// limitCase is a Reserver under test, with the pool its checks read the
// schema through and the buckets of the SKUs with a limit.
type limitCase struct {
	*pgtest.Instance
	db      pgstore.DB
	buckets int
}

// A wrong flush: how the flush function is changed into a deliberately
// wrong one.
type wrongFlush int

const (
	rightFlush wrongFlush = iota
	// oldFlush is the flush as it was before it kept the usage of buyers
	// (0012_give_back_free.sql), taking the buyers as its last argument and
	// ignoring them: it records no buyer and counts nothing, expires holds
	// with a buyer without taking their units off the usage, and takes
	// plain requests on a SKU with a limit.
	oldFlush
	// expiryIgnoresUsage expires the due holds with a buyer in the flush,
	// as plain ones.
	expiryIgnoresUsage
	// reserveKeepsNoUsage counts the lines of buyers but never adds them to
	// the usage.
	reserveKeepsNoUsage
	// flushIgnoresLimit grants buyers' lines a thousand units past the
	// limit.
	flushIgnoresLimit
)

// newLimitCase makes a migrated Reserver with mk in a schema of its own,
// with its flush function made wrong as wrong says.
func newLimitCase(t *testing.T, mk pgtest.Maker, buckets int, wrong wrongFlush) limitCase {
	t.Helper()
	ctx := t.Context()
	db := testsvc.Postgres(t)
	in := pgtest.New(ctx, t, mk, db)
	sc := pgx.Identifier{in.Schema}.Sanitize()
	mutate := func(old, new string) {
		var def string
		require.NoError(t, db.QueryRow(ctx, "SELECT pg_get_functiondef($1::regproc)", sc+"."+pgstore.FlushFunction).Scan(&def))
		require.Equal(t, 1, strings.Count(def, old), "the flush does not hold %q once", old)
		_, err := db.Exec(ctx, strings.Replace(def, old, new, 1))
		require.NoError(t, err)
	}
	switch wrong {
	case oldFlush:
		b, err := os.ReadFile("../internal/pgstore/migrations/0012_give_back_free.sql")
		require.NoError(t, err)
		src := string(b)
		start := strings.Index(src, "CREATE OR REPLACE FUNCTION {schema}.groupcommit_flush_home(")
		require.GreaterOrEqual(t, start, 0)
		end := strings.Index(src[start:], "\n$fn$;") + start + len("\n$fn$;")
		fn := strings.Replace(src[start:end], "groupcommit_flush_home(", pgstore.FlushFunction+"(", 1)
		fn = strings.Replace(fn, "p_home  int            -- the caller's home bucket, >= 0\n)", "p_home int, r_buyer text[])", 1)
		_, err = db.Exec(ctx, strings.ReplaceAll(fn, "{schema}", sc))
		require.NoError(t, err)
	case expiryIgnoresUsage:
		_, err := db.Exec(ctx, `CREATE FUNCTION `+sc+`.expire_due_all(now_ timestamptz, lim bigint)
RETURNS TABLE (o_n bigint, o_left bigint, o_sku text, o_bucket int, o_qty bigint)
LANGUAGE sql AS $$ SELECT e.o_n, 0::bigint, e.o_sku, e.o_bucket, e.o_qty FROM `+sc+`.expire_due_buckets(now_, lim) AS e $$`)
		require.NoError(t, err)
		mutate("expire_due_no_buyer(", "expire_due_all(")
	case reserveKeepsNoUsage:
		mutate("WHERE u.a <> u.a0 AND t.sku = u.s AND t.buyer = u.y", "WHERE false AND t.sku = u.s AND t.buyer = u.y")
	case flushIgnoresLimit:
		mutate("u_used[y] + l_qty[j] > lim_v[k]", "u_used[y] + l_qty[j] > lim_v[k] + 1000")
	}
	return limitCase{in, db, buckets}
}

// usage returns the usage rows of sku by buyer.
func (lc limitCase) usage(ctx context.Context, sku string) (map[string]int64, error) {
	rows, err := lc.db.Query(ctx, "SELECT buyer, used FROM "+pgx.Identifier{lc.Schema, "buyer_usage"}.Sanitize()+" WHERE sku = $1", sku)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var buyer string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&buyer, &n}, func() error { out[buyer] = n; return nil })
	return out, err
}

// usageAgreesWithLedger checks that every buyer's usage row holds exactly
// the units of the counted lines of the buyer's held and committed
// reservations (nothing is purged in these tests): units taken off once,
// never twice, never left on.
func (lc limitCase) usageAgreesWithLedger(ctx context.Context) error {
	sc := pgx.Identifier{lc.Schema}.Sanitize()
	rows, err := lc.db.Query(ctx, `SELECT coalesce(u.sku, l.sku), coalesce(u.buyer, l.buyer), coalesce(u.used, 0), coalesce(l.qty, 0)
FROM `+sc+`.buyer_usage u FULL JOIN (
	SELECT l.sku, r.buyer, sum(l.qty)::bigint AS qty FROM `+sc+`.reservation r JOIN `+sc+`.reservation_line l ON l.reservation_id = r.id
	WHERE l.counted AND r.state IN (1, 2) GROUP BY l.sku, r.buyer
) l ON l.sku = u.sku AND l.buyer = u.buyer
WHERE coalesce(u.used, 0) <> coalesce(l.qty, 0) ORDER BY 1, 2`)
	if err != nil {
		return err
	}
	var errs []error
	var sku, buyer string
	var used, qty int64
	_, err = pgx.ForEachRow(rows, []any{&sku, &buyer, &used, &qty}, func() error {
		errs = append(errs, fmt.Errorf("usage of %q by %q is %d, but the held and committed lines counted against it hold %d", sku, buyer, used, qty))
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// usageSettledOnce: holds of buyers committed, released, cancelled and
// expired through groupcommit, expiry in flushes beside holds without a
// buyer and in flushes of several ExpireDue calls, take the units off the
// buyer's usage once; a plain request on a SKU with a limit is refused by
// it.
func usageSettledOnce(ctx context.Context, lc limitCase) error {
	s := lc.Strategy
	if err := inventory.SetStockWith(ctx, s, "lim", 20, inventory.StockOptions{Limit: 4, Buckets: lc.buckets}); err != nil {
		return err
	}
	if err := s.SetStock(ctx, "free", 10); err != nil {
		return err
	}
	lim := func(n int64) []inventory.Line { return []inventory.Line{{SKU: "lim", Qty: n}} }
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	hold := func(id, buyer string, lines []inventory.Line, ttl time.Duration) {
		_, err := s.Reserve(ctx, inventory.Request{ID: id, Lines: lines, Buyer: buyer, TTL: ttl})
		add(wrapWhen("Reserve "+id, err))
	}
	hold("committed", "b", lim(2), 0)
	add(s.Commit(ctx, "committed"))
	hold("released", "b", lim(1), 0)
	add(s.Release(ctx, "released"))
	hold("cancelled", "b", lim(1), 0)
	add(s.Cancel(ctx, "cancelled"))
	hold("expired", "b", lim(1), time.Minute)
	hold("plain", "", []inventory.Line{{SKU: "free", Qty: 1}}, time.Minute)
	hold("other", "c", []inventory.Line{{SKU: "free", Qty: 1}, {SKU: "lim", Qty: 2}}, time.Minute)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	lc.Clock.Advance(2 * time.Minute)
	// One call: the flush expires the plain hold, the call the others.
	if n, err := s.ExpireDue(ctx, 10); err != nil || n != 3 {
		return fmt.Errorf("ExpireDue(10) = %d, %v; want the 3 due holds", n, err)
	}
	for _, id := range []string{"expired", "plain", "other"} {
		if r, err := s.Lookup(ctx, id); err != nil || r.State != inventory.Expired {
			add(fmt.Errorf("Lookup(%q) = %v, %v; want it Expired", id, r.State, err))
		}
	}
	// Several calls, each with a limit of one, share flushes.
	for i := range 4 {
		hold(fmt.Sprintf("due%d", i), "d", lim(1), time.Minute)
	}
	lc.Clock.Advance(2 * time.Minute)
	var total atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 4 {
		wg.Go(func() {
			n, err := s.ExpireDue(ctx, 1)
			total.Add(int64(n))
			mu.Lock()
			add(err)
			mu.Unlock()
		})
	}
	wg.Wait()
	for total.Load() < 4 {
		n, err := s.ExpireDue(ctx, 1)
		if err != nil || n == 0 {
			add(fmt.Errorf("ExpireDue(1) after %d of 4 due holds = %d, %v", total.Load(), n, err))
			break
		}
		total.Add(int64(n))
	}
	if n, err := s.ExpireDue(ctx, 10); err != nil || n != 0 {
		add(fmt.Errorf("ExpireDue(10) with nothing due = %d, %v", n, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	u, err := lc.usage(ctx, "lim")
	if err != nil {
		return err
	}
	if len(u) != 1 || u["b"] != 2 {
		add(fmt.Errorf("usage of lim: %v, want only b with its 2 committed units", u))
	}
	add(lc.usageAgreesWithLedger(ctx))
	add(checkAvailable(ctx, s, map[string]int64{"lim": 18, "free": 10}))
	// The limit sees the same: two units left for b, four for c.
	hold("b2", "b", lim(2), 0)
	var le *inventory.LimitError
	if _, err := s.Reserve(ctx, inventory.Request{ID: "b3", Lines: lim(1), Buyer: "b"}); !errors.As(err, &le) || *le != (inventory.LimitError{SKU: "lim", Buyer: "b", Limit: 4, Had: 4}) {
		add(fmt.Errorf("Reserve past b's limit: %v, want a *LimitError with Had 4", err))
	}
	hold("c4", "c", lim(4), 0)
	// A request without a buyer is refused by the limit, in a flush or not,
	// alone or beside others, and changes nothing.
	var plain sync.WaitGroup
	for i := range 3 {
		plain.Go(func() {
			lines := lim(1)
			if i > 0 {
				lines = []inventory.Line{{SKU: "free", Qty: 1}, {SKU: "lim", Qty: 1}}
			}
			_, err := s.Reserve(ctx, inventory.Request{ID: fmt.Sprintf("nobody%d", i), Lines: lines})
			var le *inventory.LimitError
			mu.Lock()
			defer mu.Unlock()
			if !errors.As(err, &le) || *le != (inventory.LimitError{SKU: "lim", Limit: 4}) {
				add(fmt.Errorf("Reserve %v without a buyer: %v, want a *LimitError", lines, err))
			}
		})
	}
	plain.Wait()
	add(checkAvailable(ctx, s, map[string]int64{"lim": 12, "free": 10}))
	add(lc.usageAgreesWithLedger(ctx))
	return errors.Join(errs...)
}

func checkAvailable(ctx context.Context, s inventory.Strategy, want map[string]int64) error {
	var errs []error
	for sku, n := range want {
		got, err := s.Available(ctx, sku)
		if err != nil || got != n {
			errs = append(errs, fmt.Errorf("Available(%q) = %d, %v; want %d", sku, got, err, n))
		}
	}
	return errors.Join(errs...)
}

func wrapWhen(when string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", when, err)
}

// TestUsageSettledOnce: what a flush settles takes the units of a buyer's
// counted lines off the buyer's usage exactly once.
func TestUsageSettledOnce(t *testing.T) {
	for name, mk := range limitMakers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.NoError(t, usageSettledOnce(t.Context(), newLimitCase(t, mk.mk, mk.buckets, rightFlush)))
		})
	}
}

// TestUsageChecksCatchWrongFlushes shows that the checks fail a flush that
// ignores the usage, one that expires holds with a buyer as plain ones, and
// one that does not add what it grants buyers to their usage.
func TestUsageChecksCatchWrongFlushes(t *testing.T) {
	for wname, wrong := range map[string]wrongFlush{"Old": oldFlush, "ExpiryIgnoresUsage": expiryIgnoresUsage,
		"ReserveKeepsNoUsage": reserveKeepsNoUsage, "FlushIgnoresLimit": flushIgnoresLimit} {
		for name, mk := range limitMakers {
			if (wrong == reserveKeepsNoUsage || wrong == flushIgnoresLimit) && mk.buckets > 0 {
				continue // a line of a SKU in buckets with a limit is taken on its own, not in the flush
			}
			t.Run(wname+"/"+name, func(t *testing.T) {
				t.Parallel()
				err := usageSettledOnce(t.Context(), newLimitCase(t, mk.mk, mk.buckets, wrong))
				assert.Error(t, err)
				t.Log("caught:", err)
			})
		}
	}
}

// Sizes of limitExpiryHammer.
const (
	hammerWorkers = 32
	hammerBuyers  = 8
	hammerLimit   = 2
	hammerStock   = 1000
	hammerOps     = 12
)

// limitExpiryHammer races buyers' sessions, with and without a buyer, on a
// SKU with a limit and one without, while a sweeper moves the clock and
// expires what is due; then it expires everything and checks that the
// usage agrees with the ledger, that no buyer bought more than the limit,
// and that the units add up. Worker w runs on lc's Reserver, or with others
// on the same schema on lc's and theirs by turns.
func limitExpiryHammer(ctx context.Context, lc limitCase, others ...inventory.Strategy) error {
	s := lc.Strategy
	on := append([]inventory.Strategy{s}, others...)
	if err := inventory.SetStockWith(ctx, s, "hot", hammerStock, inventory.StockOptions{Limit: hammerLimit, Buckets: lc.buckets}); err != nil {
		return err
	}
	if err := s.SetStock(ctx, "free", hammerStock); err != nil {
		return err
	}
	var (
		mu      sync.Mutex
		errs    []error
		limited atomic.Int64
		done    atomic.Bool
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	notHeld := func(err error) bool { return err == nil || errors.Is(err, inventory.ErrNotHeld) }
	for w := range hammerWorkers {
		wg.Go(func() {
			s := on[w%len(on)]
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			buyer := fmt.Sprintf("buyer-%d", w%hammerBuyers)
			for i := range hammerOps {
				id := fmt.Sprintf("w%d-%d", w, i)
				req := inventory.Request{ID: id, TTL: time.Minute, Lines: []inventory.Line{{SKU: "hot", Qty: 1 + rng.Int64N(hammerLimit)}}, Buyer: buyer}
				switch rng.IntN(4) {
				case 0: // a plain cart, batched
					req.Lines, req.Buyer = []inventory.Line{{SKU: "free", Qty: 1}}, ""
				case 1:
					req.Lines = append(req.Lines, inventory.Line{SKU: "free", Qty: 1})
				}
				_, err := s.Reserve(ctx, req)
				switch {
				case errors.Is(err, inventory.ErrLimitExceeded):
					limited.Add(1)
					continue
				case err != nil:
					fail(fmt.Errorf("Reserve(%+v): %w", req, err))
					continue
				}
				switch rng.IntN(4) {
				case 0:
					err = s.Commit(ctx, id)
				case 1:
					err = s.Release(ctx, id)
				}
				if !notHeld(err) { // expired meanwhile: fine
					fail(fmt.Errorf("settle %q: %w", id, err))
				}
			}
		})
	}
	sweeper := make(chan struct{})
	go func() {
		defer close(sweeper)
		for !done.Load() {
			lc.Clock.Advance(20 * time.Second)
			if _, err := s.ExpireDue(ctx, 3); err != nil {
				fail(fmt.Errorf("ExpireDue: %w", err))
			}
		}
	}()
	wg.Wait()
	done.Store(true)
	<-sweeper
	if err := errors.Join(errs...); err != nil {
		return err
	}
	lc.Clock.Advance(time.Hour)
	for {
		n, err := s.ExpireDue(ctx, 50)
		if err != nil {
			return fmt.Errorf("ExpireDue: %w", err)
		}
		if n == 0 {
			break
		}
	}
	var c []error
	c = append(c, lc.usageAgreesWithLedger(ctx))
	// What each buyer bought, from the ledger.
	sc := pgx.Identifier{lc.Schema}.Sanitize()
	rows, err := lc.db.Query(ctx, `SELECT coalesce(r.buyer, ''), sum(l.qty)::bigint FROM `+sc+`.reservation r JOIN `+sc+`.reservation_line l ON l.reservation_id = r.id
WHERE l.sku = 'hot' AND r.state = 2 GROUP BY r.buyer`)
	if err != nil {
		return err
	}
	var sold, n int64
	var buyer string
	if _, err := pgx.ForEachRow(rows, []any{&buyer, &n}, func() error {
		sold += n
		if n > hammerLimit {
			c = append(c, fmt.Errorf("buyer %q bought %d units of hot, above the limit %d", buyer, n, hammerLimit))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, sku := range []string{"hot", "free"} {
		l, err := inventory.StockLevels(ctx, s, sku)
		if err != nil {
			return err
		}
		if l.Held != 0 || l.Available+l.Sold != hammerStock {
			c = append(c, fmt.Errorf("%s after every hold expired: %+v, want nothing held and %d in all", sku, l, hammerStock))
		}
		if sku == "hot" && l.Sold != sold {
			c = append(c, fmt.Errorf("hot: Levels sold %d, the committed reservations %d", l.Sold, sold))
		}
	}
	if limited.Load() == 0 {
		c = append(c, errors.New("no Reserve was refused by the limit: the hammer did not test it"))
	}
	return errors.Join(c...)
}

// TestLimitExpiryHammer races buyers against expiry in flushes.
func TestLimitExpiryHammer(t *testing.T) {
	for name, mk := range limitMakers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.NoError(t, limitExpiryHammer(t.Context(), newLimitCase(t, mk.mk, mk.buckets, rightFlush)))
		})
	}
}

// TestLimitExpiryHammerBesideSqlcond runs the hammer with half the buyers on
// sqlcond, on the same schema: the two take the same locks in the same
// order, and keep one usage.
func TestLimitExpiryHammerBesideSqlcond(t *testing.T) {
	for name, mk := range limitMakers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lc := newLimitCase(t, mk.mk, mk.buckets, rightFlush)
			sc, err := sqlcond.New(lc.db, &sqlcond.Options{Schema: lc.Schema, Now: lc.Clock.Now})
			require.NoError(t, err)
			require.NoError(t, limitExpiryHammer(t.Context(), lc, sc))
		})
	}
}

// TestLimitExpiryHammerCatchesWrongFlushes shows that the hammer's checks
// fail the wrong flushes.
func TestLimitExpiryHammerCatchesWrongFlushes(t *testing.T) {
	for wname, wrong := range map[string]wrongFlush{"Old": oldFlush, "ExpiryIgnoresUsage": expiryIgnoresUsage, "ReserveKeepsNoUsage": reserveKeepsNoUsage} {
		t.Run(wname, func(t *testing.T) {
			t.Parallel()
			err := limitExpiryHammer(t.Context(), newLimitCase(t, newStrategy, 0, wrong))
			assert.Error(t, err)
			t.Log("caught:", err)
		})
	}
}
