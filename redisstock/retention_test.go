package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// keysByKind counts the keys under prefix by their kind (m, e, s, u, d, r,
// h, o), with SCAN, and sums the MEMORY USAGE of the reservations' keys
// (records r and hold keys h).
func keysByKind(ctx context.Context, t *testing.T, rdb redis.UniversalClient, prefix string) (map[string][]string, int64) {
	t.Helper()
	out := map[string][]string{}
	var mem int64
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		_, rest, _ := strings.Cut(strings.TrimPrefix(k, prefix), "}:")
		kind, name, _ := strings.Cut(rest, ":")
		out[kind] = append(out[kind], name)
		if kind == "r" || kind == "h" {
			n, err := rdb.MemoryUsage(ctx, k).Result()
			if err == nil {
				mem += n
			}
		}
	}
	require.NoError(t, iter.Err())
	for _, v := range out {
		slices.Sort(v)
	}
	return out, mem
}

// settledGone checks that the only reservation keys left under the prefix
// (records r, hold keys h) are those of the held reservations, and that
// nothing else is left but the SKUs' own keys and the buckets'.
func settledGone(keys map[string][]string, held []string) error {
	for kind, names := range keys {
		switch kind {
		case "m", "e", "x", "s", "u", "d":
		case "r", "h":
			for _, id := range names {
				if !slices.Contains(held, id) {
					return fmt.Errorf("key %s:%s of a settled reservation is still there", kind, id)
				}
			}
		default:
			return fmt.Errorf("%d keys of kind %q are still there", len(names), kind)
		}
	}
	for _, id := range held {
		if !slices.Contains(keys["r"], id) {
			return fmt.Errorf("the record of held reservation %s is gone", id)
		}
	}
	return nil
}

