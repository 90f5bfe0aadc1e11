package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

func TestHistogramQuantilesAreWithinOneBucket(t *testing.T) {
	var h histogram
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 100_000)
	for i := range vals {
		vals[i] = int64(rng.ExpFloat64() * 1e6) // mean 1ms
		h.record(time.Duration(vals[i]))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.95, 0.99, 0.999, 1} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := int64(h.quantile(q))
		assert.GreaterOrEqual(t, got, exact, "q=%v", q)
		assert.LessOrEqual(t, float64(got), float64(exact)*(1+1.0/subBuckets)+1, "q=%v", q)
	}
	assert.Equal(t, time.Duration(vals[len(vals)-1]), h.quantile(1), "the top quantile is the max")
	assert.Equal(t, int64(len(vals)), h.n)
}

func TestHistogramBucketsCoverEveryValueInOrder(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 31, 32, 33, 63, 64, 65, 1000, 1 << 20, 1<<40 + 12345, 1 << 55} {
		b := bucketOf(v)
		require.Less(t, b, numBuckets, "v=%d", v)
		require.GreaterOrEqual(t, b, prev, "v=%d", v)
		require.GreaterOrEqual(t, bucketHigh(b), v, "v=%d", v)
		if b > 0 {
			require.Less(t, bucketHigh(b-1), v, "v=%d", v)
		}
		prev = b
	}
	assert.Less(t, bucketOf(1<<63-1), numBuckets)
	var h histogram
	assert.Zero(t, h.quantile(0.99), "empty")
	h.record(-5)
	assert.Zero(t, h.quantile(0.5), "negative durations count as zero")
}

