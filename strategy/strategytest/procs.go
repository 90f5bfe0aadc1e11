package strategytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
)

// procsWorkerEnv carries a worker's orders (a JSON workerSpec) to the test
// binary run again as a worker of Procs.
const procsWorkerEnv = "INVENTORY_STRATEGYTEST_WORKER"

// ProcsConfig describes a hammer run in several processes on one store.
type ProcsConfig struct {
	// Procs is the number of worker processes. Default: 4.
	Procs int

	// Hammer is the run each worker makes, in a process of its own. Its
	// Strategy, NewID and Advance are ignored: each worker takes them from
	// Open, and every process reads the wall clock. Its SKUs are stocked
	// once, before the workers start. Keep it small: Workers buyers in each
	// of Procs processes. Default: as for Hammer, with 8 buyers.
	Hammer HammerConfig

	// Setup makes the store the processes share (a schema, a key prefix) and
	// returns its name, ns. It runs once, in the test's own process, and
	// registers the store's removal with t.Cleanup. Nil: ns is "".
	Setup func(ctx context.Context, t *testing.T) (ns string)
	// Open returns a harness on the store ns, with connections (a pool, a
	// client) of its own. It runs in the test's own process, which stocks
	// the SKUs and checks the end state, and in every worker. Its Advance
	// must be nil: processes cannot share a manual clock. Required.
	Open func(ctx context.Context, t *testing.T, ns string) *Harness

	// Kill sends SIGKILL to one worker, chosen at random, once it has made a
	// random number of its carts (between a tenth and a half of them). The
	// stock is kept still (Hammer.FixedStock), since the killed worker
	// cannot report what it added. When the others are done, Procs waits
	// for Hammer.HoldTTL to pass and sweeps: every hold must be gone, and
	// the units of the killed worker's holds back in stock, once.
	Kill bool

	// Timeout bounds the whole run. Default: 3m.
	Timeout time.Duration
}

// ProcsReport is what a run of Procs found: the workers' reports merged,
// with the end state read from the store once every worker is done.
type ProcsReport struct {
	Report
	// Workers holds each worker's own report (nil for the killed one).
	// Their SKUs are empty: the end state is the merged report's.
	Workers []*Report
	// Killed is the index of the worker killed, or -1.
	Killed int
	// KilledAfter is the number of carts the killed worker had begun.
	KilledAfter int
	// HeldAtKill is the number of units the killed worker's reservations
	// held just after it died.
	HeldAtKill int64
	// Expired is the number of holds the final sweep of a Kill run expired.
	Expired int
	// HeldAfterSweep is the number of units still held after that sweep:
	// zero when every hold was returned.
	HeldAfterSweep int64
	// Strategy names the strategy the run opened, by the package of its
	// type ("sqlcond").
	Strategy string
}

// OK reports whether the run found nothing wrong: the merged report is OK
// and, after a kill, the sweep left nothing held.
func (r *ProcsReport) OK() bool {
	return r.Report.OK() && r.HeldAfterSweep == 0
}

// String summarises the report on one line.
func (r *ProcsReport) String() string {
	s := fmt.Sprintf("procs=%d %s", len(r.Workers), r.Report.String())
	if r.Killed >= 0 {
		s += fmt.Sprintf(" killed=worker-%d after=%d carts held-at-kill=%d expired-by-sweep=%d held-after-sweep=%d",
			r.Killed, r.KilledAfter, r.HeldAtKill, r.Expired, r.HeldAfterSweep)
	}
	return s
}

// workerSpec is a worker's orders.
type workerSpec struct {
	Tag    string // what the worker runs: ProcsRun.Tag
	NS     string
	Index  int
	Seed   uint64
	Hammer HammerConfig // the run, defaults applied
	IDs    string       // file the worker appends every request ID to, one a line, before using it
	Ready  string       // file the worker makes once its store is open
	Result string       // file the worker writes its workerResult to
}

// workerResult is a worker's report, as JSON.
type workerResult struct {
	Reserves, Granted, Refused, Released int64
	Errors                               map[string]int64
	Unexpected                           []string
	NegativeSeen                         bool
	Added                                []int64 // per SKU, units the worker's churn added
	Elapsed                              time.Duration
	Start, End                           time.Time       // wall clock, when its buyers began and ended
	Data                                 json.RawMessage `json:",omitempty"` // WorkerOptions.Data
	Err                                  string          // the hammer could not run
}

