package strategytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	Test   string // the test that runs the worker: t.Name() in the parent
	NS     string
	Index  int
	Seed   uint64
	IDs    string // file the worker appends every request ID to, one a line, before using it
	Result string // file the worker writes its workerResult to
}

// workerResult is a worker's report, as JSON.
type workerResult struct {
	Reserves, Granted, Refused, Released int64
	Errors                               map[string]int64
	Unexpected                           []string
	NegativeSeen                         bool
	Added                                []int64 // per SKU, units the worker's churn added
	Elapsed                              time.Duration
	Err                                  string // the hammer could not run
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
// checks the end state across all of them: the test binary is run again
// once per worker, with the test t alone selected (-test.run) and an
// environment variable telling it which worker it is. Each worker opens
// the store with cfg.Open, runs the hammer without stocking or accounting,
// and writes its report to a file; the test's process merges the reports
// and accounts every request ID any worker used.
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
	if cfg.Procs <= 0 {
		cfg.Procs = 4
	}
	if cfg.Hammer.Workers <= 0 {
		cfg.Hammer.Workers = 8
	}
	if cfg.Hammer.SKUs <= 0 {
		cfg.Hammer.SKUs = 1
	}
	if cfg.Hammer.Stock <= 0 {
		cfg.Hammer.Stock = 500
	}
	if cfg.Hammer.HoldTTL <= 0 {
		cfg.Hammer.HoldTTL = time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	if cfg.Kill {
		if cfg.Hammer.SellOut {
			return nil, errors.New("strategytest: ProcsConfig.Kill with Hammer.SellOut: the killed worker's holds would never settle")
		}
		if cfg.Hammer.HoldTTL > time.Minute {
			return nil, errors.New("strategytest: ProcsConfig.Kill needs a Hammer.HoldTTL of a minute or less: Procs waits for it")
		}
		cfg.Hammer.FixedStock = true
	}
	cfg.Hammer.Advance = nil
	ctx, cancel := context.WithTimeout(t.Context(), cfg.Timeout)
	defer cancel()

	if raw := os.Getenv(procsWorkerEnv); raw != "" {
		var spec workerSpec
		if err := json.Unmarshal([]byte(raw), &spec); err != nil {
			return nil, fmt.Errorf("strategytest: bad %s: %w", procsWorkerEnv, err)
		}
		if spec.Test != t.Name() {
			t.Skipf("strategytest: this process is a worker of %s", spec.Test)
		}
		runWorker(ctx, t, cfg, spec)
		t.SkipNow() // never returns
	}
	return runParent(ctx, t, cfg)
}

// runWorker runs one worker's share of Procs and writes its report.
func runWorker(ctx context.Context, t *testing.T, cfg ProcsConfig, spec workerSpec) {
	res := workerResult{}
	defer func() {
		b, err := json.Marshal(res)
		require.NoError(t, err)
		tmp := spec.Result + ".tmp"
		require.NoError(t, os.WriteFile(tmp, b, 0o644))
		require.NoError(t, os.Rename(tmp, spec.Result)) // whole, or not there
	}()
	h := cfg.Open(ctx, t, spec.NS)
	if h == nil || h.Strategy == nil {
		res.Err = "Open returned no strategy"
		return
	}
	f, err := os.OpenFile(spec.IDs, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer f.Close()
	var mu sync.Mutex
	hc := cfg.Hammer
	hc.Strategy, hc.NewID, hc.Advance, hc.Seed, hc.stocked = h.Strategy, h.NewID, nil, spec.Seed, true
	hc.onID = func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := f.WriteString(id + "\n") // unbuffered: it outlives a SIGKILL
		return err
	}
	rep, err := Hammer(ctx, hc)
	if err != nil {
		res.Err = err.Error()
		return
	}
	res.Reserves, res.Granted, res.Refused, res.Released = rep.Reserves, rep.Granted, rep.Refused, rep.Released
	res.Errors, res.NegativeSeen, res.Elapsed = rep.Errors, rep.NegativeSeen, rep.Elapsed
	for _, e := range rep.Unexpected {
		res.Unexpected = append(res.Unexpected, e.Error())
	}
	res.Added = rep.added
}

// worker is one worker process as the parent sees it.
type worker struct {
	spec workerSpec
	cmd  *exec.Cmd
	out  bytes.Buffer // stdout and stderr
	err  error        // from Wait
	done chan struct{}
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

func runParent(ctx context.Context, t *testing.T, cfg ProcsConfig) (*ProcsReport, error) {
	ns := ""
	if cfg.Setup != nil {
		ns = cfg.Setup(ctx, t)
	}
	h := cfg.Open(ctx, t, ns)
	if h == nil || h.Strategy == nil {
		return nil, errors.New("strategytest: ProcsConfig.Open returned no strategy")
	}
	skus := make([]string, cfg.Hammer.SKUs)
	for i := range skus {
		skus[i] = SKUName(i)
		if err := h.Strategy.SetStock(ctx, skus[i], cfg.Hammer.Stock); err != nil {
			return nil, fmt.Errorf("strategytest: stock %s: %w", skus[i], err)
		}
	}

	seed := cfg.Hammer.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	dir := t.TempDir()
	workers := make([]*worker, cfg.Procs)
	for i := range workers {
		w := &worker{done: make(chan struct{}), spec: workerSpec{
			Test: t.Name(), NS: ns, Index: i, Seed: seed + uint64(i)*0x9e3779b97f4a7c15,
			IDs:    filepath.Join(dir, fmt.Sprintf("worker-%d.ids", i)),
			Result: filepath.Join(dir, fmt.Sprintf("worker-%d.json", i)),
		}}
		spec, err := json.Marshal(w.spec)
		if err != nil {
			return nil, err
		}
		w.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run="+testPattern(t.Name()), "-test.count=1", "-test.v")
		w.cmd.Env = append(os.Environ(), procsWorkerEnv+"="+string(spec))
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
		if err := w.cmd.Start(); err != nil {
			for _, started := range workers[:i] {
				_ = started.cmd.Process.Kill()
				<-started.done
			}
			return nil, fmt.Errorf("strategytest: start worker %d: %w", i, err)
		}
		workers[i] = w
		go func() { w.err = w.cmd.Wait(); close(w.done) }()
	}

	rep := &ProcsReport{Killed: -1, Workers: make([]*Report, cfg.Procs), Strategy: faultlog.StrategyName(h.Strategy)}
	rep.Errors = make(map[string]int64)
	start := time.Now()
	if cfg.Kill {
		rng := rand.New(rand.NewPCG(seed, 1<<34))
		victim := workers[rng.IntN(len(workers))]
		carts := cfg.Hammer.Workers * max(cfg.Hammer.OpsPerWorker, 10)
		at := carts/10 + rng.IntN(max(carts/2-carts/10, 1))
		killed, made, err := killAt(ctx, victim, max(at, 1))
		if err != nil {
			return nil, err
		}
		if killed {
			rep.Killed, rep.KilledAfter = victim.spec.Index, made
			ids, err := readIDs(victim.spec.IDs)
			if err != nil {
				return nil, err
			}
			if rep.HeldAtKill, err = heldUnits(ctx, h.Strategy, ids); err != nil {
				return nil, err
			}
		}
	}

	var allIDs []string
	totals := make([]int64, len(skus))
	for i := range totals {
		totals[i] = cfg.Hammer.Stock
	}
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
			return nil, fmt.Errorf("strategytest: worker %d could not run: %s", w.spec.Index, res.Err)
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
	}
	rep.Elapsed = time.Since(start)

	if cfg.Kill {
		// Every hold, the killed worker's and the others', was made before
		// now and lives HoldTTL at most; then a sweep returns them all.
		time.Sleep(cfg.Hammer.HoldTTL + 100*time.Millisecond)
		for {
			n, err := h.Strategy.ExpireDue(ctx, 100)
			if err != nil {
				return nil, fmt.Errorf("strategytest: sweep: %w", err)
			}
			rep.Expired += n
			if n == 0 {
				break
			}
		}
	}
	if err := account(ctx, h.Strategy, skus, totals, &rep.Report, allIDs); err != nil {
		return rep, err
	}
	if cfg.Kill {
		for _, s := range rep.SKUs {
			rep.HeldAfterSweep += s.Held
		}
	}
	return rep, nil
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
