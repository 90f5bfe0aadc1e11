package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

// historyOptions are the flags of the history mode (-history N): what a
// ledger that has kept a month of reservations costs sqlcond, and what
// purging it under load costs and gives back.
type historyOptions struct {
	fill      int           // reservations of history; 0: the mode is off
	days      int           // the span of the history
	retention time.Duration // the retention of the strategy, shorter than the history
	rounds    int           // alternated runs of each kind after the purge
	workers   int
	run       time.Duration // one run of the hammer
	batch     int           // the limit of each Purge
	skus      int
}

// historyFlags registers the flags of the history mode on fs.
func historyFlags(fs *flag.FlagSet, o *historyOptions) {
	fs.IntVar(&o.fill, "history", 0, "history mode: fill a ledger with `N` settled reservations spread over -history-days (in SQL), then measure sqlcond Reserve+Commit on it against an empty ledger, before, while and after the retention purges it (e.g. 5000000)")
	fs.IntVar(&o.days, "history-days", 30, "history mode: the days the filled reservations span, all older than -history-retention")
	fs.DurationVar(&o.retention, "history-retention", 24*time.Hour, "history mode: the strategy's Options.Retention")
	fs.IntVar(&o.rounds, "history-rounds", 3, "history mode: alternated runs of each ledger before the purge, while the purger runs beside the hammer, and after the purge")
	fs.IntVar(&o.workers, "history-workers", 32, "history mode: buyers, each reserving one line of one of -history-skus SKUs and committing it")
	fs.DurationVar(&o.run, "history-run", 10*time.Second, "history mode: how long each run lasts")
	fs.IntVar(&o.batch, "history-batch", 1000, "history mode: the limit of each Purge call")
	fs.IntVar(&o.skus, "history-skus", 100, "history mode: SKUs")
}

// histRun is one run of the hammer on one ledger.
type histRun struct {
	ledger string  // "empty" or "filled"
	phase  string  // "before", "purging", "after"
	rate   float64 // Reserve+Commit pairs per second
	purged int     // reservations purged during the run
	load   string
}

// runHistory is the history mode: see historyFlags.
func runHistory(ctx context.Context, o historyOptions, stdout, stderr io.Writer) int {
	if err := history(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "invbench: -history:", err)
		return exitFailed
	}
	return 0
}

