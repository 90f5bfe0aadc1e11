package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/groupcommit"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Names of the raw baselines.
const (
	rawPostgresName = "raw-postgres"
	rawRedisName    = "raw-redis"
	rawMySQLName    = "raw-mysql"
)

// Workload names.
const (
	hot     = "hot"
	uniform = "uniform"
	zipf    = "zipf"
)

// services are the servers of a run. A nil client comes with the reason it
// could not be had.
type services struct {
	pg        *pgxpool.Pool
	pgErr     error
	redis     redis.UniversalClient
	redisErr  error
	mysql     *sql.DB
	mysqlErr  error
	buckets   int           // -buckets: the stock buckets of every SKU (inventory.StockOptions)
	limit     int64         // -limit: the limit per buyer of every SKU (inventory.StockOptions)
	retention time.Duration // -retention: strategy.Config.Retention
	home      int           // groupcommit's home bucket (strategy.Config.Home); 0: one at random
	gc        gcOptions
}

// gcOptions are groupcommit's batching knobs from -gc-flushers and
// -gc-maxwait; zero keeps groupcommit's default.
type gcOptions struct {
	flushers int
	maxWait  time.Duration
}

// missing returns why one of the services in need cannot be used, or nil.
func (s *services) missing(need []strategy.Service) error {
	for _, svc := range need {
		switch {
		case svc == strategy.Postgres && s.pg == nil:
			return fmt.Errorf("PostgreSQL unavailable: %v", cmpErr(s.pgErr, "not configured"))
		case svc == strategy.Redis && s.redis == nil:
			return fmt.Errorf("Redis unavailable: %v", cmpErr(s.redisErr, "not configured"))
		case svc == strategy.MySQL && s.mysql == nil:
			return fmt.Errorf("MySQL unavailable: %v", cmpErr(s.mysqlErr, "not configured"))
		}
	}
	return nil
}

func cmpErr(err error, def string) string {
	if err == nil {
		return def
	}
	return err.Error()
}

// opened is a strategy ready for one measurement.
type opened struct {
	s     inventory.Strategy
	newID func(ctx context.Context) (string, error)
	close func(ctx context.Context) error
}

// target is something invbench measures: a registered strategy or a raw
// baseline.
type target struct {
	name     string
	summary  string
	baseline bool
	services []strategy.Service
	// vs names the baseline whose throughput this target's is divided by:
	// the baseline of the service that holds its stock.
	vs string
	// open opens the target on schema and prefix; with drop, its close
	// removes them (a worker process of -procs leaves them to its parent).
	open func(ctx context.Context, svc *services, schema, prefix string, drop bool) (*opened, error)
}