// RunProcs runs Procs and fails t for everything wrong in its report: an
// error outside the contract in any worker, units oversold or lost across
// all of them, with SellOut anything but the stock granted, and after a
// kill a hold left unreturned.
//
// In a worker process, RunProcs runs that worker's share and ends the test
// there (it is skipped), so what follows the call runs only in the test's
// own process.
func RunProcs(t *testing.T, cfg ProcsConfig) *ProcsReport {
	t.Helper()
	rep, err := Procs(t, cfg)
	require.NoError(t, err)
	t.Log(rep)
	assertReport(t, &rep.Report)
	if cfg.Hammer.SellOut {
		assert.Equal(t, cfg.Hammer.Stock*int64(max(cfg.Hammer.SKUs, 1)), rep.Granted, "units granted by all processes while demand exceeds supply")
	}
	if cfg.Kill {
		assert.GreaterOrEqual(t, rep.Killed, 0, "a worker was killed mid-run")
		assert.Zero(t, rep.HeldAfterSweep, "units still held after the TTL and a sweep")
		faultlog.Log(t, faultlog.Cell{Strategy: rep.Strategy, Fault: faultlog.ProcessKilled,
			Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost + rep.HeldAfterSweep})
	}
	return rep
}

// Procs runs cfg.Hammer in cfg.Procs processes at once, on one store, and
// checks the end state across all of them, through a ProcsRun whose
// workers are the test binary run again, with the test t alone selected
// (-test.run). Each worker opens the store with cfg.Open and runs its share
// (ProcsWorker.Run); the test's process merges the reports and accounts
// every request ID any worker used.
//
// Procs returns an error only when the run could not be set up or checked
// (a worker that could not start, failed its test or wrote no report);
// what the strategy did wrong is in the report.
//
// The test that calls Procs must reach the call the same way in every
// process: the workers run the same test function and find their orders
// in the call. In a worker process, Procs does the worker's share and ends
// the test with t.SkipNow.
func Procs(t *testing.T, cfg ProcsConfig) (*ProcsReport, error) {
	t.Helper()
	if cfg.Open == nil {
		return nil, errors.New("strategytest: ProcsConfig.Open is nil")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), cfg.Timeout)
	defer cancel()

	w, err := ProcsWorkerOrders()
	if err != nil {
		return nil, err
	}
	if w != nil {
		if w.Tag() != t.Name() {
			t.Skipf("strategytest: this process is a worker of %s", w.Tag())
		}
		require.NoError(t, w.Run(ctx, cfg.Open(ctx, t, w.NS()), nil))
		t.SkipNow() // never returns
	}

	ns := ""
	if cfg.Setup != nil {
		ns = cfg.Setup(ctx, t)
	}
	h := cfg.Open(ctx, t, ns)
	if h == nil {
		return nil, errors.New("strategytest: ProcsConfig.Open returned no strategy")
	}
	run := &ProcsRun{
		Procs: cfg.Procs, Hammer: cfg.Hammer, Kill: cfg.Kill, Strategy: h.Strategy, NS: ns, Tag: t.Name(), Dir: t.TempDir(),
		Command: func(ctx context.Context) *exec.Cmd {
			return exec.CommandContext(ctx, os.Args[0], "-test.run="+testPattern(t.Name()), "-test.count=1", "-test.v")
		},
		Logf: t.Logf,
	}
	return run.Run(ctx)
}

// ProcsRun is a hammer run in several processes at once on one store, the
// core of Procs for programs other than tests (the benchmark command runs
// it as well): the parent stocks the SKUs, starts the workers through
// Command, lets their buyers go together once every worker has opened the
// store, merges their reports and reads the end state once, across all.
// Every worker runs ProcsWorker.Run in a process of its own; a program
// finds its orders with ProcsWorkerOrders.
type ProcsRun struct {
	// Procs is the number of worker processes. Default: 4.
	Procs int
	// Hammer is the run each worker makes. Its Strategy, NewID, Advance
	// and Observe are ignored: each worker has its own (ProcsWorker.Run),
	// and every process reads the wall clock. Its SKUs are stocked once,
	// by Run, before the workers start. Workers is the number of buyers in
	// each process. Default: as for Hammer, with 8 buyers.
	Hammer HammerConfig
	// Kill is as ProcsConfig.Kill.
	Kill bool

	// Strategy is this process's own handle on the store the workers
	// share: it stocks the SKUs, reads the end state and, after a kill,
	// sweeps. Required.
	Strategy inventory.Strategy
	// NS names the store; every worker is told it (ProcsWorker.NS).
	NS string
	// Tag is told to every worker (ProcsWorker.Tag): what it is to run,
	// for a program that can run several things (Procs: the test's name).
	Tag string
	// Command returns the command that runs one worker: this program again,
	// with what leads it to ProcsWorker.Run. Run adds the worker's orders to
	// its environment (to cmd.Env, or to this process's environment when
	// cmd.Env is nil) and takes its standard input and output. Required.
	Command func(ctx context.Context) *exec.Cmd
	// Dir is an existing directory for the workers' files (their request
	// IDs and reports). Required.
	Dir string

	// Collect, if set, is handed each worker's data (what its
	// WorkerOptions.Data returned, as JSON; nil without it) as its report is
	// read, once every worker has ended and before the end state is read.
	// An error from it ends the run with that error.
	Collect func(worker int, data json.RawMessage) error
	// Logf, if set, is told what the run did: workers started, killed.
	Logf func(format string, args ...any)
}

