package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// layoutOptions are the flags of the layout mode (-layouts N): the hot path
// of the ledger (record a reservation with its line and take the unit, then
// commit it) in SQL on candidate table layouts, each on an empty schema and
// on one filled with N settled reservations, alternated.
type layoutOptions struct {
	fill    int // settled reservations in each filled schema; 0: the mode is off
	names   string
	rounds  int
	workers int
	run     time.Duration
	probe   int // pairs of each WAL probe
	purge   int // Purge batches of 1000 timed on each filled schema
	skus    int
	verbose bool      // log the buffer use of each table and index per run
	log     io.Writer // where verbose goes
}

// layoutFlags registers the flags of the layout mode on fs.
func layoutFlags(fs *flag.FlagSet, o *layoutOptions) {
	fs.IntVar(&o.fill, "layouts", 0, "layout mode: fill a schema per ledger layout with `N` settled reservations over 30 days, then time the hot path (record + take, then commit) in SQL on each against an empty one, alternated, with buffer reads and WAL per pair (e.g. 5000000)")
	fs.StringVar(&o.names, "layout-names", strings.Join(layoutNames(), ","), "layout mode: comma-separated layouts to compare")
	fs.IntVar(&o.rounds, "layout-rounds", 3, "layout mode: alternated runs of each layout and ledger")
	fs.IntVar(&o.workers, "layout-workers", 32, "layout mode: concurrent buyers, each reserving one line of one of -layout-skus SKUs and committing it")
	fs.DurationVar(&o.run, "layout-run", 10*time.Second, "layout mode: how long each run lasts")
	fs.IntVar(&o.probe, "layout-probe", 1000, "layout mode: pairs run one at a time under EXPLAIN (ANALYZE, BUFFERS, WAL) right after a CHECKPOINT, per layout and ledger")
	fs.IntVar(&o.purge, "layout-purge", 20, "layout mode: purge batches of 1000 oldest settled reservations timed on each filled schema at the end")
	fs.IntVar(&o.skus, "layout-skus", 100, "layout mode: SKUs")
	fs.BoolVar(&o.verbose, "layout-verbose", false, "layout mode: log the buffer hits and reads per pair of each table and index after each run")
}

// ledgerLayout is one way to lay the ledger out: its tables, and its
// statements of the hot path and of the purge. {s} stands for the quoted
// schema.
type ledgerLayout struct {
	name, about string
	tables      []string // created before the fill
	fill        []string // $1 rows, $2 the end of the history, $3 its span in seconds, $4 SKUs, $5 seed
	indexes     []string // created after the fill
	record      []string // the reservation's statements, with the arguments of recordArgs
	commit      string   // $1 id, $2 now
	purge       string   // $1 before, $2 limit, $3 from; returns count, max key
	ordered     bool     // IDs in time order (the hammer's too)
}

const layoutStock = `CREATE TABLE {s}.stock (sku text COLLATE "C" PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0))`

const layoutReservation = `CREATE TABLE {s}.reservation (
	id text COLLATE "C" NOT NULL,
	state smallint NOT NULL CHECK (state BETWEEN 1 AND 4),
	expires_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL,
	settled_at timestamptz,
	buyer text COLLATE "C",
	partial boolean NOT NULL DEFAULT false%s
)`

// layoutGen is the history of history.go's fill: 40% committed, 30%
// released, 30% expired, one line each, created evenly over the span; the
// ID of row i is md5 of the seed and i, so that two tables agree on it.
const layoutGen = `WITH g AS (
	SELECT %s AS id, $2::timestamptz - ($3::float8 * (1 - i::float8 / $1)) * interval '1 second' AS at, (i %% 10) AS k, i
	FROM generate_series(0, $1::bigint - 1) AS i WHERE $4::int > 0
)
`

const layoutStates = `CASE WHEN k < 4 THEN 2 WHEN k < 7 THEN 3 ELSE 4 END, at + interval '15 minutes', at,
	CASE WHEN k < 7 THEN at + interval '1 minute' ELSE at + interval '16 minutes' END`