// targets returns every target invbench knows: the raw baselines, then the
// registered strategies.
func targets() []target {
	ts := []target{
		{
			name: rawPostgresName, summary: "bare autocommit conditional UPDATE through pgx",
			baseline: true, services: []strategy.Service{strategy.Postgres},
			open: func(ctx context.Context, svc *services, schema, _ string, dropIt bool) (*opened, error) {
				r, err := openRawPostgres(ctx, svc.pg, schema)
				drop := func(ctx context.Context) error {
					if !dropIt {
						return nil
					}
					_, err := svc.pg.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
					return err
				}
				if err != nil {
					_ = drop(context.WithoutCancel(ctx))
					return nil, err
				}
				return &opened{s: r, newID: strategy.NewIDFunc(r), close: drop}, nil
			},
		},
		{
			name: rawRedisName, summary: "bare Lua check-and-decrement",
			baseline: true, services: []strategy.Service{strategy.Redis},
			open: func(_ context.Context, svc *services, _, prefix string, drop bool) (*opened, error) {
				r := openRawRedis(svc.redis, prefix)
				return &opened{s: r, newID: strategy.NewIDFunc(r), close: func(ctx context.Context) error {
					if !drop {
						return nil
					}
					return strategy.DeleteKeys(ctx, svc.redis, prefix)
				}}, nil
			},
		},
		{
			name: rawMySQLName, summary: "bare autocommit conditional UPDATE through go-sql-driver/mysql",
			baseline: true, services: []strategy.Service{strategy.MySQL},
			open: func(ctx context.Context, svc *services, schema, _ string, dropIt bool) (*opened, error) {
				r, err := openRawMySQL(ctx, svc.mysql, schema)
				drop := func(ctx context.Context) error {
					if !dropIt {
						return nil
					}
					_, err := svc.mysql.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteMySQL(schema))
					return err
				}
				if err != nil {
					_ = drop(context.WithoutCancel(ctx))
					return nil, err
				}
				return &opened{s: r, newID: strategy.NewIDFunc(r), close: func(ctx context.Context) error {
					r.ops.(*rawMySQL).close()
					return drop(ctx)
				}}, nil
			},
		},
	}
	for _, info := range strategy.All() {
		t := target{name: info.Name, summary: info.Summary, services: info.Services}
		if len(info.Services) > 0 {
			switch info.Services[0] {
			case strategy.Postgres:
				t.vs = rawPostgresName
			case strategy.Redis:
				t.vs = rawRedisName
			case strategy.MySQL:
				t.vs = rawMySQLName
			}
		}
		name := info.Name
		t.open = func(ctx context.Context, svc *services, schema, prefix string, drop bool) (*opened, error) {
			s, closeFn, err := strategy.Open(ctx, name, &strategy.Config{
				Postgres: svc.pg, Redis: svc.redis, MySQL: svc.mysql, Schema: schema, KeyPrefix: prefix, Drop: drop,
				StockOptions: inventory.StockOptions{Buckets: svc.buckets}, Home: svc.home, Retention: svc.retention,
				Logger: slog.Default(), // the writer's lag and drain time, on stderr
			})
			if err != nil {
				return nil, err
			}
			if name == "groupcommit" && svc.gc != (gcOptions{}) {
				// Open made the schema; a Reserver of its own on it carries the knobs.
				s, err = groupcommit.New(svc.pg, &groupcommit.Options{Schema: schema, SKUDefaults: inventory.StockOptions{Buckets: svc.buckets}, Home: svc.home,
					Flushers: svc.gc.flushers, MaxWait: svc.gc.maxWait})
				if err != nil {
					_ = closeFn(context.WithoutCancel(ctx))
					return nil, err
				}
			}
			if svc.limit > 0 {
				s = &limited{Strategy: s, opts: inventory.StockOptions{Buckets: svc.buckets, Limit: svc.limit}}
			}
			return &opened{s: s, newID: strategy.NewIDFunc(s), close: closeFn}, nil
		}
		ts = append(ts, t)
	}
	return append(ts, extraTargets...)
}

// extraTargets are targets the command's tests add (a deliberately wrong
// strategy), in the tests' parent process and in its worker processes.
var extraTargets []target

func targetNames() []string {
	var names []string
	for _, t := range targets() {
		names = append(names, t.name)
	}
	return names
}

// benchCase is one workload shape: which SKUs carts pick, how many lines
// they have, and whether the stock is plenty or sells out.
type benchCase struct {
	Workload string
	Lines    int
	Scarce   bool
}

func (c benchCase) String() string {
	s := c.Workload
	if c.Lines > 1 {
		s += fmt.Sprintf(" carts 1..%d", c.Lines)
	}
	if c.Scarce {
		s += " sell-out"
	}
	return s
}

// plan is what a run measures.
type plan struct {
	targets  []string // in order
	cases    []benchCase
	workers  []int
	duration time.Duration // per point, when ops is 0
	ops      int           // Reserve calls per point (spread over the workers)
	skus     int           // SKUs of uniform and zipf
	zipfS    float64       // exponent of zipf
	plenty   int64         // stock per SKU when not scarce
	scarce   int64         // stock of the SKU of a sell-out
	maxQty   int64         // each line asks 1..maxQty units
	buyers   int           // with -limit, carts name one of this many buyers (HammerConfig.Buyers)
	seed     uint64
	runID    string   // names schemas and key prefixes
	procs    int      // worker processes per point; 0: the workers run in this process
	args     []string // the command's flags, which the worker processes are run with
	pgURL    string   // the servers the worker processes use
	redisURL string
}