// ProcsWorker is the orders of a process started as a worker of a
// ProcsRun.
type ProcsWorker struct{ spec workerSpec }

// ProcsWorkerOrders returns this process's orders when a ProcsRun started
// it as a worker, and nil when none did. The error says the orders are
// there but cannot be read.
func ProcsWorkerOrders() (*ProcsWorker, error) {
	raw := os.Getenv(procsWorkerEnv)
	if raw == "" {
		return nil, nil
	}
	w := &ProcsWorker{}
	if err := json.Unmarshal([]byte(raw), &w.spec); err != nil {
		return nil, fmt.Errorf("strategytest: bad %s: %w", procsWorkerEnv, err)
	}
	return w, nil
}

// Tag returns the ProcsRun's Tag: what the worker is to run.
func (w *ProcsWorker) Tag() string { return w.spec.Tag }

// NS returns the name of the store the worker opens (ProcsRun.NS).
func (w *ProcsWorker) NS() string { return w.spec.NS }

// Index returns the worker's number, from 0.
func (w *ProcsWorker) Index() int { return w.spec.Index }

// Workers returns the number of buyers the worker runs.
func (w *ProcsWorker) Workers() int { return w.spec.Hammer.Workers }

// WorkerOptions are what a worker adds to its share of a ProcsRun.
type WorkerOptions struct {
	// Observe, if set, is the hammer's Observe in this worker.
	Observe func(op string, latency time.Duration, err error)
	// Data, if set, is called once the worker's buyers are done; what it
	// returns goes to the parent's ProcsRun.Collect as JSON.
	Data func() (any, error)
}

// Run does the worker's share of the ProcsRun on h, opened on the store NS
// with connections of this process's own, and writes the report the
// parent reads: it tells the parent it is ready, waits until every worker
// is, runs its buyers and reports what they saw. A nil h (or one with no
// strategy) is reported to the parent as a worker that could not run. The
// error is one of writing the report.
func (w *ProcsWorker) Run(ctx context.Context, h *Harness, opt *WorkerOptions) error {
	if opt == nil {
		opt = &WorkerOptions{}
	}
	res := workerResult{}
	if h == nil || h.Strategy == nil {
		res.Err = "Open returned no strategy"
		return w.write(res)
	}
	if err := w.share(ctx, h, opt, &res); err != nil {
		res.Err = err.Error()
	}
	return w.write(res)
}

// Fail reports to the parent that the worker could not run, with err.
func (w *ProcsWorker) Fail(err error) error {
	return w.write(workerResult{Err: err.Error()})
}

func (w *ProcsWorker) write(res workerResult) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	tmp := w.spec.Result + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, w.spec.Result) // whole, or not there
}