func history(ctx context.Context, o historyOptions, stdout, stderr io.Writer) error {
	switch {
	case o.days < 2 || time.Duration(o.days)*24*time.Hour <= o.retention:
		return errors.New("-history-days must span more than -history-retention, and at least 2 days")
	case o.retention <= 0 || o.rounds < 1 || o.workers < 1 || o.run <= 0 || o.batch < 1 || o.skus < 1:
		return errors.New("-history-retention, -history-rounds, -history-workers, -history-run, -history-batch and -history-skus must be positive")
	}
	pgURL, _ := serverURLs()
	pool, err := connectPostgres(ctx, pgURL, int32(o.workers+4))
	if err != nil {
		return err
	}
	defer pool.Close()
	// Open every connection now and keep it: a run that opened one more
	// on a server whose connections other clients had taken would fail.
	if err := warmPool(ctx, pool, o.workers+4); err != nil {
		return err
	}
	id := randomID()
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "invbench: history: "+format+"\n", args...) }
	open := func(schema string) (*sqlcond.Reserver, error) {
		r, err := sqlcond.New(pool, &sqlcond.Options{Schema: schema, Retention: o.retention})
		if err != nil {
			return nil, err
		}
		if err := r.Migrate(ctx); err != nil {
			return nil, err
		}
		for i := range o.skus {
			if err := r.SetStock(ctx, histSKU(i), 1<<40); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
	schemas := map[string]string{"empty": "invbench_hist_empty_" + id, "filled": "invbench_hist_filled_" + id}
	defer func() {
		for _, s := range schemas {
			_, _ = pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE")
		}
	}()
	rs := map[string]*sqlcond.Reserver{}
	for name, s := range schemas {
		if rs[name], err = open(s); err != nil {
			return err
		}
	}
	start := time.Now()
	logf("filling %s with %d reservations over %d days", schemas["filled"], o.fill, o.days)
	if err := fillHistory(ctx, pool, schemas["filled"], o, logf); err != nil {
		return err
	}
	logf("filled in %s", time.Since(start).Round(time.Second))
	before := tableSizes(ctx, pool, schemas["filled"])

	var runs []histRun
	var purgeTime time.Duration // of the purger beside the hammer
	hammer := func(ledger, phase string, purge bool) error {
		r := rs[ledger]
		var purged atomic.Int64
		var stop atomic.Bool
		var wg sync.WaitGroup
		var purgeErr error
		t0 := time.Now()
		if purge {
			// The batch in flight when the run ends is let finish: a
			// cancelled one would purge nothing.
			wg.Go(func() {
				for !stop.Load() {
					n, err := r.Purge(ctx, o.batch)
					purged.Add(int64(n))
					if err != nil || n < o.batch {
						purgeErr = err
						return
					}
				}
			})
		}
		rate, err := reserveCommit(ctx, r, o)
		stop.Store(true)
		wg.Wait()
		if purge {
			purgeTime += time.Since(t0)
		}
		if err == nil {
			err = purgeErr
		}
		if err != nil {
			return err
		}
		run := histRun{ledger: ledger, phase: phase, rate: rate, purged: int(purged.Load()), load: loadAvg()}
		logf("%-7s %-6s %8.0f pairs/s  purged %8d  load %s", phase, ledger, run.rate, run.purged, run.load)
		runs = append(runs, run)
		return nil
	}
	// Before: the filled ledger as it is, against the empty one.
	for range o.rounds {
		for _, l := range []string{"empty", "filled"} {
			if err := hammer(l, "before", false); err != nil {
				return err
			}
		}
	}
	// Purging: the filled ledger while one purger deletes its history,
	// against the empty one without a purger; then the rest of the history
	// purged alone.
	for range o.rounds {
		if err := hammer("empty", "purging", false); err != nil {
			return err
		}
		if err := hammer("filled", "purging", true); err != nil {
			return err
		}
	}
	besideHammer := 0
	for _, r := range runs {
		besideHammer += r.purged
	}
	t0 := time.Now()
	alone := 0
	for {
		n, err := rs["filled"].Purge(ctx, o.batch)
		alone += n
		if err != nil {
			return err
		}
		if n < o.batch {
			break
		}
	}
	aloneTime := time.Since(t0)
	logf("purged the other %d alone in %s", alone, aloneTime.Round(time.Second))
	purgedSizes := tableSizes(ctx, pool, schemas["filled"])
	t0 = time.Now()
	if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{schemas["filled"], "reservation"}.Sanitize()+", "+pgx.Identifier{schemas["filled"], "reservation_line"}.Sanitize()); err != nil {
		return err
	}
	vacuumTime := time.Since(t0)
	vacuumed := tableSizes(ctx, pool, schemas["filled"])
	// After: alternated, the purged ledger against the empty one.
	for range o.rounds {
		for _, l := range []string{"empty", "filled"} {
			if err := hammer(l, "after", false); err != nil {
				return err
			}
		}
	}

	fmt.Fprintf(stdout, "## History: %d reservations over %d days, retention %s\n\n", o.fill, o.days, o.retention)
	fmt.Fprintf(stdout, "sqlcond Reserve+Commit, %d workers, one line of one of %d SKUs, %s per run; Purge limit %d.\n\n", o.workers, o.skus, o.run, o.batch)
	fmt.Fprintln(stdout, "| phase | empty (pairs/s, median) | filled (pairs/s, median) | filled / empty | runs each | purged during the filled runs |")
	fmt.Fprintln(stdout, "| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, phase := range []string{"before", "purging", "after"} {
		e, f := medianRate(runs, "empty", phase), medianRate(runs, "filled", phase)
		n, purged := 0, 0
		for _, r := range runs {
			if r.phase == phase && r.ledger == "filled" {
				n++
				purged += r.purged
			}
		}
		fmt.Fprintf(stdout, "| %s | %.0f | %.0f | %.2fx | %d | %d |\n", phase, e, f, f/e, n, purged)
	}
	fmt.Fprintf(stdout, "\nPurge beside the hammer: %d reservations in %s, %.0f/s; alone: %d in %s, %.0f/s. VACUUM (ANALYZE) afterwards: %s.\n\n",
		besideHammer, purgeTime.Round(time.Second), float64(besideHammer)/purgeTime.Seconds(),
		alone, aloneTime.Round(time.Second), float64(alone)/aloneTime.Seconds(), vacuumTime.Round(time.Second))
	fmt.Fprintln(stdout, "| relation | filled | purged | purged, vacuumed |")
	fmt.Fprintln(stdout, "| --- | ---: | ---: | ---: |")
	for _, rel := range relations {
		fmt.Fprintf(stdout, "| %s | %s | %s | %s |\n", rel, before[rel], purgedSizes[rel], vacuumed[rel])
	}
	fmt.Fprintln(stdout, "\n| run | phase | ledger | pairs/s | purged | load (1, 5, 15 min) |")
	fmt.Fprintln(stdout, "| ---: | --- | --- | ---: | ---: | --- |")
	for i, r := range runs {
		fmt.Fprintf(stdout, "| %d | %s | %s | %.0f | %d | %s |\n", i+1, r.phase, r.ledger, r.rate, r.purged, r.load)
	}
	return nil
}