var (
	randomKey  = `md5($5 || i::text)`
	orderedKey = `lpad(to_hex(i), 16, '0') || substr(md5($5 || i::text), 1, 16)`
	lineSKU    = `'sku-' || lpad((i % $4)::text, 3, '0')`
	twoFill    = func(key string) []string {
		return []string{
			fmt.Sprintf(layoutGen, key) + `INSERT INTO {s}.reservation (id, state, expires_at, created_at, settled_at) SELECT id, ` + layoutStates + ` FROM g`,
			fmt.Sprintf(layoutGen, key) + `INSERT INTO {s}.reservation_line (reservation_id, sku, qty) SELECT id, ` + lineSKU + `, 1 + i % 3 FROM g`,
		}
	}
	twoLayout = func(name, about string, key string, ordered bool) ledgerLayout {
		return ledgerLayout{
			name: name, about: about, ordered: ordered,
			tables: []string{layoutStock, fmt.Sprintf(layoutReservation, ""), `CREATE TABLE {s}.reservation_line (
	reservation_id text COLLATE "C" NOT NULL, sku text COLLATE "C" NOT NULL,
	qty bigint NOT NULL CHECK (qty > 0), bucket integer, counted boolean NOT NULL DEFAULT false)`},
			fill: twoFill(key),
			indexes: []string{
				`ALTER TABLE {s}.reservation ADD PRIMARY KEY (id)`,
				`CREATE INDEX reservation_held_due ON {s}.reservation (expires_at) WHERE state = 1`,
				`CREATE INDEX reservation_settled ON {s}.reservation ((coalesce(settled_at, expires_at))) WHERE state <> 1`,
				`ALTER TABLE {s}.reservation_line ADD PRIMARY KEY (reservation_id, sku)`,
				`ALTER TABLE {s}.reservation_line ADD FOREIGN KEY (reservation_id) REFERENCES {s}.reservation (id) ON DELETE CASCADE NOT VALID`,
			},
			record: []string{
				`INSERT INTO {s}.reservation (id, state, expires_at, created_at) VALUES ($1, 1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING $4::text, $5::bigint`,
				`INSERT INTO {s}.reservation_line (reservation_id, sku, qty) VALUES ($1, $2, $3)`,
			},
			commit: layoutCommit,
			purge:  layoutPurge,
		}
	}
	inlineLayout = func(name, about, key string) ledgerLayout {
		return ledgerLayout{
			name: name, about: about,
			tables: []string{layoutStock, fmt.Sprintf(layoutReservation, `,
	skus text[] COLLATE "C" NOT NULL, qtys bigint[] NOT NULL, buckets integer[], counted boolean[]`)},
			fill: []string{fmt.Sprintf(layoutGen, randomKey) + `INSERT INTO {s}.reservation (id, state, expires_at, created_at, settled_at, skus, qtys)
SELECT id, ` + layoutStates + `, ARRAY[` + lineSKU + `], ARRAY[1 + i % 3] FROM g`},
			indexes: []string{
				key,
				`CREATE INDEX reservation_held_due ON {s}.reservation (expires_at) WHERE state = 1`,
				`CREATE INDEX reservation_settled ON {s}.reservation ((coalesce(settled_at, expires_at))) WHERE state <> 1`,
			},
			record: []string{`INSERT INTO {s}.reservation (id, state, expires_at, created_at, skus, qtys) VALUES ($1, 1, $2, $3, ARRAY[$4::text], ARRAY[$5::bigint]) ON CONFLICT DO NOTHING`},
			commit: layoutCommit,
			purge:  layoutPurge,
		}
	}
)

// recordArgs are the arguments of a statement of ledgerLayout.record: id,
// expires_at, now, sku, qty for the reservation; id, sku, qty for a line.
func recordArgs(stmt, id string, now time.Time, sku string) []any {
	if strings.Contains(stmt, "reservation_line") {
		return []any{id, sku, int64(1)}
	}
	return []any{id, now.Add(15 * time.Minute), now, sku, int64(1)}
}

// layoutCommit finds the reservation through its key: written state = 1,
// the condition would let the planner read reservation_held_due instead
// (every hold not yet expired, and the entries of those settled since the
// last VACUUM) on a ledger whose statistics say it holds few rows, and the
// layouts would be compared by their plans.
const layoutCommit = `UPDATE {s}.reservation SET state = 2, settled_at = $2 WHERE id = $1 AND state::int = 1 AND expires_at > $2`

const layoutPurge = `WITH d AS (
	DELETE FROM {s}.reservation WHERE id = ANY (ARRAY(
		SELECT c.id FROM {s}.reservation c WHERE c.state <> 1
			AND coalesce(c.settled_at, c.expires_at) >= $3 AND coalesce(c.settled_at, c.expires_at) < $1
		ORDER BY coalesce(c.settled_at, c.expires_at) LIMIT $2 FOR UPDATE SKIP LOCKED))
	RETURNING coalesce(settled_at, expires_at) AS k
)
SELECT count(*), coalesce(max(k), '-infinity') FROM d`