// share runs the worker's buyers into res.
func (w *ProcsWorker) share(ctx context.Context, h *Harness, opt *WorkerOptions, res *workerResult) error {
	f, err := os.OpenFile(w.spec.IDs, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.WriteFile(w.spec.Ready, nil, 0o644); err != nil {
		return err
	}
	if err := awaitGo(ctx, os.Stdin); err != nil {
		return err
	}
	var mu sync.Mutex
	hc := w.spec.Hammer
	hc.Strategy, hc.NewID, hc.Advance, hc.Observe, hc.Seed, hc.stocked = h.Strategy, h.NewID, nil, opt.Observe, w.spec.Seed, true
	hc.onID = func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := f.WriteString(id + "\n") // unbuffered: it outlives a SIGKILL
		return err
	}
	res.Start = time.Now()
	rep, err := Hammer(ctx, hc)
	res.End = time.Now()
	if err != nil {
		return err
	}
	res.Reserves, res.Granted, res.Refused, res.Released = rep.Reserves, rep.Granted, rep.Refused, rep.Released
	res.Errors, res.NegativeSeen, res.Elapsed = rep.Errors, rep.NegativeSeen, rep.Elapsed
	for _, e := range rep.Unexpected {
		res.Unexpected = append(res.Unexpected, e.Error())
	}
	res.Added = rep.added
	if opt.Data != nil {
		d, err := opt.Data()
		if err != nil {
			return fmt.Errorf("worker data: %w", err)
		}
		if res.Data, err = json.Marshal(d); err != nil {
			return fmt.Errorf("worker data: %w", err)
		}
	}
	return nil
}

// goWord is what the parent writes to every worker's standard input once
// all of them are ready.
const goWord = "go"