// Result is the measurement of one target on one case at one worker count.
type Result struct {
	Target   string `json:"target"`
	Baseline bool   `json:"baseline"`
	Workload string `json:"workload"`
	Lines    int    `json:"max_lines"`
	Stock    string `json:"stock"` // "plenty" or "sell-out"
	Workers  int    `json:"workers"`

	Seconds    float64 `json:"seconds"`
	Reserves   int64   `json:"reserve_calls"` // every Reserve call, retries included
	Decided    int64   `json:"decided"`       // Reserve calls that granted or refused
	Throughput float64 `json:"throughput"`    // decided per second
	Vs         string  `json:"vs,omitempty"`  // the baseline Ratio is against
	Ratio      float64 `json:"ratio,omitempty"`

	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`

	GrantedUnits int64            `json:"granted_units"`
	Refused      int64            `json:"refused"`
	Errors       map[string]int64 `json:"errors,omitempty"` // by kind, refusals excluded

	Oversold     int64    `json:"oversold"`
	Lost         int64    `json:"lost"`
	NegativeSeen bool     `json:"negative_seen"`
	EndAvailable int64    `json:"end_available"` // of a sell-out's SKU; must be 0
	Unexpected   []string `json:"unexpected,omitempty"`
	OK           bool     `json:"ok"`
	Problem      string   `json:"problem,omitempty"`

	// Reported by strategies that batch calls (inventory.MetricsReporter
	// with batch.size.count and batch.size.sum), over the run.
	MeanBatch float64 `json:"mean_batch,omitempty"`
	Flushes   float64 `json:"flushes_per_s,omitempty"`
}

// batchCounts reads the flushes and the calls they carried from s, when it
// reports them.
func batchCounts(s any) (flushes, calls float64, ok bool) {
	mr, ok := s.(inventory.MetricsReporter)
	if !ok {
		return 0, 0, false
	}
	var seen int
	for _, m := range mr.Metrics() {
		switch m.Name {
		case "batch.size.count":
			flushes, seen = m.Value, seen+1
		case "batch.size.sum":
			calls, seen = m.Value, seen+1
		}
	}
	return flushes, calls, seen == 2
}

// failed reports whether the run broke the contract or could not finish.
func (r *Result) failed() bool { return !r.OK }

// check is the verdict column: "ok" or what went wrong, loudly.
func (r *Result) check() string {
	if r.OK {
		return "ok"
	}
	var parts []string
	if r.Oversold > 0 {
		parts = append(parts, fmt.Sprintf("OVERSOLD %d", r.Oversold))
	}
	if r.Lost > 0 {
		parts = append(parts, fmt.Sprintf("LOST %d", r.Lost))
	}
	if r.NegativeSeen {
		parts = append(parts, "NEGATIVE")
	}
	if r.Stock == "sell-out" && r.EndAvailable != 0 {
		parts = append(parts, fmt.Sprintf("END AVAILABLE %d", r.EndAvailable))
	}
	if len(r.Unexpected) > 0 {
		parts = append(parts, fmt.Sprintf("%d UNEXPECTED ERRORS", len(r.Unexpected)))
	}
	if len(parts) == 0 {
		parts = append(parts, "FAILED")
	}
	return "!! " + strings.Join(parts, ", ")
}

// Unavailable is a target that could not run, with the reason.
type Unavailable struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// outcome is everything a run measured.
type outcome struct {
	Results     []*Result     `json:"results"`
	Unavailable []Unavailable `json:"unavailable,omitempty"`
}

func (o *outcome) failed() bool {
	return slices.ContainsFunc(o.Results, (*Result).failed)
}

// progress hears about every point of a run.
type progress interface {
	start(total int)
	step(desc string) // a point begins
	done(r *Result)   // it ended
	finish()
}

type noProgress struct{}

func (noProgress) start(int)    {}
func (noProgress) step(string)  {}
func (noProgress) done(*Result) {}
func (noProgress) finish()      {}

// run measures every available target of p, out of all, on every case and
// worker count. Points are ordered case, workers, target, so that the
// targets of one row run close together in time and under the same
// conditions.
func run(ctx context.Context, p plan, svc *services, all []target, prog progress) (*outcome, error) {
	out := &outcome{}
	var runnable []target
	for _, name := range p.targets {
		i := slices.IndexFunc(all, func(t target) bool { return t.name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown strategy %q", name)
		}
		if err := svc.missing(all[i].services); err != nil {
			out.Unavailable = append(out.Unavailable, Unavailable{Target: name, Reason: err.Error()})
			continue
		}
		if p.procs > 0 && len(all[i].services) == 0 {
			out.Unavailable = append(out.Unavailable, Unavailable{Target: name, Reason: "keeps its stock in the process: -procs needs a store the processes share"})
			continue
		}
		runnable = append(runnable, all[i])
	}
	prog.start(len(p.cases) * len(p.workers) * len(runnable))
	defer prog.finish()
	n := 0
	for _, c := range p.cases {
		for _, w := range p.workers {
			for _, t := range runnable {
				if err := ctx.Err(); err != nil {
					return out, err
				}
				prog.step(fmt.Sprintf("%s %s w=%d", t.name, c, w))
				n++
				ns := fmt.Sprintf("%s_%d", p.runID, n)
				var r *Result
				pprof.Do(ctx, pprof.Labels("target", t.name), func(ctx context.Context) {
					r = measure(ctx, p, svc, t, c, w, ns)
				})
				prog.done(r)
				out.Results = append(out.Results, r)
			}
		}
	}
	ratios(out.Results)
	return out, ctx.Err()
}

// ratios fills Ratio of every result whose target has a baseline measured on
// the same point.
func ratios(rs []*Result) {
	type key struct {
		target, workload, stock string
		lines, workers          int
	}
	base := map[key]*Result{}
	for _, r := range rs {
		if r.Baseline && r.OK {
			base[key{r.Target, r.Workload, r.Stock, r.Lines, r.Workers}] = r
		}
	}
	for _, r := range rs {
		if r.Vs == "" {
			continue
		}
		if b := base[key{r.Vs, r.Workload, r.Stock, r.Lines, r.Workers}]; b != nil && b.Throughput > 0 {
			r.Ratio = r.Throughput / b.Throughput
		}
	}
}

// measure runs the hammer once: t on case c with w workers, in this
// process or, with p.procs, in worker processes (measureProcs).
func measure(ctx context.Context, p plan, svc *services, t target, c benchCase, w int, ns string) *Result {
	r := &Result{Target: t.name, Baseline: t.baseline, Workload: c.Workload, Lines: c.Lines, Stock: "plenty", Workers: w, Vs: t.vs}
	if c.Scarce {
		r.Stock = "sell-out"
	}
	fail := func(err error) *Result {
		r.Problem = err.Error()
		r.OK = false
		return r
	}
	schema, prefix := storeNames(ns)
	o, err := t.open(ctx, svc, schema, prefix, true)
	if err != nil {
		return fail(fmt.Errorf("open: %w", err))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := o.close(cctx); err != nil && r.Problem == "" {
			r.Problem = "clean up: " + err.Error()
		}
	}()
	if p.procs > 0 {
		if err := measureProcs(ctx, p, t, o, c, w, ns, r); err != nil {
			return fail(err)
		}
		return r
	}

	ob := newObserver()
	cfg := hammerConfig(p, c, w)
	cfg.Strategy, cfg.NewID, cfg.Observe = o.s, o.newID, ob.observe
	flushes0, calls0, batches := batchCounts(o.s)
	rep, err := strategytest.Hammer(ctx, cfg)
	if flushes1, calls1, _ := batchCounts(o.s); batches && flushes1 > flushes0 && rep != nil && rep.Elapsed > 0 {
		r.MeanBatch = (calls1 - calls0) / (flushes1 - flushes0)
		r.Flushes = (flushes1 - flushes0) / rep.Elapsed.Seconds()
	}
	if rep == nil {
		return fail(fmt.Errorf("hammer: %w", err))
	}
	fill(r, rep, ob.rec.snapshot(), ob.decided.Load(), ob.refused.Load(), c)
	if err != nil {
		return fail(fmt.Errorf("hammer: %w", err))
	}
	return r
}

// storeNames returns the schema and the key prefix of the point named ns.
func storeNames(ns string) (schema, prefix string) {
	return "invbench_" + ns, "invbench:" + ns + ":"
}

// observer counts and times the Reserve calls of a run.
type observer struct {
	rec              *recorder
	decided, refused atomic.Int64
}

func newObserver() *observer { return &observer{rec: newRecorder()} }

// observe is the hammer's Observe.
func (ob *observer) observe(op string, d time.Duration, err error) {
	if op != "reserve" {
		return
	}
	ob.rec.record(d)
	switch {
	case err == nil:
		ob.decided.Add(1)
	case errors.Is(err, inventory.ErrInsufficientStock):
		ob.decided.Add(1)
		ob.refused.Add(1)
	}
}

// hammerConfig returns the hammer run of case c with w workers, without
// the strategy and its hooks.
func hammerConfig(p plan, c benchCase, w int) strategytest.HammerConfig {
	cfg := strategytest.HammerConfig{
		// Background work as a shop would do it, so that it does not weigh
		// on the measurement: a sweep every 100ms, a stock read per ms.
		SweepEvery:  100 * time.Millisecond,
		SampleEvery: time.Millisecond,
		Workers:     w,
		SKUs:        1,
		MaxQty:      p.maxQty,
		MaxLines:    c.Lines,
		FixedStock:  true,
		Seed:        p.seed,
		Buyers:      p.buyers,
	}
	if c.Workload != hot {
		cfg.SKUs = p.skus
	}
	if c.Workload == zipf {
		cfg.Zipf = p.zipfS
	}
	if c.Scarce {
		cfg.SellOut = true
		cfg.Stock = p.scarce
	} else {
		cfg.Stock = p.plenty
		if p.ops > 0 {
			cfg.OpsPerWorker = max(1, (p.ops+w-1)/w)
		} else {
			cfg.Duration = p.duration
		}
	}
	return cfg
}

// fill writes what the hammer's report rep, the latencies h and the counts
// of decided and refused Reserve calls say into r.
func fill(r *Result, rep *strategytest.Report, h *histogram, decided, refused int64, c benchCase) {
	r.Seconds = rep.Elapsed.Seconds()
	r.Reserves = rep.Reserves
	r.Decided = decided
	if r.Seconds > 0 {
		r.Throughput = float64(r.Decided) / r.Seconds
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.P50, r.P95, r.P99 = ms(h.quantile(0.50)), ms(h.quantile(0.95)), ms(h.quantile(0.99))
	r.Max, r.Mean = ms(time.Duration(h.max)), ms(h.mean())
	r.GrantedUnits = rep.Granted
	r.Refused = refused
	for kind, n := range rep.Errors {
		if kind == "insufficient" {
			continue
		}
		if r.Errors == nil {
			r.Errors = map[string]int64{}
		}
		r.Errors[kind] = n
	}
	r.Oversold, r.Lost, r.NegativeSeen = rep.Oversold, rep.Lost, rep.NegativeSeen
	for _, e := range rep.Unexpected {
		r.Unexpected = append(r.Unexpected, e.Error())
	}
	r.OK = rep.OK()
	if c.Scarce && len(rep.SKUs) > 0 {
		r.EndAvailable = rep.SKUs[0].Available
		if r.EndAvailable != 0 {
			r.OK = false
		}
	}
}

// errorKinds writes errs as kind=count pairs, sorted by kind.
func errorKinds(errs map[string]int64) string {
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, errs[k])
	}
	return b.String()
}

// limited is a strategy whose SetStock gives every SKU the settings opts
// (-limit: a limit per buyer), through inventory.SetStockWith: a strategy
// that does not offer them fails its first SetStock with
// inventory.ErrUnsupported, and its run with it.
type limited struct {
	inventory.Strategy
	opts inventory.StockOptions
}

// SetStock sets the stock of sku with l's settings.
func (l *limited) SetStock(ctx context.Context, sku string, available int64) error {
	return inventory.SetStockWith(ctx, l.Strategy, sku, available, l.opts)
}