// ledgerLayouts are the candidates of the layout mode.
var ledgerLayouts = []ledgerLayout{
	twoLayout("two", "reservation + reservation_line, random text primary keys (the ledger as it is)", randomKey, false),
	twoLayout("two-ordered", "the same tables, with IDs in time order (a time-ordered prefix, as UUIDv7 or ULID)", orderedKey, true),
	inlineLayout("inline", "one table: the lines as arrays in the reservation row, random text primary key",
		`ALTER TABLE {s}.reservation ADD PRIMARY KEY (id)`),
	inlineLayout("inline-hash", "one table, lines as arrays, the ID unique through EXCLUDE USING hash (id WITH =): a 4-byte hash code per entry",
		`ALTER TABLE {s}.reservation ADD CONSTRAINT reservation_id_unique EXCLUDE USING hash (id WITH =)`),
}

func layoutNames() []string {
	var names []string
	for _, l := range ledgerLayouts {
		names = append(names, l.name)
	}
	return names
}

// layoutRun is one timed run of the hammer.
type layoutRun struct {
	layout, ledger string
	rate           float64 // pairs/s
	hit, read      float64 // shared buffer hits and reads per pair (pg_statio of the schema)
	load           string
}

// layoutProbe is what EXPLAIN (ANALYZE, BUFFERS, WAL) reported per pair.
type layoutProbe struct {
	walBytes, fpi, hit, read, dirtied float64
}

func runLayouts(ctx context.Context, o layoutOptions, stdout, stderr io.Writer) int {
	if err := layouts(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "invbench: -layouts:", err)
		return exitFailed
	}
	return 0
}