// awaitGo waits for the parent's word on in.
func awaitGo(ctx context.Context, in io.Reader) error {
	got := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		switch {
		case strings.TrimSpace(line) == goWord:
			got <- nil
		case err != nil:
			got <- fmt.Errorf("strategytest: no word to start from the parent: %w", err)
		default:
			got <- fmt.Errorf("strategytest: parent said %q, not %q", line, goWord)
		}
	}()
	select {
	case err := <-got:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// worker is one worker process as the parent sees it.
type worker struct {
	spec  workerSpec
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer // stdout and stderr
	err   error        // from Wait
	done  chan struct{}
}

func (w *worker) tail() string {
	s := w.out.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// testPattern returns the -test.run pattern that selects the test named
// name alone.
func testPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// defaults fills in r's defaults and checks what cannot be run.
func (r *ProcsRun) defaults() error {
	switch {
	case r.Strategy == nil:
		return errors.New("strategytest: ProcsRun.Strategy is nil")
	case r.Command == nil:
		return errors.New("strategytest: ProcsRun.Command is nil")
	case r.Dir == "":
		return errors.New("strategytest: ProcsRun.Dir is empty")
	}
	if r.Procs <= 0 {
		r.Procs = 4
	}
	hc := &r.Hammer
	if hc.Workers <= 0 {
		hc.Workers = 8
	}
	if hc.SKUs <= 0 {
		hc.SKUs = 1
	}
	if hc.Stock <= 0 {
		hc.Stock = 500
	}
	if hc.HoldTTL <= 0 {
		hc.HoldTTL = time.Hour
	}
	if r.Kill {
		if hc.SellOut {
			return errors.New("strategytest: Kill with Hammer.SellOut: the killed worker's holds would never settle")
		}
		if hc.HoldTTL > time.Minute {
			return errors.New("strategytest: Kill needs a Hammer.HoldTTL of a minute or less: the run waits for it")
		}
		hc.FixedStock = true
	}
	hc.Strategy, hc.NewID, hc.Advance, hc.Observe = nil, nil, nil, nil
	if hc.Seed == 0 {
		hc.Seed = rand.Uint64()
	}
	return nil
}

func (r *ProcsRun) logf(format string, args ...any) {
	if r.Logf != nil {
		r.Logf(format, args...)
	}
}

// Run runs the workers and returns their reports merged, with the end
// state read from the store once every worker is done. The merged
// Elapsed is the wall time from the first worker's start to the last one's
// end. Run returns an error only when the run could not be set up or
// checked (a worker that could not start or run, or wrote no report); what
// the strategy did wrong is in the report.
func (r *ProcsRun) Run(ctx context.Context) (*ProcsReport, error) {
	if err := r.defaults(); err != nil {
		return nil, err
	}
	skus := make([]string, r.Hammer.SKUs)
	for i := range skus {
		skus[i] = SKUName(i)
		if err := r.Strategy.SetStock(ctx, skus[i], r.Hammer.Stock); err != nil {
			return nil, fmt.Errorf("strategytest: stock %s: %w", skus[i], err)
		}
	}

	seed := r.Hammer.Seed
	workers := make([]*worker, r.Procs)
	defer func() { // on an early return, no worker is left running
		for _, w := range workers {
			if w == nil {
				continue
			}
			select {
			case <-w.done:
			default:
				_ = w.cmd.Process.Kill()
				<-w.done
			}
		}
	}()
	for i := range workers {
		w := &worker{done: make(chan struct{}), spec: workerSpec{
			Tag: r.Tag, NS: r.NS, Index: i, Seed: seed + uint64(i)*0x9e3779b97f4a7c15, Hammer: r.Hammer,
			IDs:    filepath.Join(r.Dir, fmt.Sprintf("worker-%d.ids", i)),
			Ready:  filepath.Join(r.Dir, fmt.Sprintf("worker-%d.ready", i)),
			Result: filepath.Join(r.Dir, fmt.Sprintf("worker-%d.json", i)),
		}}
		spec, err := json.Marshal(w.spec)
		if err != nil {
			return nil, err
		}
		w.cmd = r.Command(ctx)
		if w.cmd.Env == nil {
			w.cmd.Env = os.Environ()
		}
		w.cmd.Env = append(w.cmd.Env, procsWorkerEnv+"="+string(spec))
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
		if w.stdin, err = w.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if err := w.cmd.Start(); err != nil {
			return nil, fmt.Errorf("strategytest: start worker %d: %w", i, err)
		}
		workers[i] = w
		go func() { w.err = w.cmd.Wait(); close(w.done) }()
	}
	r.logf("strategytest: %d workers started, %d buyers each", r.Procs, r.Hammer.Workers)
	if err := awaitReady(ctx, workers); err != nil {
		return nil, err
	}
	for _, w := range workers {
		_, _ = io.WriteString(w.stdin, goWord+"\n") // a worker that ended says why in its report
		_ = w.stdin.Close()
	}

	rep := &ProcsReport{Killed: -1, Workers: make([]*Report, r.Procs), Strategy: faultlog.StrategyName(r.Strategy)}
	rep.Errors = make(map[string]int64)
	if r.Kill {
		rng := rand.New(rand.NewPCG(seed, 1<<34))
		victim := workers[rng.IntN(len(workers))]
		carts := r.Hammer.Workers * max(r.Hammer.OpsPerWorker, 10)
		at := carts/10 + rng.IntN(max(carts/2-carts/10, 1))
		killed, made, err := killAt(ctx, victim, max(at, 1))
		if err != nil {
			return nil, err
		}
		if killed {
			rep.Killed, rep.KilledAfter = victim.spec.Index, made
			r.logf("strategytest: worker %d killed after %d carts", victim.spec.Index, made)
			ids, err := readIDs(victim.spec.IDs)
			if err != nil {
				return nil, err
			}
			if rep.HeldAtKill, err = heldUnits(ctx, r.Strategy, ids); err != nil {
				return nil, err
			}
		}
	}

	var allIDs []string
	totals := make([]int64, len(skus))
	for i := range totals {
		totals[i] = r.Hammer.Stock
	}
	var first, last time.Time
	for _, w := range workers {
		<-w.done
		ids, err := readIDs(w.spec.IDs)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		allIDs = append(allIDs, ids...)
		if w.spec.Index == rep.Killed {
			continue
		}
		res, err := w.result()
		if err != nil {
			return nil, err
		}
		if r.Collect != nil {
			if err := r.Collect(w.spec.Index, res.Data); err != nil {
				return nil, err
			}
		}
		wr := &Report{Reserves: res.Reserves, Granted: res.Granted, Refused: res.Refused, Released: res.Released,
			Errors: res.Errors, NegativeSeen: res.NegativeSeen, Elapsed: res.Elapsed}
		for _, u := range res.Unexpected {
			wr.Unexpected = append(wr.Unexpected, fmt.Errorf("worker %d: %s", w.spec.Index, u))
		}
		rep.Workers[w.spec.Index] = wr
		rep.merge(wr)
		for i, d := range res.Added {
			if i < len(totals) {
				totals[i] += d
			}
		}
		if first.IsZero() || res.Start.Before(first) {
			first = res.Start
		}
		if res.End.After(last) {
			last = res.End
		}
	}
	rep.Elapsed = last.Sub(first)

	if r.Kill {
		// Every hold, the killed worker's and the others', was made before
		// now and lives HoldTTL at most; then a sweep returns them all.
		time.Sleep(r.Hammer.HoldTTL + 100*time.Millisecond)
		for {
			n, err := r.Strategy.ExpireDue(ctx, 100)
			if err != nil {
				return nil, fmt.Errorf("strategytest: sweep: %w", err)
			}
			rep.Expired += n
			if n == 0 {
				break
			}
		}
	}
	if err := account(ctx, r.Strategy, skus, totals, &rep.Report, allIDs); err != nil {
		return rep, err
	}
	if r.Kill {
		for _, s := range rep.SKUs {
			rep.HeldAfterSweep += s.Held
		}
	}
	return rep, nil
}

// awaitReady waits until every worker has opened the store or ended.
func awaitReady(ctx context.Context, workers []*worker) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := 0
		for _, w := range workers {
			select {
			case <-w.done:
				ready++
				continue
			default:
			}
			if _, err := os.Stat(w.spec.Ready); err == nil {
				ready++
			}
		}
		if ready == len(workers) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// result reads the report of w, which has ended.
func (w *worker) result() (*workerResult, error) {
	if w.err != nil {
		return nil, fmt.Errorf("strategytest: worker %d: %w; its output:\n%s", w.spec.Index, w.err, w.tail())
	}
	b, err := os.ReadFile(w.spec.Result)
	if err != nil {
		return nil, fmt.Errorf("strategytest: worker %d wrote no report: %w; its output:\n%s", w.spec.Index, err, w.tail())
	}
	var res workerResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("strategytest: worker %d: report: %w", w.spec.Index, err)
	}
	if res.Err != "" {
		return nil, fmt.Errorf("strategytest: worker %d could not run: %s; its output:\n%s", w.spec.Index, res.Err, w.tail())
	}
	return &res, nil
}

// killAt sends SIGKILL to w once it has begun carts carts, and reports
// whether it did and after how many; a worker that ends first is not
// killed.
func killAt(ctx context.Context, w *worker, carts int) (bool, int, error) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return false, 0, nil
		case <-ctx.Done():
			return false, 0, ctx.Err()
		case <-tick.C:
		}
		b, err := os.ReadFile(w.spec.IDs)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, 0, err
		}
		if n := bytes.Count(b, []byte{'\n'}); n >= carts {
			if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				return false, 0, fmt.Errorf("strategytest: kill worker %d: %w", w.spec.Index, err)
			}
			<-w.done
			return true, n, nil
		}
	}
}

