// Command invbench runs the inventory strategies side by side on one
// workload, beside the raw limits of the same servers measured in the same
// run, and reports throughput, latency, refusals, errors and the invariant
// check of every run.
//
// With no flags it answers, in about a minute, which strategy is how fast
// and whether it kept the contract: every strategy that can run here, on the
// hot SKU and on carts over 100 SKUs, at 8 and 64 workers, a second per
// point. -full runs the whole sweep (three workloads, five worker counts, 2s
// per point: about five minutes). Strategies run: memory always;
// the PostgreSQL and Redis ones against INVENTORY_POSTGRES_URL and
// INVENTORY_REDIS_URL, else
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable and
// redis://127.0.0.1:6379/0; with -containers, against PostgreSQL and Redis
// started through testcontainers-go. A strategy that cannot run is listed
// with the reason.
//
//	go run ./cmd/invbench                         # about a minute: hot and uniform, 8 and 64 workers
//	go run ./cmd/invbench -full                   # the full sweep, about five minutes
//	go run ./cmd/invbench -smoke                  # a few seconds per strategy; fails on oversell or loss
//	go run ./cmd/invbench -workloads hot -workers 64 -strategies sqlcond,pessimistic
//	go run ./cmd/invbench -out results -chart results/chart.svg
//	go run ./cmd/invbench -workloads hot -workers 64 -procs 4  # the 64 workers in 4 processes
//
// Every point (one strategy, one workload, one worker count) runs the
// hammer of strategy/strategytest on a fresh schema and key prefix, dropped
// afterwards: each worker is a buyer that reserves a cart, then commits
// (40%), releases (30%) or abandons it (30%). Throughput counts Reserve
// calls that were decided (granted or refused for lack of stock) per
// second; latency is that of every Reserve call. At the end the hammer
// checks per SKU that available + held + sold equals the stock: a run that
// oversold or lost units, or met an error outside the contract, is marked
// with "!!" and makes the command exit with status 1; -strict also exits
// with status 3 when a strategy cannot run.
//
// With -procs N the workers of each point run in N processes of their own,
// this command run again with the same flags, each with connections of its
// own (its share of -pg-conns), on the point's schema and key prefix,
// through the runner of the suite's multi-process hammer
// (strategytest.ProcsRun). Their results are merged into one line:
// throughput summed over the wall time from the first worker's start to
// the last one's end (their buyers start together), latency percentiles
// from their merged histograms, errors summed; the invariant is checked
// once, at the end, across all, from the store. Strategies that keep their
// stock in the process (memory) cannot run so and are listed.
//
// BENCHMARKS.md is a full run, with how to read it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Exit statuses.
const (
	exitFailed      = 1 // a run oversold, lost units, or broke the contract
	exitUsage       = 2
	exitUnavailable = 3 // -strict and a strategy could not run
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed flags.
type options struct {
	strategies, workloads, workers, stock string
	lines                                 int
	duration                              time.Duration
	ops, skus                             int
	zipfS                                 float64
	scarce, maxQty                        int64
	pgConns, mysqlConns, buckets          int
	limit                                 int64
	retention                             time.Duration
	mysqlOnly                             bool
	containers, smoke, strict, quiet      bool
	full                                  bool
	out, chart, cpuProfile                string
	redisCluster                          string
	seed                                  uint64
	procs                                 int
	gc                                    gcOptions
	history                               historyOptions // -history: see history.go
	layouts                               layoutOptions  // -layouts: see layout.go
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("invbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.strategies, "strategies", "all", "comma-separated strategies and baselines to run ("+strings.Join(targetNames(), ", ")+"); the baseline of each strategy's store is added")
	fs.StringVar(&o.workloads, "workloads", "hot,uniform", "comma-separated workloads: hot (one SKU), uniform (over -skus SKUs), zipf (skewed over -skus SKUs); -full: "+fullWorkloads)
	fs.StringVar(&o.workers, "workers", "8,64", "comma-separated worker counts to sweep; -full: "+fullWorkers)
	fs.IntVar(&o.lines, "lines", 1, "carts have 1..`L` lines (hot has one SKU, so one line)")
	fs.DurationVar(&o.duration, "duration", time.Second, "how long each point runs; -full: "+fullDuration.String())
	fs.IntVar(&o.ops, "ops", 0, "run each point for `N` carts (spread over the workers) instead of -duration")
	fs.StringVar(&o.stock, "stock", "plenty", "plenty (never runs out) or scarce (a sell-out of -scarce units that must end at exactly zero; hot only)")
	fs.Int64Var(&o.scarce, "scarce", 5000, "units of the SKU in a sell-out")
	fs.IntVar(&o.skus, "skus", 100, "SKUs of the uniform and zipf workloads")
	fs.Float64Var(&o.zipfS, "zipf", 1.1, "exponent `s` (> 1) of the zipf workload")
	fs.Int64Var(&o.maxQty, "max-qty", 3, "each line asks 1..`N` units")
	fs.Int64Var(&o.limit, "limit", 0, "give every SKU a limit per buyer of `N` units (inventory.StockOptions.Limit) and every cart one of "+strconv.Itoa(limitBuyers)+" buyers: the cost of the check, far from the limit; a strategy that cannot fails its run; the raw baselines ignore it")
	fs.DurationVar(&o.retention, "retention", 0, "give every strategy that takes one this retention of settled reservations (strategy.Config.Retention): redisstock's scripts then set the expiry of every record they settle; 0: keep them all")
	fs.IntVar(&o.buckets, "buckets", 0, "split every SKU into `K` stock buckets (inventory.StockOptions.Buckets): a strategy that cannot does not run; the raw baselines ignore it")
	fs.IntVar(&o.gc.flushers, "gc-flushers", 0, "groupcommit's flushes in flight at once per process (groupcommit.Options.Flushers); 0: its default")
	fs.DurationVar(&o.gc.maxWait, "gc-maxwait", 0, "how long a groupcommit leader waits for a full batch (groupcommit.Options.MaxWait); 0: its default")
	fs.IntVar(&o.pgConns, "pg-conns", 48, "size of the PostgreSQL connection pool every strategy shares")
	fs.IntVar(&o.mysqlConns, "mysql-conns", 48, "size of the MySQL connection pool every MySQL strategy shares")
	fs.BoolVar(&o.mysqlOnly, "mysql", false, "run the MySQL strategies (sqlcond-mysql, pessimistic-mysql) beside raw-mysql; same as -strategies sqlcond-mysql,pessimistic-mysql")
	fs.StringVar(&o.redisCluster, "redis-cluster", "", "comma-separated `ADDRS` (host:port) of a Redis Cluster to use instead of INVENTORY_REDIS_URL; redisstock then spreads its keys over 16 buckets (run it with -strategies redisstock: raw-redis keeps its keys in one slot, redislock's carts span slots)")
	fs.IntVar(&o.procs, "procs", 0, "run the workers of each point in `N` processes of their own (this command run again), on one schema and key prefix: one line per point with their results merged, the invariant checked once across all; -workers must be multiples of N; 0: in this process")
	fs.BoolVar(&o.containers, "containers", false, "start PostgreSQL and Redis through testcontainers-go (needs Docker) instead of using the URLs")
	fs.BoolVar(&o.full, "full", false, "the full sweep: workloads "+fullWorkloads+", workers "+fullWorkers+", "+fullDuration.String()+" per point (about five minutes); flags given beside it still apply")
	fs.BoolVar(&o.smoke, "smoke", false, "a short run for CI: per strategy, hot, uniform carts of 1..3 lines and a sell-out, 32 workers, 1s each")
	fs.BoolVar(&o.strict, "strict", false, "exit with status 3 when a strategy cannot run")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr (a bar on a terminal, else a line per point)")
	fs.StringVar(&o.out, "out", "", "write results.md, results.csv and results.json into `DIR`")
	fs.StringVar(&o.chart, "chart", "", "write a chart of throughput and p99 against workers to `FILE` (.png or .svg)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the buyers' choices (default random)")
	historyFlags(fs, &o.history)
	layoutFlags(fs, &o.layouts)
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to `FILE`; samples carry the label target=<strategy> (go tool pprof -tagfocus target=NAME)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: invbench [flags]\n\nRuns the inventory strategies side by side beside raw baselines; see BENCHMARKS.md.\nServers: %s (default %s), %s (default %s).\n\n",
			PostgresEnv, DefaultPostgresURL, RedisEnv, DefaultRedisURL)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.full {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["workloads"] {
			o.workloads = fullWorkloads
		}
		if !set["workers"] {
			o.workers = fullWorkers
		}
		if !set["duration"] {
			o.duration = fullDuration
		}
	}
	return o, nil
}

// The full sweep of -full, where the default run has hot,uniform; 8,64; 1s.
const (
	fullWorkloads = "hot,uniform,zipf"
	fullWorkers   = "1,8,32,64,128"
	fullDuration  = 2 * time.Second
)

// makePlan turns the options into a plan.
func makePlan(o *options) (plan, error) {
	p := plan{
		duration: o.duration, ops: o.ops, skus: o.skus, zipfS: o.zipfS,
		plenty: 1 << 40, scarce: o.scarce, maxQty: o.maxQty, seed: o.seed, buyers: limitBuyersOf(o.limit),
	}
	if p.seed == 0 {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		for _, c := range b {
			p.seed = p.seed<<8 | uint64(c)
		}
	}
	all := targetNames()
	if o.mysqlOnly && (o.strategies == "all" || o.strategies == "") {
		o.strategies = "sqlcond-mysql,pessimistic-mysql"
	}
	if o.strategies == "all" || o.strategies == "" {
		p.targets = all
	} else {
		want := split(o.strategies)
		for _, name := range want {
			if !slices.Contains(all, name) {
				return p, fmt.Errorf("unknown strategy %q (known: %s)", name, strings.Join(all, ", "))
			}
		}
		// Keep the known order, and add the baselines the ratios need.
		for _, t := range targets() {
			if slices.Contains(want, t.name) || slices.ContainsFunc(targets(), func(s target) bool {
				return s.vs == t.name && slices.Contains(want, s.name)
			}) {
				p.targets = append(p.targets, t.name)
			}
		}
	}
	switch {
	case o.duration <= 0 && o.ops <= 0:
		return p, errors.New("-duration or -ops must be positive")
	case o.ops < 0:
		return p, errors.New("-ops must not be negative")
	case o.skus < 2:
		return p, errors.New("-skus must be at least 2")
	case o.zipfS <= 1:
		return p, errors.New("-zipf must be above 1")
	case o.maxQty < 1:
		return p, errors.New("-max-qty must be positive")
	case o.limit < 0 || o.limit > inventory.MaxQty:
		return p, fmt.Errorf("-limit must be in 0..%d", int64(inventory.MaxQty))
	case o.lines < 1 || o.lines > o.skus:
		return p, fmt.Errorf("-lines must be in 1..%d (-skus)", o.skus)
	case o.scarce < 1:
		return p, errors.New("-scarce must be positive")
	case o.pgConns < 1:
		return p, errors.New("-pg-conns must be positive")
	case o.mysqlConns < 1:
		return p, errors.New("-mysql-conns must be positive")
	case o.procs < 0:
		return p, errors.New("-procs must not be negative")
	case o.gc.flushers < 0 || o.gc.maxWait < 0:
		return p, errors.New("-gc-flushers and -gc-maxwait must not be negative")
	}
	p.procs = o.procs
	if o.smoke {
		p.workers = []int{32}
		p.duration, p.ops = time.Second, 0
		p.scarce = min(p.scarce, 1000)
		p.cases = []benchCase{{Workload: hot, Lines: 1}, {Workload: uniform, Lines: 3}, {Workload: hot, Lines: 1, Scarce: true}}
		return p, nil
	}
	for _, w := range split(o.workers) {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > 4096 {
			return p, fmt.Errorf("-workers: %q is not a count in 1..4096", w)
		}
		if o.procs > 0 && n%o.procs != 0 {
			return p, fmt.Errorf("-workers: %d is not a multiple of -procs %d", n, o.procs)
		}
		p.workers = append(p.workers, n)
	}
	var scarce bool
	switch o.stock {
	case "plenty":
	case "scarce":
		scarce = true
	default:
		return p, fmt.Errorf("-stock must be plenty or scarce, not %q", o.stock)
	}
	for _, w := range split(o.workloads) {
		switch w {
		case hot:
			p.cases = append(p.cases, benchCase{Workload: w, Lines: 1, Scarce: scarce})
		case uniform, zipf:
			if scarce {
				return p, errors.New("-stock scarce sells out one SKU: use it with -workloads hot")
			}
			p.cases = append(p.cases, benchCase{Workload: w, Lines: o.lines})
		default:
			return p, fmt.Errorf("-workloads: unknown workload %q (hot, uniform, zipf)", w)
		}
	}
	if len(p.workers) == 0 || len(p.cases) == 0 {
		return p, errors.New("nothing to run: -workers and -workloads need at least one value")
	}
	return p, nil
}

func split(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "invbench:", err)
		return exitUsage
	}
	if o.history.fill > 0 {
		return runHistory(ctx, o.history, stdout, stderr)
	}
	if o.layouts.fill > 0 {
		return runLayouts(ctx, o.layouts, stdout, stderr)
	}
	p, err := makePlan(o)
	if err != nil {
		fmt.Fprintln(stderr, "invbench:", err)
		return exitUsage
	}
	p.args = args
	if wk, err := strategytest.ProcsWorkerOrders(); err != nil || wk != nil {
		if err != nil {
			fmt.Fprintln(stderr, "invbench:", err)
			return exitUsage
		}
		return runWorker(ctx, o, wk, stderr) // a worker process of -procs
	}
	if o.chart != "" {
		if ext := strings.ToLower(o.chart); !strings.HasSuffix(ext, ".png") && !strings.HasSuffix(ext, ".svg") {
			fmt.Fprintln(stderr, "invbench: -chart must name a .png or .svg file")
			return exitUsage
		}
	}
	p.runID = randomID()

	pgURL, redisURL := serverURLs()
	var containerErr error
	if o.containers {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		var stopContainers func()
		pgURL, redisURL, stopContainers, containerErr = startContainers(cctx)
		cancel()
		defer stopContainers()
	}
	var svc *services
	if containerErr != nil {
		// What needs no server still runs; the rest is listed with the reason.
		svc = &services{pgErr: containerErr, redisErr: containerErr, mysqlErr: containerErr}
	} else {
		var want []target
		for _, t := range targets() {
			if slices.Contains(p.targets, t.name) {
				want = append(want, t)
			}
		}
		pgConns, mysqlConns := o.pgConns, o.mysqlConns
		if o.procs > 0 {
			// With -procs this process only stocks and checks: a worker's
			// share, so that the run holds no more connections than without.
			pgConns, mysqlConns = max(pgConns/o.procs, 2), max(mysqlConns/o.procs, 2)
		}
		svc = connectFor(ctx, o, want, pgURL, redisURL, pgConns, mysqlConns, slices.Max(p.workers)+32)
	}
	p.pgURL, p.redisURL = pgURL, redisURL
	defer svc.close()
	svc.buckets, svc.limit, svc.gc, svc.retention = o.buckets, o.limit, o.gc, o.retention

	m := meta{
		Command: "go run ./cmd/invbench " + strings.Join(args, " "), Started: time.Now().UTC(),
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), SKUs: p.skus, Zipf: p.zipfS, MaxQty: p.maxQty, Scarce: p.scarce,
		Targets: p.targets, Procs: p.procs,
	}
	m.Command = strings.TrimSpace(m.Command)
	if svc.pg != nil {
		m.PoolConns = int32(o.pgConns)
	}
	m.Postgres, m.Redis = versions(ctx, svc)
	if p.ops > 0 {
		m.PerPoint = fmt.Sprintf("%d carts", p.ops)
	} else {
		m.PerPoint = p.duration.String()
	}

	var prog progress = noProgress{}
	if !o.quiet {
		prog = newLines(stderr)
		if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			prog = newBar(stderr)
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "invbench:", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "invbench: -cpuprofile:", err)
			return exitUsage
		}
		defer pprof.StopCPUProfile()
	}
	res, runErr := run(ctx, p, svc, targets(), prog)
	if res == nil {
		fmt.Fprintln(stderr, "invbench:", runErr)
		return exitUsage
	}
	writeTable(stdout, res, m)
	if o.out != "" {
		if err := writeOut(o.out, res, m); err != nil {
			fmt.Fprintln(stderr, "invbench: -out:", err)
			return exitFailed
		}
	}
	if o.chart != "" {
		if err := writeChart(o.chart, res, m); err != nil {
			fmt.Fprintln(stderr, "invbench: -chart:", err)
			return exitFailed
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintln(stderr, "invbench: interrupted:", runErr)
		return exitFailed
	case res.failed():
		return exitFailed
	case o.strict && len(res.Unavailable) > 0:
		fmt.Fprintln(stderr, "invbench: -strict: some strategies could not run")
		return exitUnavailable
	}
	return 0
}