func layouts(ctx context.Context, o layoutOptions, stdout, stderr io.Writer) error {
	o.log = stderr
	if o.rounds < 1 || o.workers < 1 || o.run <= 0 || o.probe < 0 || o.purge < 0 || o.skus < 1 {
		return errors.New("-layout-rounds, -layout-workers, -layout-run and -layout-skus must be positive")
	}
	var chosen []ledgerLayout
	for _, n := range strings.Split(o.names, ",") {
		i := slices.IndexFunc(ledgerLayouts, func(l ledgerLayout) bool { return l.name == strings.TrimSpace(n) })
		if i < 0 {
			return fmt.Errorf("unknown layout %q (%s)", n, strings.Join(layoutNames(), ", "))
		}
		chosen = append(chosen, ledgerLayouts[i])
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "invbench: layouts: "+format+"\n", args...) }
	pgURL, _ := serverURLs()
	admin, err := connectPostgres(ctx, pgURL, 4)
	if err != nil {
		return err
	}
	defer admin.Close()
	id := randomID()
	schema := func(l ledgerLayout, ledger string) string {
		return pgx.Identifier{"invbench_layout_" + strings.ReplaceAll(l.name, "-", "_") + "_" + ledger + "_" + id}.Sanitize()
	}
	defer func() {
		for _, l := range chosen {
			for _, ledger := range []string{"empty", "filled"} {
				_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+schema(l, ledger)+" CASCADE")
			}
		}
	}()
	end := time.Now().Add(-25 * time.Hour)
	span := (30*24*time.Hour - 25*time.Hour).Seconds()
	for _, l := range chosen {
		for _, ledger := range []string{"empty", "filled"} {
			sc := schema(l, ledger)
			t0 := time.Now()
			stmts := []string{"CREATE SCHEMA " + sc}
			stmts = append(stmts, l.tables...)
			if ledger == "filled" {
				stmts = append(stmts, l.fill...)
			}
			stmts = append(stmts, l.indexes...)
			for _, s := range stmts {
				s = strings.ReplaceAll(s, "{s}", sc)
				var args []any
				if strings.Contains(s, "$5") {
					args = []any{o.fill, end, span, o.skus, id}
				}
				if _, err := admin.Exec(ctx, s, args...); err != nil {
					return fmt.Errorf("%s %s: %w", l.name, ledger, err)
				}
			}
			for i := range o.skus {
				if _, err := admin.Exec(ctx, "INSERT INTO "+sc+".stock VALUES ($1, $2)", histSKU(i), int64(1)<<50); err != nil {
					return err
				}
			}
			if _, err := admin.Exec(ctx, "VACUUM (ANALYZE) "+sc+".reservation"); err != nil {
				return err
			}
			if strings.Contains(strings.Join(l.tables, ""), "reservation_line") {
				if _, err := admin.Exec(ctx, "VACUUM (ANALYZE) "+sc+".reservation_line"); err != nil {
					return err
				}
			}
			logf("%s %s: made in %s", l.name, ledger, time.Since(t0).Round(time.Second))
		}
	}
	sizes := map[string][][2]string{}
	for _, l := range chosen {
		sizes[l.name], err = schemaSizes(ctx, admin, schema(l, "filled"))
		if err != nil {
			return err
		}
	}

	var seq atomic.Int64
	seq.Store(time.Now().UnixNano())
	newID := func(ordered bool) string {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		if ordered {
			return fmt.Sprintf("%016x", seq.Add(1)) + hex.EncodeToString(b[:8])
		}
		return hex.EncodeToString(b)
	}
	q := func(l ledgerLayout, ledger, s string) string { return strings.ReplaceAll(s, "{s}", schema(l, ledger)) }

	// The WAL probes: one pair at a time right after a CHECKPOINT, so that
	// every layout starts from the same state of full-page writes.
	probes := map[[2]string]layoutProbe{}
	if o.probe > 0 {
		conn, err := admin.Acquire(ctx)
		if err != nil {
			return err
		}
		for _, l := range chosen {
			for _, ledger := range []string{"filled", "empty"} {
				if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
					conn.Release()
					return err
				}
				p, err := probeLayout(ctx, conn.Conn(), l, func(s string) string { return q(l, ledger, s) }, o, newID)
				if err != nil {
					conn.Release()
					return fmt.Errorf("probe %s %s: %w", l.name, ledger, err)
				}
				probes[[2]string{l.name, ledger}] = p
				logf("probe %-12s %-6s WAL %6.0f B/pair, %.2f FPI/pair, %.1f hit, %.2f read, %.2f dirtied per pair", l.name, ledger, p.walBytes, p.fpi, p.hit, p.read, p.dirtied)
			}
		}
		conn.Release()
	}

	var runs []layoutRun
	for round := range o.rounds {
		for _, l := range chosen {
			order := []string{"empty", "filled"}
			if round%2 == 1 {
				order = []string{"filled", "empty"}
			}
			for _, ledger := range order {
				r, err := hammerLayout(ctx, pgURL, admin, l, ledger, func(s string) string { return q(l, ledger, s) }, schema(l, ledger), o, newID)
				if err != nil {
					return fmt.Errorf("%s %s: %w", l.name, ledger, err)
				}
				logf("round %d %-12s %-6s %7.0f pairs/s  %5.1f hit %5.2f read per pair  load %s", round+1, l.name, ledger, r.rate, r.hit, r.read, r.load)
				runs = append(runs, r)
			}
		}
	}

	purges := map[string]float64{}
	if o.purge > 0 {
		for _, l := range chosen {
			stmt := q(l, "filled", l.purge)
			from := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
			n, t0 := 0, time.Now()
			for range o.purge {
				var got int
				var last pgtype.Timestamptz
				if err := admin.QueryRow(ctx, stmt, time.Now().Add(-24*time.Hour), 1000, from).Scan(&got, &last); err != nil {
					return fmt.Errorf("purge %s: %w", l.name, err)
				}
				n += got
				from = last
			}
			purges[l.name] = float64(n) / time.Since(t0).Seconds()
			logf("purge %-12s %d in %s: %.0f/s", l.name, n, time.Since(t0).Round(time.Millisecond), purges[l.name])
		}
	}

	fmt.Fprintf(stdout, "## Ledger layouts: %d settled reservations against an empty ledger\n\n", o.fill)
	fmt.Fprintf(stdout, "The hot path in SQL: record a reservation of one line and take its unit in one transaction, then commit it; %d workers, one of %d SKUs, %s per run, %d alternated runs of each.\n\n", o.workers, o.skus, o.run, o.rounds)
	fmt.Fprintln(stdout, "| layout | empty (pairs/s, median) | filled (pairs/s, median) | filled / empty | buffer reads per pair, empty / filled | WAL per pair after a checkpoint, empty / filled | FPI per pair, empty / filled | purge, filled (reservations/s) |")
	fmt.Fprintln(stdout, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, l := range chosen {
		e, f := medianLayout(runs, l.name, "empty", func(r layoutRun) float64 { return r.rate }), medianLayout(runs, l.name, "filled", func(r layoutRun) float64 { return r.rate })
		re, rf := medianLayout(runs, l.name, "empty", func(r layoutRun) float64 { return r.read }), medianLayout(runs, l.name, "filled", func(r layoutRun) float64 { return r.read })
		pe, pf := probes[[2]string{l.name, "empty"}], probes[[2]string{l.name, "filled"}]
		fmt.Fprintf(stdout, "| %s | %.0f | %.0f | %.2fx | %.2f / %.2f | %.0f B / %.0f B | %.2f / %.2f | %.0f |\n", l.name, e, f, f/e, re, rf, pe.walBytes, pf.walBytes, pe.fpi, pf.fpi, purges[l.name])
	}
	fmt.Fprintln(stdout, "\nLayouts:")
	for _, l := range chosen {
		fmt.Fprintf(stdout, "- %s: %s\n", l.name, l.about)
	}
	fmt.Fprintln(stdout, "\n| layout | relation | size, filled |")
	fmt.Fprintln(stdout, "| --- | --- | ---: |")
	for _, l := range chosen {
		for _, rel := range sizes[l.name] {
			fmt.Fprintf(stdout, "| %s | %s | %s |\n", l.name, rel[0], rel[1])
		}
	}
	fmt.Fprintln(stdout, "\n| run | layout | ledger | pairs/s | buffer hits per pair | buffer reads per pair | load (1, 5, 15 min) |")
	fmt.Fprintln(stdout, "| ---: | --- | --- | ---: | ---: | ---: | --- |")
	for i, r := range runs {
		fmt.Fprintf(stdout, "| %d | %s | %s | %.0f | %.1f | %.2f | %s |\n", i+1, r.layout, r.ledger, r.rate, r.hit, r.read, r.load)
	}
	return nil
}