// readIDs reads a worker's file of request IDs; the last line may be cut.
func readIDs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// heldUnits sums the units that the reservations ids hold.
func heldUnits(ctx context.Context, s inventory.Strategy, ids []string) (int64, error) {
	var n int64
	for _, id := range ids {
		r, err := s.Lookup(ctx, id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("strategytest: lookup %q: %w", id, err)
		}
		if r.State == inventory.Held {
			for _, l := range r.Lines {
				n += l.Qty
			}
		}
	}
	return n, nil
}

// merge adds the counts of w to r.
func (r *ProcsReport) merge(w *Report) {
	r.Reserves += w.Reserves
	r.Granted += w.Granted
	r.Refused += w.Refused
	r.Released += w.Released
	for k, v := range w.Errors {
		r.Errors[k] += v
	}
	r.NegativeSeen = r.NegativeSeen || w.NegativeSeen
	if room := 20 - len(r.Unexpected); room > 0 {
		r.Unexpected = append(r.Unexpected, w.Unexpected[:min(room, len(w.Unexpected))]...)
	}
}

// RunProcsSuite runs RunProcs three times, one after another, with base's
// Setup, Open and Procs (default 4): one hot SKU sold out by every process
// (exactly its stock granted in all); carts of up to three lines over ten
// SKUs, settled at random, with the stock topped up and drawn down; and
// carts over five SKUs with one worker killed mid-run (Kill), holds living
// two seconds. Each run is a few hundred carts. base.Hammer.Workers, if set,
// is the number of buyers in each process. Default: 8.
func RunProcsSuite(t *testing.T, base ProcsConfig) {
	t.Helper()
	runs := []struct {
		name   string
		kill   bool
		hammer HammerConfig
	}{
		{"HotSKU", false, HammerConfig{Workers: 8, SKUs: 1, Stock: 200, MaxQty: 3, SellOut: true}},
		{"ManySKUs", false, HammerConfig{Workers: 8, SKUs: 10, Stock: 60, MaxQty: 3, MaxLines: 3, OpsPerWorker: 15}},
		{"KillOneWorker", true, HammerConfig{Workers: 8, SKUs: 5, Stock: 1000, MaxQty: 3, MaxLines: 3, OpsPerWorker: 20, HoldTTL: 2 * time.Second}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			cfg := base
			cfg.Kill, cfg.Hammer = r.kill, r.hammer
			if base.Hammer.Workers > 0 {
				cfg.Hammer.Workers = base.Hammer.Workers
			}
			RunProcs(t, cfg)
		})
	}
}
