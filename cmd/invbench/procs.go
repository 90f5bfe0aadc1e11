package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy/strategytest"
)

// With -procs N, the workers of every point run in N processes of their
// own: this command run again with the same flags, each a worker of
// strategytest's ProcsRun (the runner the suite's multi-process hammer
// uses), with connections of its own and its share of the cores
// (GOMAXPROCS, unless set in the environment), on the point's schema and key
// prefix. The parent opens the target too: it stocks the SKUs, merges what
// the workers report into one Result (counts summed, latency histograms
// merged, throughput over the wall time from the first worker's start to
// the last one's end, their buyers let go together) and checks the
// invariant once, across all, from the store.

// workerData is what a worker process reports besides the hammer's counts.
type workerData struct {
	Latency *histogram `json:"latency"`
	Decided int64      `json:"decided"`
	Refused int64      `json:"refused"`
	Flushes float64    `json:"flushes,omitempty"` // of a strategy that batches, over the run
	Calls   float64    `json:"calls,omitempty"`
	// Ledger is a raw baseline's reservations, which it keeps in the
	// worker's process: the parent reads the end state from them.
	Ledger []inventory.Reservation `json:"ledger,omitempty"`
}

// procsMerge adds up what the workers of one point report.
type procsMerge struct {
	h                histogram
	decided, refused int64
	flushes, calls   float64
	ledger           *ledger // the parent's raw baseline's, or nil
}

// collect is the ProcsRun's Collect.
func (m *procsMerge) collect(worker int, data json.RawMessage) error {
	var d workerData
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("worker %d: %w", worker, err)
	}
	if d.Latency != nil {
		m.h.merge(d.Latency)
	}
	m.decided += d.Decided
	m.refused += d.Refused
	m.flushes += d.Flushes
	m.calls += d.Calls
	if len(d.Ledger) > 0 && m.ledger == nil {
		return fmt.Errorf("worker %d sent reservations to a parent that keeps none", worker)
	}
	for _, res := range d.Ledger {
		m.ledger.put(res)
	}
	return nil
}

// fill writes the merged run into r.
func (m *procsMerge) fill(r *Result, rep *strategytest.ProcsReport, c benchCase) {
	fill(r, &rep.Report, &m.h, m.decided, m.refused, c)
	if m.flushes > 0 && rep.Elapsed > 0 {
		r.MeanBatch = m.calls / m.flushes
		r.Flushes = m.flushes / rep.Elapsed.Seconds()
	}
}

// measureProcs runs the point of t on case c with w workers over p.procs
// processes, on the store o that the parent opened as ns, into r.
func measureProcs(ctx context.Context, p plan, t target, o *opened, c benchCase, w int, ns string, r *Result) error {
	if w%p.procs != 0 {
		return fmt.Errorf("%d workers do not split evenly over %d processes", w, p.procs)
	}
	dir, err := os.MkdirTemp("", "invbench-procs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m := &procsMerge{}
	if rs, ok := o.s.(*raw); ok {
		m.ledger = rs.ledger
	}
	cfg := hammerConfig(p, c, w) // carts per worker from all w workers
	cfg.Workers = w / p.procs
	// The background work of one shop, shared out: each process reads the
	// stock and sweeps 1/procs as often, so that all of them together do
	// what one process does, and the work does not grow with the processes.
	cfg.SampleEvery *= time.Duration(p.procs)
	cfg.SweepEvery *= time.Duration(p.procs)
	run := &strategytest.ProcsRun{
		Procs: p.procs, Hammer: cfg, Strategy: o.s, NS: ns, Tag: t.name, Dir: dir, Collect: m.collect,
		Command: func(ctx context.Context) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], p.args...)
			// The servers the parent uses, wherever it found them (-containers).
			cmd.Env = append(os.Environ(), PostgresEnv+"="+p.pgURL, RedisEnv+"="+p.redisURL, MySQLEnv+"="+mysqlURL())
			if os.Getenv("GOMAXPROCS") == "" {
				cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(workerProcs(runtime.GOMAXPROCS(0), p.procs)))
			}
			return cmd
		},
	}
	rep, err := run.Run(ctx)
	if rep == nil {
		return fmt.Errorf("procs: %w", err)
	}
	m.fill(r, rep, c)
	if err != nil {
		return fmt.Errorf("procs: %w", err)
	}
	return nil
}

// workerProcs is the GOMAXPROCS of each of procs worker processes of a
// parent that has cores of them: its share of the cores, at least one, as
// replicas of a shop each have their own machine's. A process that counts
// every core of the machine as its own keeps idle Ps spinning for work
// on cores the other processes and the servers need.
func workerProcs(cores, procs int) int {
	return max(1, cores/max(procs, 1))
}

// runWorker is the command in a worker process of -procs: it opens the
// target its parent names on the parent's store, with connections of its
// own (its share of -pg-conns and -mysql-conns), runs its buyers and
// reports.
func runWorker(ctx context.Context, o *options, wk *strategytest.ProcsWorker, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "invbench: worker %d: %v\n", wk.Index(), err)
		if werr := wk.Fail(err); werr != nil {
			fmt.Fprintf(stderr, "invbench: worker %d: %v\n", wk.Index(), werr)
		}
		return exitFailed
	}
	all := targets()
	i := slices.IndexFunc(all, func(t target) bool { return t.name == wk.Tag() })
	if i < 0 {
		return fail(fmt.Errorf("unknown target %q", wk.Tag()))
	}
	t := all[i]
	pgURL, redisURL := serverURLs()
	procs := max(o.procs, 1)
	svc := connectFor(ctx, o, []target{t}, pgURL, redisURL, max(o.pgConns/procs, 2), max(o.mysqlConns/procs, 2), wk.Workers()+32)
	defer svc.close()
	svc.buckets, svc.limit, svc.gc, svc.retention = o.buckets, o.limit, o.gc, o.retention
	// Each process on a stock bucket of its own, as a shop would number its
	// replicas, rather than on one picked at random that another may share.
	svc.home = wk.Index() + 1
	if err := svc.missing(t.services); err != nil {
		return fail(err)
	}
	schema, prefix := storeNames(wk.NS())
	op, err := t.open(ctx, svc, schema, prefix, false)
	if err != nil {
		return fail(fmt.Errorf("open: %w", err))
	}
	ob := newObserver()
	flushes0, calls0, _ := batchCounts(op.s)
	err = wk.Run(ctx, &strategytest.Harness{Strategy: op.s, NewID: op.newID}, &strategytest.WorkerOptions{
		Observe: ob.observe,
		Data: func() (any, error) {
			d := workerData{Latency: ob.rec.snapshot(), Decided: ob.decided.Load(), Refused: ob.refused.Load()}
			if flushes1, calls1, ok := batchCounts(op.s); ok {
				d.Flushes, d.Calls = flushes1-flushes0, calls1-calls0
			}
			if rs, ok := op.s.(*raw); ok {
				d.Ledger = rs.ledger.all()
			}
			return d, nil
		},
	})
	// The parent reads the store once this process has ended: close (a
	// writer's drain) comes first.
	if cerr := op.close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "invbench: worker %d: %v\n", wk.Index(), err)
		return exitFailed
	}
	return 0
}