// hammerLayout runs o.workers buyers on their own pool (closed at the end,
// so that the server has flushed their statistics when they are read).
func hammerLayout(ctx context.Context, pgURL string, admin *pgxpool.Pool, l ledgerLayout, ledger string, q func(string) string, sc string, o layoutOptions, newID func(bool) string) (layoutRun, error) {
	h0, r0, err := schemaIO(ctx, admin, sc)
	if err != nil {
		return layoutRun{}, err
	}
	per0, err := indexIO(ctx, admin, sc)
	if err != nil {
		return layoutRun{}, err
	}
	pool, err := connectPostgres(ctx, pgURL, int32(o.workers))
	if err != nil {
		return layoutRun{}, err
	}
	record := make([]string, len(l.record))
	for i, s := range l.record {
		record[i] = q(s)
	}
	take := q(`UPDATE {s}.stock SET available = available - $2 WHERE sku = $1 AND available >= $2`)
	commit := q(l.commit)
	pairs, elapsed, firstErr := runPairs(ctx, o.workers, o.run, func(ctx context.Context) error {
		id, now := newID(l.ordered), time.Now()
		sku := histSKU(mrand.IntN(o.skus))
		b := &pgx.Batch{}
		for _, s := range record {
			b.Queue(s, recordArgs(s, id, now, sku)...)
		}
		b.Queue(take, sku, int64(1))
		err := pool.SendBatch(ctx, b).Close()
		if err == nil {
			_, err = pool.Exec(ctx, commit, id, time.Now())
		}
		return err
	})
	pool.Close()
	if firstErr != nil {
		return layoutRun{}, firstErr
	}
	time.Sleep(500 * time.Millisecond) // the backends' exit flushes their statistics
	h1, r1, err := schemaIO(ctx, admin, sc)
	if err != nil {
		return layoutRun{}, err
	}
	if o.verbose {
		per1, err := indexIO(ctx, admin, sc)
		if err != nil {
			return layoutRun{}, err
		}
		for name, v := range per1 {
			d := [2]int64{v[0] - per0[name][0], v[1] - per0[name][1]}
			fmt.Fprintf(o.log, "invbench: layouts:   %s %s %s: %.1f hit %.2f read per pair\n", l.name, ledger, name, float64(d[0])/float64(max(pairs, 1)), float64(d[1])/float64(max(pairs, 1)))
		}
	}
	n := float64(max(pairs, 1))
	return layoutRun{layout: l.name, ledger: ledger, rate: float64(pairs) / elapsed.Seconds(),
		hit: float64(h1-h0) / n, read: float64(r1-r0) / n, load: loadAvg()}, nil
}