// TestRetentionFreesSettledRecords reserves and settles reservations in
// every way (committed, released, expired, tombstones of Cancel, and carts
// over several buckets with their hold keys) with a retention of 1s,
// waits past it, and finds Redis back to the SKUs' and buckets' own keys
// (stock, usage, streams, markers, due sets) and the held reservations,
// counted with SCAN, and its MEMORY USAGE down with them. A retry inside
// the window gets the first answer; once the retention has passed, the ID
// is taken anew, in Redis and in the ledger, which then agrees with Redis.
// The twin, without a retention, keeps every settled record, and the
// check fails on it.
func TestRetentionFreesSettledRecords(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		buckets int
		keep    time.Duration
	}{{"OneBucket", 1, time.Second}, {"FourBuckets", 4, time.Second}, {"WithoutRetention", 4, 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			rdb := testsvc.Redis(t)
			in := setup(ctx, t, rdb, &redisstock.Options{Buckets: c.buckets, Retention: c.keep})
			skus := []string{"ra", "rb", "rc", "rd"}
			for _, s := range skus {
				require.NoError(t, in.SetStock(ctx, s, 1000))
			}
			require.NoError(t, inventory.SetStockWith(ctx, in.Reserver, "rl", 1000, inventory.StockOptions{Limit: 500}))
			base, baseMem := keysByKind(ctx, t, rdb, in.Prefix)
			const n = 40
			var held []string
			var committed inventory.Request
			for i := range n {
				id := fmt.Sprintf("ret-%d", i)
				if i%8 == 7 {
					require.NoError(t, in.Cancel(ctx, id)) // a tombstone
					continue
				}
				req := inventory.Request{ID: id, TTL: time.Minute,
					Lines: []inventory.Line{{SKU: skus[i%4], Qty: 1}, {SKU: skus[(i+1)%4], Qty: 2}}}
				if i%5 == 0 {
					req.Buyer, req.Lines = "buyer", append(req.Lines, inventory.Line{SKU: "rl", Qty: 1})
				}
				if i >= n-4 {
					req.TTL = time.Hour
				}
				_, err := in.Reserve(ctx, req)
				require.NoError(t, err)
				switch {
				case i >= n-4:
					held = append(held, id)
				case i%8 == 0 || i%8 == 3:
					at := time.Now()
					require.NoError(t, in.Commit(ctx, id))
					committed = req
					// Inside the window, a retry gets the first answer.
					res, err := in.Reserve(ctx, req)
					require.NoError(t, err)
					if c.keep == 0 || time.Since(at) < c.keep {
						assert.Equal(t, inventory.Committed, res.State, "a retry inside the retention gets the committed reservation")
					} else {
						t.Logf("the retry came %s after the commit, past the retention: not checked", time.Since(at))
					}
				case i%8 == 1 || i%8 == 4:
					require.NoError(t, in.Release(ctx, id))
				}
			}
			// The writer has what it read before the clock jumps: it writes
			// no reservation whose retention has passed by Now.
			drained(ctx, t, in, rdb, c.buckets)
			in.Clock.Advance(2 * time.Minute) // the rest of the one-minute holds are due
			for {
				m, err := in.ExpireDue(ctx, 100)
				require.NoError(t, err)
				if m == 0 {
					break
				}
			}
			slices.Sort(held)
			peak, peakMem := keysByKind(ctx, t, rdb, in.Prefix)

			time.Sleep(c.keep + 500*time.Millisecond)
			drained(ctx, t, in, rdb, c.buckets)
			in.Clock.Advance(time.Hour) // and by Now, for Reconcile
			end, endMem := keysByKind(ctx, t, rdb, in.Prefix)
			t.Logf("keep=%s buckets=%d: keys %d at first, %d after %d reservations settled (%d records), %d past the retention (%d records); MEMORY USAGE of records and hold keys %d, %d, %d bytes",
				c.keep, c.buckets, count(base), count(peak), n-len(held), len(peak["r"]), count(end), len(end["r"]), baseMem, peakMem, endMem)
			gone := settledGone(end, held)
			if c.keep == 0 {
				require.Error(t, gone, "without a retention every settled record stays, and the check says so")
				require.Len(t, end["r"], n, "every record stays")
				return
			}
			require.NoError(t, gone)
			require.Less(t, endMem, peakMem)
			for _, id := range held {
				got, err := in.Lookup(ctx, id)
				require.NoError(t, err)
				assert.Equal(t, inventory.Held, got.State)
			}
			_, err := in.Lookup(ctx, committed.ID)
			require.ErrorIs(t, err, inventory.ErrNotFound, "past the retention the ID is unknown")
			// Taken anew: a new reservation, here and in the ledger (the
			// writer forgets the settled one it had under the ID).
			again := inventory.Request{ID: committed.ID, TTL: time.Hour, Lines: []inventory.Line{{SKU: "rd", Qty: 3}}}
			res, err := in.Reserve(ctx, again)
			require.NoError(t, err)
			require.Equal(t, inventory.Held, res.State, "past the retention a Reserve with the ID is a new reservation")
			require.NoError(t, in.Writer.Drain(ctx))
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			require.Empty(t, rep.Differences, "the ledger holds the new reservation, and the settled ones Redis forgot are no difference")
		})
	}
}