func TestRecorderMergesEveryGoroutinesShard(t *testing.T) {
	r := newRecorder()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range 1000 {
				r.record(time.Duration(i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	h := r.snapshot()
	assert.Equal(t, int64(16000), h.n)
	assert.Equal(t, int64(999*time.Microsecond), h.max)
}

func TestLatenciesPrintWithAFittingUnit(t *testing.T) {
	for ms, want := range map[float64]string{
		0.00042: "420ns", 0.0042: "4.20µs", 0.254: "254µs", 20.44: "20.4ms", 1520: "1.52s", 0: "0ns",
	} {
		assert.Equal(t, want, fmtMs(ms), "%v ms", ms)
	}
}

func TestPlanFromFlags(t *testing.T) {
	plan := func(args ...string) (plan, error) {
		t.Helper()
		o, err := parseFlags(args, &bytes.Buffer{})
		require.NoError(t, err)
		return makePlan(o)
	}
	p, err := plan()
	require.NoError(t, err)
	assert.Equal(t, []int{8, 64}, p.workers, "no flags: a run of about a minute")
	assert.Equal(t, []benchCase{{Workload: hot, Lines: 1}, {Workload: uniform, Lines: 1}}, p.cases)
	assert.Equal(t, time.Second, p.duration)
	assert.Equal(t, targetNames(), p.targets, "no flags: every strategy and baseline")

	p, err = plan("-full")
	require.NoError(t, err)
	assert.Equal(t, []int{1, 8, 32, 64, 128}, p.workers, "-full: the whole sweep")
	assert.Len(t, p.cases, 3)
	assert.Equal(t, 2*time.Second, p.duration)

	p, err = plan("-full", "-workers", "4", "-duration", "3s")
	require.NoError(t, err)
	assert.Equal(t, []int{4}, p.workers, "flags beside -full still apply")
	assert.Len(t, p.cases, 3)
	assert.Equal(t, 3*time.Second, p.duration)

	p, err = plan("-strategies", "memory", "-workloads", "hot", "-stock", "scarce", "-workers", "4, 2")
	require.NoError(t, err)
	assert.Equal(t, []string{"memory"}, p.targets)
	assert.Equal(t, []int{4, 2}, p.workers)
	assert.Equal(t, []benchCase{{Workload: hot, Lines: 1, Scarce: true}}, p.cases)

	p, err = plan("-smoke")
	require.NoError(t, err)
	assert.Equal(t, []int{32}, p.workers)
	assert.Len(t, p.cases, 3)

	for _, pg := range strategy.All() {
		if len(pg.Services) > 0 && pg.Services[0] == strategy.Postgres {
			p, err = plan("-strategies", pg.Name)
			require.NoError(t, err)
			assert.Equal(t, []string{rawPostgresName, pg.Name}, p.targets, "the store's baseline comes along")
		}
	}
	o, err := parseFlags([]string{"-gc-flushers", "1", "-gc-maxwait", "200us"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, gcOptions{flushers: 1, maxWait: 200 * time.Microsecond}, o.gc, "groupcommit's knobs")
	_, err = makePlan(o)
	require.NoError(t, err)

	p, err = plan("-mysql")
	require.NoError(t, err)
	assert.Equal(t, []string{rawMySQLName, "sqlcond-mysql", "pessimistic-mysql"}, p.targets, "-mysql: the MySQL strategies and their baseline")

	for _, bad := range [][]string{
		{"-strategies", "nope"}, {"-workloads", "spiky"}, {"-workers", "0"}, {"-workers", "x"},
		{"-stock", "scarce", "-workloads", "uniform"}, {"-stock", "lots"}, {"-zipf", "1"},
		{"-lines", "0"}, {"-duration", "0s"}, {"-skus", "1"}, {"-gc-flushers", "-1"}, {"-gc-maxwait", "-1ms"},
	} {
		_, err := plan(bad...)
		assert.Error(t, err, "%v", bad)
	}
	_, err = parseFlags([]string{"stray"}, &bytes.Buffer{})
	assert.Error(t, err)
}

// racyOps is a stock that reads and writes in two steps, so concurrent
// buyers overwrite each other: the suite must catch it.
type racyOps struct {
	mu    sync.Mutex
	stock map[string]int64
}

func (r *racyOps) read(sku string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stock[sku]
}

func (r *racyOps) write(sku string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stock[sku] = n
}

func (r *racyOps) take(_ context.Context, lines []inventory.Line) error {
	for _, l := range lines {
		n := r.read(l.SKU)
		if n < l.Qty {
			return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
		}
		runtime.Gosched()
		r.write(l.SKU, n-l.Qty)
	}
	return nil
}

func (r *racyOps) give(_ context.Context, lines []inventory.Line) error {
	for _, l := range lines {
		n := r.read(l.SKU)
		runtime.Gosched()
		r.write(l.SKU, n+l.Qty)
	}
	return nil
}

func (r *racyOps) available(_ context.Context, sku string) (int64, error) { return r.read(sku), nil }

func (r *racyOps) setStock(_ context.Context, sku string, n int64) error {
	r.write(sku, n)
	return nil
}

func (r *racyOps) addStock(_ context.Context, sku string, delta int64) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stock[sku] += delta
	return r.stock[sku], nil
}

var racyTarget = target{
	name: "racy",
	open: func(context.Context, *services, string, string, bool) (*opened, error) {
		s := &raw{ops: &racyOps{stock: map[string]int64{}}, ledger: newLedger()}
		return &opened{s: s, newID: strategy.NewIDFunc(s), close: func(context.Context) error { return nil }}, nil
	},
}

func TestRunMeasuresMemoryAndWritesEveryReport(t *testing.T) {
	p := plan{
		targets: []string{"memory", "token"},
		cases: []benchCase{
			{Workload: hot, Lines: 1}, {Workload: zipf, Lines: 3}, {Workload: hot, Lines: 1, Scarce: true},
		},
		workers: []int{1, 8}, duration: 150 * time.Millisecond,
		skus: 20, zipfS: 1.1, plenty: 1 << 40, scarce: 300, maxQty: 3, seed: 7, runID: "t",
	}
	out, err := run(t.Context(), p, &services{}, targets(), noProgress{})
	require.NoError(t, err)
	require.Len(t, out.Results, 3*2, "memory on every case and worker count")
	require.Len(t, out.Unavailable, 1, "token wraps sqlcond, which needs PostgreSQL")
	assert.False(t, out.failed())
	for _, r := range out.Results {
		assert.True(t, r.OK, "%s %s w=%d: %s %v", r.Target, caseOf(r), r.Workers, r.Problem, r.Unexpected)
		assert.Positive(t, r.Throughput, r.Target)
		assert.Positive(t, r.P99, r.Target)
		assert.LessOrEqual(t, r.P50, r.P99)
		assert.LessOrEqual(t, r.P99, r.Max+1e-9)
		if r.Stock == "sell-out" {
			assert.Zero(t, r.EndAvailable)
			assert.Equal(t, p.scarce, r.GrantedUnits, "a sell-out grants every unit once")
		}
	}

	m := meta{Command: "go run ./cmd/invbench", Targets: p.targets, PerPoint: "150ms", SKUs: p.skus, Zipf: p.zipfS}
	var table bytes.Buffer
	writeTable(&table, out, m)
	assert.Contains(t, table.String(), "hot: one SKU")
	assert.Contains(t, table.String(), "zipf (s=1.1) over 20 SKUs, carts of 1..3 lines")
	assert.Contains(t, table.String(), "sold out to zero")
	assert.NotContains(t, table.String(), "!!")

	dir := t.TempDir()
	require.NoError(t, writeOut(dir, out, m))
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "| strategy | workers |")
	f, err := os.Open(filepath.Join(dir, "results.csv"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	assert.Len(t, rows, 1+len(out.Results))
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	var back struct {
		Meta    meta      `json:"meta"`
		Results []*Result `json:"results"`
	}
	require.NoError(t, json.Unmarshal(js, &back))
	assert.Len(t, back.Results, len(out.Results))

	for _, name := range []string{"chart.png", "chart.svg"} {
		file := filepath.Join(dir, name)
		require.NoError(t, writeChart(file, out, m))
		st, err := os.Stat(file)
		require.NoError(t, err)
		assert.Greater(t, st.Size(), int64(1000))
	}
	assert.Error(t, writeChart(filepath.Join(dir, "chart.gif"), out, m))
}

func TestUnavailableStrategiesAreListedWithTheReason(t *testing.T) {
	pgOnly := target{name: "needs-pg", services: []strategy.Service{strategy.Postgres}}
	p := plan{targets: []string{"memory", "needs-pg"}, cases: []benchCase{{Workload: hot, Lines: 1}},
		workers: []int{2}, ops: 50, plenty: 1000, maxQty: 1, runID: "u"}
	svc := &services{pgErr: assert.AnError}
	out, err := run(t.Context(), p, svc, append(targets(), pgOnly), noProgress{})
	require.NoError(t, err)
	require.Len(t, out.Results, 1)
	require.Len(t, out.Unavailable, 1)
	assert.Equal(t, "needs-pg", out.Unavailable[0].Target)
	assert.Contains(t, out.Unavailable[0].Reason, assert.AnError.Error())
	var table bytes.Buffer
	writeTable(&table, out, meta{Targets: p.targets})
	assert.Contains(t, table.String(), "Not measured:")
	assert.Contains(t, table.String(), "needs-pg: PostgreSQL unavailable")
}

func TestOversellingStrategyIsMarkedLoudly(t *testing.T) {
	p := plan{targets: []string{"racy"}, cases: []benchCase{{Workload: hot, Lines: 1, Scarce: true}},
		workers: []int{32}, plenty: 1 << 40, scarce: 2000, maxQty: 2, runID: "r"}
	out, err := run(t.Context(), p, &services{}, []target{racyTarget}, noProgress{})
	require.NoError(t, err)
	require.Len(t, out.Results, 1)
	r := out.Results[0]
	require.False(t, r.OK, "the racy stock must be caught: %+v", r)
	assert.True(t, out.failed())
	var table bytes.Buffer
	writeTable(&table, out, meta{Targets: p.targets})
	assert.Contains(t, table.String(), "FAILED THE INVARIANT CHECK")
	assert.Contains(t, r.check(), "!! ")
}

func TestMainExitsZeroOnASmallMemoryRunAndTwoOnBadFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	code := mainErr(t.Context(), []string{"-strategies", "memory", "-workloads", "hot", "-workers", "2", "-ops", "200",
		"-out", dir, "-chart", filepath.Join(dir, "c.svg")}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	assert.Contains(t, stdout.String(), "memory")
	assert.FileExists(t, filepath.Join(dir, "results.json"))
	assert.FileExists(t, filepath.Join(dir, "c.svg"))
	// stderr is no terminal here: a line per point, with its result.
	assert.Contains(t, stderr.String(), "invbench: 1 points")
	assert.Regexp(t, `invbench: \[1/1\] memory hot w=2: \d+ ops/s, p99 \S+, ok \(`, stderr.String())
	// The tables say what their columns mean.
	for _, col := range []string{"workers ", "ops/s ", "vs raw ", "p50..max ", "refused ", "errors ", "check "} {
		assert.Contains(t, stdout.String(), "\n  "+col, "the legend explains %q", col)
	}
	assert.Contains(t, stdout.String(), "not_held (a Commit or Release")

	stdout.Reset()
	stderr.Reset()
	code = mainErr(t.Context(), []string{"-strategies", "memory", "-workloads", "hot", "-workers", "2", "-ops", "50", "-quiet"}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	assert.Empty(t, stderr.String(), "-quiet")

	assert.Equal(t, exitUsage, mainErr(t.Context(), []string{"-workers", "none"}, &stdout, &stderr))
	assert.Equal(t, exitUsage, mainErr(t.Context(), []string{"-chart", "x.gif"}, &stdout, &stderr))
}

// TestSmokeEveryServiceStrategy is the CI smoke run: every strategy and
// baseline that needs PostgreSQL, Redis or MySQL, 300ms per case (the second of
// -smoke with INVENTORY_TEST_SOAK=1), failing on any oversell or loss.
func TestSmokeEveryServiceStrategy(t *testing.T) {
	svc := &services{pg: testsvc.Postgres(t), redis: testsvc.Redis(t), mysql: testsvc.MySQL(t)}
	var names []string
	all := targets()
	for _, tg := range all {
		if len(tg.services) > 0 {
			names = append(names, tg.name)
		}
	}
	if len(names) == 0 {
		t.Skip("no strategy needs a service yet")
	}
	o, err := parseFlags([]string{"-smoke"}, &bytes.Buffer{})
	require.NoError(t, err)
	p, err := makePlan(o)
	require.NoError(t, err)
	p.targets = names
	p.workers = []int{16} // the shared test pool has testsvc.MaxConns connections
	if !testsvc.Soak() {
		// Long enough for every strategy to decide calls and be checked;
		// the second of -smoke with INVENTORY_TEST_SOAK=1.
		p.duration, p.scarce = 300*time.Millisecond, 300
	}
	p.runID = "smoke" + randomID()
	out, err := run(t.Context(), p, svc, all, noProgress{})
	require.NoError(t, err)
	require.Empty(t, out.Unavailable)
	var table bytes.Buffer
	writeTable(&table, out, meta{Targets: p.targets, PerPoint: "1s"})
	t.Log(table.String())
	for _, r := range out.Results {
		assert.True(t, r.OK, "%s %s: %s", r.Target, caseOf(r), r.check())
		assert.Positive(t, r.Decided, "%s %s made progress", r.Target, caseOf(r))
	}
}

// TestRedisstockOnARedisCluster runs redisstock and its baseline on a
// three-master cluster started on loopback ports, through -redis-cluster.
func TestRedisstockOnARedisCluster(t *testing.T) {
	testsvc.Postgres(t) // redisstock writes behind to PostgreSQL
	c := redistest.StartCluster(t)
	var stdout, stderr bytes.Buffer
	code := mainErr(t.Context(), []string{"-strategies", "redisstock", "-workloads", "uniform", "-workers", "8", "-ops", "400",
		"-quiet", "-strict", "-redis-cluster", strings.Join(c.Addrs(), ",")}, &stdout, &stderr)
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	assert.Regexp(t, `redisstock\s+8\s+[\d.]+\s+[\d.]+ .* ok\n`, stdout.String()) // under 100/s: one decimal
	assert.Regexp(t, `raw-redis\s+8\s+[\d.]+\s+\(raw\) .* ok\n`, stdout.String())
}

func TestMain(m *testing.M) {
	if w, _ := strategytest.ProcsWorkerOrders(); w != nil {
		// This test binary run again as a worker process of -procs.
		extraTargets = append(extraTargets, racyPostgresTarget)
		os.Exit(mainErr(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// racyPostgres is raw-postgres with a read-then-write of the stock: buyers
// in any process overwrite each other's takes.
type racyPostgres struct{ *rawPostgres }

func (r racyPostgres) take(ctx context.Context, lines []inventory.Line) error {
	for _, l := range lines {
		n, err := r.available(ctx, l.SKU)
		if err != nil {
			return err
		}
		if n < l.Qty {
			return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty, Available: n}
		}
		time.Sleep(time.Millisecond) // the window another buyer reads the same value in
		if err := r.setStock(ctx, l.SKU, n-l.Qty); err != nil {
			return err
		}
	}
	return nil
}

var racyPostgresTarget = target{
	name: "racy-postgres", services: []strategy.Service{strategy.Postgres},
	open: func(ctx context.Context, svc *services, schema, _ string, drop bool) (*opened, error) {
		r, err := openRawPostgres(ctx, svc.pg, schema)
		if err != nil {
			return nil, err
		}
		r.ops = racyPostgres{r.ops.(*rawPostgres)}
		return &opened{s: r, newID: strategy.NewIDFunc(r), close: func(ctx context.Context) error {
			if !drop {
				return nil
			}
			_, err := svc.pg.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			return err
		}}, nil
	},
}

// TestProcsMergeAddsCountsAndLatencies merges two workers' reports as
// they come from their processes: the counts add up, and the percentiles
// are those of every call of both.
func TestProcsMergeAddsCountsAndLatencies(t *testing.T) {
	var a, b, both histogram
	for i := range 1000 {
		d := time.Duration(i+1) * time.Microsecond // worker 0: 1µs..1ms
		a.record(d)
		both.record(d)
	}
	for i := range 500 {
		d := time.Duration(i+1) * 10 * time.Millisecond // worker 1: 10ms..5s
		b.record(d)
		both.record(d)
	}
	m := &procsMerge{ledger: newLedger()}
	for i, d := range []workerData{
		{Latency: &a, Decided: 1000, Refused: 10, Flushes: 40, Calls: 400,
			Ledger: []inventory.Reservation{{ID: "a", Lines: []inventory.Line{{SKU: "sku-00", Qty: 2}}, State: inventory.Held}}},
		{Latency: &b, Decided: 500, Refused: 5, Flushes: 10, Calls: 100,
			Ledger: []inventory.Reservation{{ID: "b", Lines: []inventory.Line{{SKU: "sku-00", Qty: 1}}, State: inventory.Committed}}},
	} {
		js, err := json.Marshal(d)
		require.NoError(t, err)
		require.NoError(t, m.collect(i, js))
	}
	rep := &strategytest.ProcsReport{Report: strategytest.Report{Reserves: 1600, Granted: 1400, Elapsed: 2 * time.Second,
		Errors: map[string]int64{"insufficient": 15, "not_held": 3}}}
	var r Result
	m.fill(&r, rep, benchCase{Workload: hot, Lines: 1})
	assert.Equal(t, int64(1500), r.Decided)
	assert.Equal(t, int64(15), r.Refused)
	assert.Equal(t, int64(1600), r.Reserves)
	assert.Equal(t, 750.0, r.Throughput, "decided over the merged wall window")
	assert.Equal(t, map[string]int64{"not_held": 3}, r.Errors)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	assert.Equal(t, ms(both.quantile(0.5)), r.P50)
	assert.Equal(t, ms(both.quantile(0.95)), r.P95)
	assert.Equal(t, ms(both.quantile(0.99)), r.P99)
	assert.Equal(t, ms(5*time.Second), r.Max)
	assert.Equal(t, ms(both.mean()), r.Mean)
	assert.LessOrEqual(t, r.P50, ms(time.Millisecond), "two thirds of the calls are worker 0's: so is the median")
	assert.Greater(t, r.P99, ms(time.Second), "the slowest are worker 1's")
	assert.Equal(t, 10.0, r.MeanBatch)
	assert.Equal(t, 25.0, r.Flushes)
	held, err := (&raw{ledger: m.ledger}).Lookup(t.Context(), "b")
	require.NoError(t, err)
	assert.Equal(t, inventory.Committed, held.State, "a raw baseline's reservations reach the parent's ledger")
	assert.Error(t, (&procsMerge{}).collect(0, []byte(`{"latency":{"n":2,"buckets":[[3,1]]}}`)), "a histogram that does not add up")
}

func TestWorkerProcessesShareTheCores(t *testing.T) {
	for _, c := range []struct{ cores, procs, want int }{{2, 4, 1}, {2, 2, 1}, {2, 1, 2}, {8, 4, 2}, {8, 3, 2}, {1, 4, 1}, {4, 0, 4}} {
		assert.Equal(t, c.want, workerProcs(c.cores, c.procs), "%d cores over %d processes", c.cores, c.procs)
	}
}

// TestProcsRunsEndToEndAndCatchesOversell runs invbench -procs 2: sqlcond
// and raw-postgres in two worker processes each, then a strategy that
// oversells across them, which the parent's one check catches.
func TestProcsRunsEndToEndAndCatchesOversell(t *testing.T) {
	testsvc.Postgres(t)
	args := []string{"-workloads", "hot", "-workers", "8", "-procs", "2", "-duration", "300ms", "-pg-conns", "8", "-quiet"}
	var stdout, stderr bytes.Buffer
	code := mainErr(t.Context(), append([]string{"-strategies", "sqlcond"}, args...), &stdout, &stderr)
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "workers over 2 processes")
	assert.Regexp(t, `raw-postgres\s+8\s+[\d.]+\s+\(raw\) .* ok\n`, stdout.String())
	assert.Regexp(t, `sqlcond\s+8\s+[\d.]+\s+[\d.]+ .* ok\n`, stdout.String())

	extraTargets = append(extraTargets, racyPostgresTarget)
	t.Cleanup(func() { extraTargets = extraTargets[:len(extraTargets)-1] })
	stdout.Reset()
	stderr.Reset()
	code = mainErr(t.Context(), append([]string{"-strategies", "racy-postgres", "-stock", "scarce", "-scarce", "100"}, args...), &stdout, &stderr)
	assert.Equal(t, exitFailed, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "OVERSOLD")
}