// schemaIO returns the shared buffer hits and reads of the tables (heap,
// indexes, TOAST) of schema sc.
func schemaIO(ctx context.Context, pool *pgxpool.Pool, sc string) (hit, read int64, err error) {
	err = pool.QueryRow(ctx, `SELECT coalesce(sum(coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0) + coalesce(toast_blks_hit, 0) + coalesce(tidx_blks_hit, 0)), 0)::bigint,
	coalesce(sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0)), 0)::bigint
FROM pg_statio_all_tables WHERE schemaname = $1 AND relname <> 'stock'`, strings.Trim(sc, `"`)).Scan(&hit, &read)
	return hit, read, err
}

// indexIO returns the shared buffer hits and reads of every table and index
// of schema sc by name.
func indexIO(ctx context.Context, pool *pgxpool.Pool, sc string) (map[string][2]int64, error) {
	rows, err := pool.Query(ctx, `SELECT relname, coalesce(heap_blks_hit, 0), coalesce(heap_blks_read, 0) FROM pg_statio_all_tables WHERE schemaname = $1
UNION ALL SELECT indexrelname, coalesce(idx_blks_hit, 0), coalesce(idx_blks_read, 0) FROM pg_statio_all_indexes WHERE schemaname = $1`, strings.Trim(sc, `"`))
	if err != nil {
		return nil, err
	}
	out := map[string][2]int64{}
	for rows.Next() {
		var name string
		var h, r int64
		if err := rows.Scan(&name, &h, &r); err != nil {
			return nil, err
		}
		out[name] = [2]int64{h, r}
	}
	return out, rows.Err()
}

// probeLayout runs o.probe pairs one at a time, each ledger statement under
// EXPLAIN (ANALYZE, BUFFERS, WAL), and returns their sums per pair. The
// foreign key's check runs in a trigger, outside what EXPLAIN counts.
func probeLayout(ctx context.Context, conn *pgx.Conn, l ledgerLayout, q func(string) string, o layoutOptions, newID func(bool) string) (layoutProbe, error) {
	var sum layoutProbe
	explain := func(stmt string, args ...any) error {
		var out string
		if err := conn.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) "+stmt, args...).Scan(&out); err != nil {
			return err
		}
		var plan []struct {
			Plan struct {
				WALBytes float64 `json:"WAL Bytes"`
				WALFPI   float64 `json:"WAL FPI"`
				Hit      float64 `json:"Shared Hit Blocks"`
				Read     float64 `json:"Shared Read Blocks"`
				Dirtied  float64 `json:"Shared Dirtied Blocks"`
			}
		}
		if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan) != 1 {
			return fmt.Errorf("EXPLAIN: %v: %s", err, out)
		}
		p := plan[0].Plan
		sum.walBytes += p.WALBytes
		sum.fpi += p.WALFPI
		sum.hit += p.Hit
		sum.read += p.Read
		sum.dirtied += p.Dirtied
		return nil
	}
	take := q(`UPDATE {s}.stock SET available = available - $2 WHERE sku = $1 AND available >= $2`)
	for range o.probe {
		id, now := newID(l.ordered), time.Now()
		sku := histSKU(mrand.IntN(o.skus))
		tx, err := conn.Begin(ctx)
		if err != nil {
			return sum, err
		}
		for _, s := range l.record {
			if err := explain(q(s), recordArgs(s, id, now, sku)...); err != nil {
				_ = tx.Rollback(ctx)
				return sum, err
			}
		}
		if _, err := tx.Exec(ctx, take, sku, int64(1)); err != nil {
			_ = tx.Rollback(ctx)
			return sum, err
		}
		if err := tx.Commit(ctx); err != nil {
			return sum, err
		}
		if err := explain(q(l.commit), id, time.Now()); err != nil {
			return sum, err
		}
	}
	n := float64(o.probe)
	return layoutProbe{walBytes: sum.walBytes / n, fpi: sum.fpi / n, hit: sum.hit / n, read: sum.read / n, dirtied: sum.dirtied / n}, nil
}

// schemaSizes returns the size of every table and index of schema sc,
// largest first, pretty.
func schemaSizes(ctx context.Context, pool *pgxpool.Pool, sc string) ([][2]string, error) {
	rows, err := pool.Query(ctx, `SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'i') AND c.relname NOT LIKE 'stock%'
ORDER BY pg_relation_size(c.oid) DESC`, strings.Trim(sc, `"`))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var out [2]string
		err := r.Scan(&out[0], &out[1])
		return out, err
	})
}

func medianLayout(runs []layoutRun, layout, ledger string, f func(layoutRun) float64) float64 {
	var xs []float64
	for _, r := range runs {
		if r.layout == layout && r.ledger == ledger {
			xs = append(xs, f(r))
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