// connectFor connects only to the servers that the targets ts need, with
// pools of pgConns and mysqlConns connections and a Redis client with room
// for redisConns.
func connectFor(ctx context.Context, o *options, ts []target, pgURL, redisURL string, pgConns, mysqlConns, redisConns int) *services {
	var needPG, needRedis, needMySQL bool
	for _, t := range ts {
		needPG = needPG || slices.Contains(t.services, strategy.Postgres)
		needRedis = needRedis || slices.Contains(t.services, strategy.Redis)
		needMySQL = needMySQL || slices.Contains(t.services, strategy.MySQL)
	}
	if !needPG {
		pgURL = ""
	}
	if !needRedis || o.redisCluster != "" {
		redisURL = ""
	}
	svc := connect(ctx, pgURL, redisURL, int32(pgConns), redisConns)
	if needRedis && o.redisCluster != "" {
		svc.redis, svc.redisErr = connectRedisCluster(ctx, split(o.redisCluster), redisConns)
	}
	if needMySQL {
		svc.mysql, svc.mysqlErr = connectMySQL(ctx, mysqlURL(), mysqlConns)
	}
	return svc
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redact hides the password of a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// limitBuyers is how many buyers the carts of a run with -limit name.
const limitBuyers = 10000

// limitBuyersOf returns the buyers of a run with the limit per buyer limit:
// limitBuyers, or 0 without a limit.
func limitBuyersOf(limit int64) int {
	if limit > 0 {
		return limitBuyers
	}
	return 0
}