// drained drains the streams of in's buckets until each is empty: the
// writer running in the background may still be committing a batch it
// read when Drain finds nothing more to read.
func drained(ctx context.Context, t *testing.T, in *instance, rdb redis.UniversalClient, buckets int) {
	t.Helper()
	for {
		require.NoError(t, in.Writer.Drain(ctx))
		n := int64(0)
		for b := range buckets {
			l, err := rdb.XLen(ctx, fmt.Sprintf("%s{b%d}:e", in.Prefix, b)).Result()
			require.NoError(t, err)
			n += l
		}
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(m map[string][]string) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// TestRetentionPurgeLoadAndReconcile purges the ledger past the retention
// by Now while Redis still has the records (a retention of an hour on
// Redis's clock), so that each side holds what the other forgot: Reconcile
// reports no difference for the settled ones, and still reports a held
// one missing on one side (the twin of the check: a held record deleted
// from Redis). Load then rebuilds Redis from the purged ledger: the sold
// units and the buyer's usage of the purged committed reservations still
// count (Levels and the limit are as before), the held reservations are
// back, the purged IDs are unknown, and a settled one inside its
// retention comes back with what is left of it.
func TestRetentionPurgeLoadAndReconcile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb := testsvc.Redis(t)
	in := setup(ctx, t, rdb, &redisstock.Options{Buckets: 4, Retention: time.Hour})
	require.NoError(t, inventory.SetStockWith(ctx, in.Reserver, "pa", 100, inventory.StockOptions{Limit: 5}))
	require.NoError(t, in.SetStock(ctx, "pb", 100))
	reserve := func(id string, ttl time.Duration, lines ...inventory.Line) {
		t.Helper()
		_, err := in.Reserve(ctx, inventory.Request{ID: id, TTL: ttl, Buyer: "b", Lines: lines})
		require.NoError(t, err)
	}
	reserve("old-c", time.Minute, inventory.Line{SKU: "pa", Qty: 3}, inventory.Line{SKU: "pb", Qty: 2})
	require.NoError(t, in.Commit(ctx, "old-c"))
	reserve("old-r", time.Minute, inventory.Line{SKU: "pb", Qty: 1})
	require.NoError(t, in.Release(ctx, "old-r"))
	require.NoError(t, in.Cancel(ctx, "old-x"))
	reserve("held", 10*time.Hour, inventory.Line{SKU: "pa", Qty: 1}, inventory.Line{SKU: "pb", Qty: 1})
	levels := func() (a, b inventory.Levels) {
		a, err := inventory.StockLevels(ctx, in.Reserver, "pa")
		require.NoError(t, err)
		b, err = inventory.StockLevels(ctx, in.Reserver, "pb")
		require.NoError(t, err)
		return a, b
	}
	la, lb := levels()
	require.Equal(t, int64(3), la.Sold)

	drained(ctx, t, in, rdb, 4)
	in.Clock.Advance(90 * time.Minute)
	reserve("new-c", time.Minute, inventory.Line{SKU: "pb", Qty: 4})
	require.NoError(t, in.Commit(ctx, "new-c"))
	drained(ctx, t, in, rdb, 4)
	n, err := in.Purge(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, 3, n, "the three settled past the retention by Now (committed, released, a tombstone)")
	n, err = in.Purge(ctx, 100)
	require.NoError(t, err)
	require.Zero(t, n)

	rep, err := in.Reconcile(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, rep.Differences, "settled records the ledger purged and Redis still keeps are no difference")
	_, err = in.Lookup(ctx, "old-c")
	require.NoError(t, err, "Redis forgets on its own clock: an hour")
	again, err := in.Reserve(ctx, inventory.Request{ID: "old-c", TTL: time.Minute, Buyer: "b", Lines: []inventory.Line{{SKU: "pa", Qty: 3}, {SKU: "pb", Qty: 2}}})
	require.NoError(t, err)
	require.Equal(t, inventory.Committed, again.State, "a retry inside Redis's retention gets the committed reservation")

	// The twin of the check: a held record gone from Redis is a difference.
	require.NoError(t, rdb.Del(ctx, in.Prefix+"{b"+fmt.Sprint(in.Bucket("held"))+"}:r:held").Err())
	rep, err = in.Reconcile(ctx, nil)
	require.NoError(t, err)
	require.Len(t, rep.Differences, 1, "a held reservation missing in Redis: %v", rep.Differences)
	assert.Equal(t, "held", rep.Differences[0].ID)

	// Redis lost: Load rebuilds it from the purged ledger.
	require.NoError(t, in.Wipe(ctx))
	require.NoError(t, in.Load(ctx))
	la2, lb2 := levels()
	lb.Sold += 4
	lb.Available -= 4
	assert.Equal(t, la, la2, "the purged commit's sold units still count")
	assert.Equal(t, lb, lb2)
	got, err := in.Lookup(ctx, "held")
	require.NoError(t, err)
	assert.Equal(t, inventory.Held, got.State)
	for _, id := range []string{"old-c", "old-r", "old-x"} {
		_, err := in.Lookup(ctx, id)
		require.ErrorIs(t, err, inventory.ErrNotFound, id)
	}
	got, err = in.Lookup(ctx, "new-c")
	require.NoError(t, err)
	assert.Equal(t, inventory.Committed, got.State)
	ttl, err := rdb.PTTL(ctx, in.Prefix+"{b"+fmt.Sprint(in.Bucket("new-c"))+"}:r:new-c").Result()
	require.NoError(t, err)
	// Its ExpiresAt counts as the moment it settled (a minute after it
	// was reserved, ten seconds ago by Now), as Purge counts it.
	assert.True(t, ttl > 55*time.Minute && ttl <= time.Hour+time.Minute, "a settled record Load writes back keeps what is left of its retention: %s", ttl)
	ttl, err = rdb.PTTL(ctx, in.Prefix+"{b"+fmt.Sprint(in.Bucket("held"))+"}:r:held").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl, "a held record never expires")
	// The buyer's usage of pa still counts the purged commit's 3 units
	// and the hold's 1: one more reaches the limit of 5, a second does not.
	_, err = in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Buyer: "b", Lines: []inventory.Line{{SKU: "pa", Qty: 1}}})
	require.NoError(t, err)
	_, err = in.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Buyer: "b", Lines: []inventory.Line{{SKU: "pa", Qty: 1}}})
	var le *inventory.LimitError
	require.True(t, errors.As(err, &le), "the limit counts the purged commit: %v", err)
	drained(ctx, t, in, rdb, 4)
	rep, err = in.Reconcile(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, rep.Differences)
}