// warmPool opens n connections of pool and hands them back, idle.
func warmPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	return nil
}

func histSKU(i int) string { return fmt.Sprintf("sku-%03d", i) }

// fillHistory writes o.fill settled reservations (40% committed, 30%
// released, 30% expired), one line each, created evenly over o.days days
// that end o.retention plus an hour ago, with IDs as random as the hammer's,
// in SQL, in chunks of their own transactions. The foreign key is not
// checked while it fills (session_replication_role = replica): every line's
// reservation is written by the same statement.
func fillHistory(ctx context.Context, pool *pgxpool.Pool, schema string, o historyOptions, logf func(string, ...any)) error {
	const chunk = 250_000
	sc := pgx.Identifier{schema}.Sanitize()
	end := time.Now().Add(-o.retention - time.Hour)
	span := time.Duration(o.days)*24*time.Hour - o.retention - time.Hour
	for from := 0; from < o.fill; from += chunk {
		to := min(from+chunk, o.fill)
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
		if err == nil {
			_, err = tx.Exec(ctx, `WITH g AS (
	SELECT md5(random()::text || i::text) AS id, $3::timestamptz - ($4::float8 * (1 - i::float8 / $5)) * interval '1 second' AS at,
		(i % 10) AS k, i
	FROM generate_series($1::bigint, $2::bigint - 1) AS i
), r AS (
	INSERT INTO `+sc+`.reservation (id, state, expires_at, created_at, settled_at)
	SELECT id, CASE WHEN k < 4 THEN 2 WHEN k < 7 THEN 3 ELSE 4 END,
		at + interval '15 minutes', at,
		CASE WHEN k < 7 THEN at + interval '1 minute' ELSE at + interval '16 minutes' END
	FROM g
)
INSERT INTO `+sc+`.reservation_line (reservation_id, sku, qty)
SELECT id, 'sku-' || lpad((i % $6)::text, 3, '0'), 1 + i % 3 FROM g`,
				from, to, end, span.Seconds(), o.fill, o.skus)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return fmt.Errorf("fill: %w", err)
		}
		logf("filled %d of %d", to, o.fill)
	}
	_, err := pool.Exec(ctx, "ANALYZE "+sc+".reservation, "+sc+".reservation_line")
	return err
}

// reserveCommit runs o.workers buyers for o.run, each reserving one unit of
// a random SKU and committing it, and returns the pairs per second.
func reserveCommit(ctx context.Context, r *sqlcond.Reserver, o historyOptions) (float64, error) {
	n, elapsed, err := runPairs(ctx, o.workers, o.run, func(ctx context.Context) error {
		id := strategytest.RandomID()
		_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: histSKU(rand.IntN(o.skus)), Qty: 1}}})
		if err == nil {
			err = r.Commit(ctx, id)
		}
		return err
	})
	return float64(n) / elapsed.Seconds(), err
}

// runPairs runs workers goroutines for d, each calling pair until the time
// is up or a call fails, and returns the pairs that succeeded, the time it
// took and the first error that was not the end of the run. A worker stops
// at its first error.
func runPairs(ctx context.Context, workers int, d time.Duration, pair func(context.Context) error) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var pairs atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := pair(ctx); err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = cmp(firstErr, err)
						mu.Unlock()
					}
					return
				}
				pairs.Add(1)
			}
		})
	}
	wg.Wait()
	return pairs.Load(), time.Since(start), firstErr
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// relations are the tables and indexes whose sizes the history mode reports.
var relations = []string{"reservation", "reservation_pkey", "reservation_held_due", "reservation_settled", "reservation_line", "reservation_line_pkey"}

// tableSizes returns the size of each of relations in schema, pretty.
func tableSizes(ctx context.Context, pool *pgxpool.Pool, schema string) map[string]string {
	out := map[string]string{}
	for _, rel := range relations {
		var size string
		err := pool.QueryRow(ctx, "SELECT pg_size_pretty(pg_relation_size(to_regclass($1)))", pgx.Identifier{schema, rel}.Sanitize()).Scan(&size)
		if err != nil {
			size = "?"
		}
		out[rel] = size
	}
	return out
}

func medianRate(runs []histRun, ledger, phase string) float64 {
	var xs []float64
	for _, r := range runs {
		if r.ledger == ledger && r.phase == phase {
			xs = append(xs, r.rate)
		}
	}
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// loadAvg returns the load averages of the machine, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
