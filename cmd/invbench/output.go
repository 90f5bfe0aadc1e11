package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// meta describes a run for the reports.
type meta struct {
	Command   string    `json:"command"`
	Started   time.Time `json:"started"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Postgres  string    `json:"postgres,omitempty"`
	Redis     string    `json:"redis,omitempty"`
	PerPoint  string    `json:"per_point"`
	Scarce    int64     `json:"scarce_units"`
	SKUs      int       `json:"skus"`
	Zipf      float64   `json:"zipf"`
	MaxQty    int64     `json:"max_qty"`
	PoolConns int32     `json:"postgres_pool_conns,omitempty"`
	Procs     int       `json:"procs,omitempty"` // the workers of a point ran in this many processes`
	Targets   []string  `json:"targets"`
}

// report is what -out writes as JSON.
type report struct {
	Meta meta `json:"meta"`
	*outcome
}

// groups returns the results by case, in the order they ran, each sorted by
// target (in the order given) then workers.
func groups(o *outcome, order []string) [][]*Result {
	var keys []string
	by := map[string][]*Result{}
	for _, r := range o.Results {
		k := caseOf(r).String()
		if _, ok := by[k]; !ok {
			keys = append(keys, k)
		}
		by[k] = append(by[k], r)
	}
	var out [][]*Result
	for _, k := range keys {
		rs := by[k]
		slices.SortStableFunc(rs, func(a, b *Result) int {
			if d := slices.Index(order, a.Target) - slices.Index(order, b.Target); d != 0 {
				return d
			}
			return a.Workers - b.Workers
		})
		out = append(out, rs)
	}
	return out
}

func caseOf(r *Result) benchCase {
	return benchCase{Workload: r.Workload, Lines: r.Lines, Scarce: r.Stock == "sell-out"}
}

// caseTitle describes the case of rs for a heading.
func caseTitle(r *Result, m meta) string {
	var b strings.Builder
	switch r.Workload {
	case hot:
		b.WriteString("hot: one SKU")
	case uniform:
		fmt.Fprintf(&b, "uniform over %d SKUs", m.SKUs)
	case zipf:
		fmt.Fprintf(&b, "zipf (s=%g) over %d SKUs", m.Zipf, m.SKUs)
	}
	if r.Lines > 1 {
		fmt.Fprintf(&b, ", carts of 1..%d lines", r.Lines)
	} else {
		b.WriteString(", one-line carts")
	}
	if r.Stock == "sell-out" {
		b.WriteString(", scarce stock sold out to zero")
	} else {
		b.WriteString(", stock never runs out")
	}
	if m.Procs > 0 {
		fmt.Fprintf(&b, ", workers over %d processes", m.Procs)
	}
	return b.String()
}

// runLength says how long each point of r's case ran.
func runLength(r *Result, m meta) string {
	if r.Stock == "sell-out" {
		return fmt.Sprintf("until %d units sold out", m.Scarce)
	}
	return m.PerPoint + " per point"
}

var columns = []string{"strategy", "workers", "ops/s", "vs raw", "p50", "p95", "p99", "max", "refused", "errors", "check"}

func row(r *Result) []string {
	ratio := "-"
	if r.Ratio > 0 {
		ratio = fmt.Sprintf("%.2f", r.Ratio)
	}
	if r.Baseline {
		ratio = "(raw)"
	}
	errs := errorKinds(r.Errors)
	if errs == "" {
		errs = "-"
	}
	check := r.check()
	if r.Problem != "" && r.Decided == 0 {
		return []string{r.Target, strconv.Itoa(r.Workers), "-", "-", "-", "-", "-", "-", "-", "-", check + ": " + r.Problem}
	}
	return []string{
		r.Target, strconv.Itoa(r.Workers), fmtRate(r.Throughput), ratio,
		fmtMs(r.P50), fmtMs(r.P95), fmtMs(r.P99), fmtMs(r.Max),
		strconv.FormatInt(r.Refused, 10), errs, check,
	}
}