// TestConformanceWithRetention runs the suite with a retention (an hour of
// Redis's clock, which the suite's manual clock does not move), so that
// every operation that finishes a reservation carries it and the writer
// checks every reservation event against the ledger's settled rows.
func TestConformanceWithRetention(t *testing.T) {
	t.Parallel()
	mk := maker(&redisstock.Options{Buckets: 4, Retention: time.Hour})
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		h := mk(ctx, t)
		h.LinesTakenApart = linesApart
		return h
	})
}

// TestRetentionReplayAfterPurge has a writer COMMIT a batch (a reservation
// and its commit) and die before it acknowledges it, so the entries stay
// pending; Purge then deletes the reservation past the retention, and the
// writer's successor applies the batch again. The ledger does not get it
// back: no row, no take, its sold units counted once, so that a Load of a
// wiped Redis rebuilds the same stock and sold units. The twin writes it
// again, as the writer without the check would: the row is back, and the
// rebuilt stock counts its units sold twice.
func TestRetentionReplayAfterPurge(t *testing.T) {
	t.Parallel()
	for _, wrong := range []bool{false, true} {
		t.Run(fmt.Sprintf("wrong=%v", wrong), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setupBare(ctx, t, nil, &redisstock.Options{Retention: time.Hour})
			in.SetNoReplayGuard(wrong)
			require.NoError(t, in.SetStock(ctx, "ga", 10))
			_, err := in.Reserve(ctx, inventory.Request{ID: "gone", TTL: time.Minute, Lines: []inventory.Line{{SKU: "ga", Qty: 3}}})
			require.NoError(t, err)
			require.NoError(t, in.Commit(ctx, "gone"))

			// The first writer stops after its COMMIT, before it
			// acknowledges, until the test ends (as a writer that died there
			// would stay for good).
			committed, hold := make(chan struct{}), make(chan struct{})
			var once sync.Once
			w1 := in.NewWriter(&redisstock.WriterOptions{Consumer: "w", Poll: 10 * time.Millisecond})
			w1.SetAfterCommit(func() {
				once.Do(func() { close(committed) })
				<-hold
			})
			done := make(chan struct{})
			go func() { defer close(done); _ = w1.Drain(ctx) }()
			t.Cleanup(func() { close(hold); <-done })
			<-committed
			pg := testsvc.Postgres(t)
			var n int
			require.NoError(t, pg.QueryRow(ctx, "SELECT count(*) FROM "+in.Schema+".reservation WHERE id = 'gone' AND state = 2").Scan(&n))
			require.Equal(t, 1, n, "the batch committed")

			in.Clock.Advance(2 * time.Hour)
			purged, err := in.Purge(ctx, 10)
			require.NoError(t, err)
			require.Equal(t, 1, purged)

			w2 := in.NewWriter(&redisstock.WriterOptions{Consumer: "w", Poll: 10 * time.Millisecond})
			require.NoError(t, w2.Drain(ctx), "the successor applies the pending batch again")
			var rows, holds int
			require.NoError(t, pg.QueryRow(ctx, "SELECT count(*) FROM "+in.Schema+".reservation").Scan(&rows))
			require.NoError(t, pg.QueryRow(ctx, "SELECT count(*) FROM "+in.Schema+".redisstock_hold").Scan(&holds))
			require.NoError(t, in.Wipe(ctx))
			require.NoError(t, in.Load(ctx))
			lv, err := inventory.StockLevels(ctx, in.Reserver, "ga")
			require.NoError(t, err)
			t.Logf("wrong=%v: after the replay the ledger holds %d reservations and %d takes; Load rebuilds %+v", wrong, rows, holds, lv)
			if wrong {
				require.Equal(t, 1, rows, "the twin writes the purged reservation again")
				require.Equal(t, int64(6), lv.Sold, "and the rebuilt stock counts its units sold twice")
				return
			}
			require.Zero(t, rows, "the purged reservation stays purged")
			require.Zero(t, holds, "and so does its take")
			require.Equal(t, inventory.Levels{Available: 7, Sold: 3}, lv)
		})
	}
}