func fmtRate(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

// fmtMs writes a latency given in milliseconds with a unit that suits it,
// to three significant digits or so: 850ns, 254µs, 20.4ms, 1.52s.
func fmtMs(v float64) string {
	ns := v * 1e6
	unit, div := "ns", 1.0
	switch {
	case ns >= 1e9:
		unit, div = "s", 1e9
	case ns >= 1e6:
		unit, div = "ms", 1e6
	case ns >= 1e3:
		unit, div = "µs", 1e3
	}
	x := ns / div
	prec := 0
	switch {
	case x < 10:
		prec = 2
	case x < 100:
		prec = 1
	}
	if unit == "ns" {
		prec = 0
	}
	return strconv.FormatFloat(x, 'f', prec, 64) + unit
}

// writeTable prints the results as aligned text.
func writeTable(w io.Writer, o *outcome, m meta) {
	for _, rs := range groups(o, m.Targets) {
		fmt.Fprintf(w, "\n== %s (%s)\n", caseTitle(rs[0], m), runLength(rs[0], m))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(columns, "\t")+"\t")
		prev := ""
		for _, r := range rs {
			if prev != "" && r.Target != prev {
				fmt.Fprintln(tw, strings.Repeat("\t", len(columns)))
			}
			prev = r.Target
			fmt.Fprintln(tw, strings.Join(row(r), "\t")+"\t")
		}
		_ = tw.Flush()
		writeBatches(w, rs, "")
	}
	if len(o.Results) > 0 {
		fmt.Fprint(w, legend)
	}
	writeUnavailable(w, o, "")
	writeFailures(w, o)
}

// legend explains the columns of the tables, under them.
const legend = `
How to read the tables:
  workers  buyers at once; each reserves a cart, then commits it (40%), releases it (30%) or leaves
           it held (30%); a quarter of the holds last 50ms, the rest an hour
  ops/s    Reserve calls decided per second, all workers together: granted, or refused for lack of stock
  vs raw   ops/s over that of the raw baseline of the store that holds the stock, same point, same run:
           raw-postgres or raw-mysql (a bare conditional UPDATE, no ledger) or raw-redis (a bare Lua decrement);
           1.00 is as fast as the bare statement; "-": no baseline (memory)
  p50..max latency of Reserve calls, a retry counted as a call of its own
  refused  Reserve calls refused for lack of stock: the contract's answer, not an error
  errors   other answers by kind, all within the contract: not_held (a Commit or Release that came
           after its 50ms hold expired), contended (a lock wait ran out; retried with the same ID),
           outcome_unknown (a cut connection; retried with the same ID), canceled
  check    ok: per SKU at the end, available + held + sold = the stock, never below zero, and no
           error outside the contract; otherwise what broke (OVERSOLD, LOST...), and invbench exits 1
`

func writeUnavailable(w io.Writer, o *outcome, bullet string) {
	if len(o.Unavailable) == 0 {
		return
	}
	fmt.Fprintln(w, "\nNot measured:")
	for _, u := range o.Unavailable {
		fmt.Fprintf(w, "%s  %s: %s\n", bullet, u.Target, u.Reason)
	}
}

// writeFailures prints every failed run, loudly.
func writeFailures(w io.Writer, o *outcome) {
	var bad []*Result
	for _, r := range o.Results {
		if r.failed() {
			bad = append(bad, r)
		}
	}
	if len(bad) == 0 {
		return
	}
	fmt.Fprintf(w, "\n!!!!!!!! %d RUN(S) FAILED THE INVARIANT CHECK OR DID NOT FINISH !!!!!!!!\n", len(bad))
	for _, r := range bad {
		fmt.Fprintf(w, "!! %s %s w=%d: %s", r.Target, caseOf(r), r.Workers, r.check())
		if r.Problem != "" {
			fmt.Fprintf(w, " (%s)", r.Problem)
		}
		fmt.Fprintln(w)
		for _, u := range r.Unexpected {
			fmt.Fprintf(w, "!!     %s\n", u)
		}
	}
}