// TestRetentionLoadGivesBackTheTakeOfAnIDTakenAnew puts the ledger where a
// lost Redis can leave it after an ID was taken anew: the committed
// reservation it had under the ID is still there (Purge has not run), and
// the take of the new reservation reached PostgreSQL (its SKU's stream)
// while the reservation did not (its ID's stream). Load gives the take's
// units back, as it does for any take whose reservation PostgreSQL never
// got. The twin, without a retention, takes it for a take of the
// committed reservation and keeps it: its units are held by nobody.
func TestRetentionLoadGivesBackTheTakeOfAnIDTakenAnew(t *testing.T) {
	t.Parallel()
	for _, keep := range []time.Duration{time.Hour, 0} {
		t.Run(fmt.Sprintf("retention=%s", keep), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setupBare(ctx, t, nil, &redisstock.Options{Retention: keep})
			require.NoError(t, in.SetStock(ctx, "na", 10))
			res, err := in.Reserve(ctx, inventory.Request{ID: "x", TTL: time.Minute, Lines: []inventory.Line{{SKU: "na", Qty: 2}}})
			require.NoError(t, err)
			require.NoError(t, in.Commit(ctx, "x"))
			require.NoError(t, in.NewWriter(nil).Drain(ctx))
			// Two hours on, a new reservation under x takes 3 units: its
			// take reaches the ledger (the stock row's version and the
			// redisstock_hold row, numbered from its moment), and Redis is
			// lost before its reservation does.
			in.Clock.Advance(2 * time.Hour)
			pg := testsvc.Postgres(t)
			q := func(sql string, args ...any) {
				_, err := pg.Exec(ctx, strings.ReplaceAll(sql, "S.", `"`+in.Schema+`".`), args...)
				require.NoError(t, err)
			}
			q("UPDATE S.stock SET available = available - 3, fence = fence + 1 WHERE sku = 'na'")
			q("UPDATE S.redisstock_hold SET attempt = $1, qty = 3, state = 'T' WHERE reservation_id = 'x' AND sku = 'na'", in.Clock.Now().UnixMicro())
			require.NoError(t, in.Wipe(ctx))
			require.NoError(t, in.Load(ctx))
			lv, err := inventory.StockLevels(ctx, in.Reserver, "na")
			require.NoError(t, err)
			t.Logf("retention %s: the first reservation %v; after the Load %+v", keep, res.Lines, lv)
			if keep == 0 {
				require.Equal(t, int64(5), lv.Available, "the twin keeps the take: 3 units held by nobody")
				return
			}
			require.Equal(t, inventory.Levels{Available: 8, Sold: 2}, lv, "the new reservation's take goes back, the sale stays")
		})
	}
}