// writeBatches notes the mean batch size and flushes per second of the
// strategies that batch their calls.
func writeBatches(w io.Writer, rs []*Result, bullet string) {
	for _, r := range rs {
		if r.MeanBatch > 0 {
			fmt.Fprintf(w, "%s  %s w=%d: mean batch %.1f calls, %.0f flushes/s\n", bullet, r.Target, r.Workers, r.MeanBatch, r.Flushes)
		}
	}
}

// writeMarkdown writes the results as Markdown tables, one per case.
func writeMarkdown(w io.Writer, o *outcome, m meta) {
	fmt.Fprintf(w, "Command: `%s`  \n", m.Command)
	fmt.Fprintf(w, "Started %s on %d CPUs, %s", m.Started.Format(time.RFC3339), m.CPUs, m.GoVersion)
	if m.Postgres != "" {
		fmt.Fprintf(w, "; %s", m.Postgres)
	}
	if m.Redis != "" {
		fmt.Fprintf(w, "; Redis %s", m.Redis)
	}
	fmt.Fprintln(w, ".")
	for _, rs := range groups(o, m.Targets) {
		fmt.Fprintf(w, "\n### %s (%s)\n\n", caseTitle(rs[0], m), runLength(rs[0], m))
		fmt.Fprintf(w, "| %s |\n", strings.Join(columns, " | "))
		fmt.Fprintf(w, "| --- |%s\n", strings.Repeat(" ---: |", len(columns)-1))
		for _, r := range rs {
			cells := row(r)
			for i, c := range cells {
				cells[i] = strings.ReplaceAll(c, "|", `\|`)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		if slices.ContainsFunc(rs, func(r *Result) bool { return r.MeanBatch > 0 }) {
			fmt.Fprintln(w)
			writeBatches(w, rs, "-")
		}
	}
	if len(o.Unavailable) > 0 {
		fmt.Fprintln(w, "\nNot measured:")
		fmt.Fprintln(w)
		for _, u := range o.Unavailable {
			fmt.Fprintf(w, "- %s: %s\n", u.Target, u.Reason)
		}
	}
}

var csvHeader = []string{
	"target", "baseline", "workload", "max_lines", "stock", "workers", "seconds", "reserve_calls", "decided",
	"throughput", "vs", "ratio", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "granted_units", "refused",
	"errors", "oversold", "lost", "negative_seen", "end_available", "ok", "problem",
}

// writeCSV writes one row per result.
func writeCSV(w io.Writer, o *outcome) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, r := range o.Results {
		rec := []string{
			r.Target, strconv.FormatBool(r.Baseline), r.Workload, strconv.Itoa(r.Lines), r.Stock, strconv.Itoa(r.Workers),
			f(r.Seconds), strconv.FormatInt(r.Reserves, 10), strconv.FormatInt(r.Decided, 10),
			f(r.Throughput), r.Vs, f(r.Ratio), f(r.P50), f(r.P95), f(r.P99), f(r.Max), f(r.Mean),
			strconv.FormatInt(r.GrantedUnits, 10), strconv.FormatInt(r.Refused, 10), errorKinds(r.Errors),
			strconv.FormatInt(r.Oversold, 10), strconv.FormatInt(r.Lost, 10), strconv.FormatBool(r.NegativeSeen),
			strconv.FormatInt(r.EndAvailable, 10), strconv.FormatBool(r.OK), r.Problem,
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeOut writes results.md, results.csv and results.json into dir.
func writeOut(dir string, o *outcome, m meta) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	writeMarkdown(&md, o, m)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	var cs strings.Builder
	if err := writeCSV(&cs, o); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.csv"), []byte(cs.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(report{Meta: m, outcome: o}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644)
}
