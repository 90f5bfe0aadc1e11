// Command reliability builds docs/RELIABILITY.md, the fault table, from the
// go test -json output of a test run: every line a fault test wrote with
// internal/faultlog is a measurement of one strategy under one fault, and
// the table shows them, summed per cell, with the tests that made them.
// Nothing in the table is typed by hand, so regenerating it re-checks every
// cell.
//
//	go test -json -count=1 ./... > /tmp/faults.json
//	go run ./internal/cmd/reliability -in /tmp/faults.json -out docs/RELIABILITY.md
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/strategy"
)

// faultNames are the rows' labels.
var faultNames = map[string]string{
	faultlog.ConnCut:           "Connection cut (request dropped, every connection cut, new ones refused)",
	faultlog.ReplyBeforeCommit: "Reply dropped before COMMIT",
	faultlog.ReplyAfterCommit:  "Reply dropped after COMMIT (or after a Redis script ran)",
	faultlog.BackendKilled:     "Backend killed (pg_terminate_backend mid-hammer)",
	faultlog.ContextCancelled:  "Context cancelled at random points",
	faultlog.ProcessKilled:     "Process SIGKILLed (one of four, then TTL and sweep)",
	faultlog.RedisRestartNoAOF: "Redis restart without AOF (empty)",
	faultlog.RedisRestartAOF:   "Redis restart with AOF",
	faultlog.RedisFailover:     "Redis failover (Sentinel, lagging replica)",
	faultlog.RedisFailoverWait: "Redis failover, WAIT for the replica",
	faultlog.WriterCrash:       "Writer crash (entries claimed by another writer)",
	faultlog.BadInput:          "Bad input (invalid requests)",
}

// notApplicable says, per fault, the strategies it cannot reach and why:
// their cell reads "n/a" with the reason, not "no test". A strategy missing
// here and from the test run's lines is a gap, shown as "no test".
var notApplicable = map[string]map[string]string{}

func init() {
	noLink := "no connection: the store is in the process"
	wrapper := "adds no I/O of its own: the wrapped strategy's column applies"
	sqlOnly := "keeps nothing in Redis"
	for _, f := range []string{faultlog.ConnCut, faultlog.ReplyBeforeCommit, faultlog.ReplyAfterCommit, faultlog.BackendKilled} {
		notApplicable[f] = map[string]string{"memory": noLink, "otelinventory": wrapper}
	}
	oneStep := "each call is one implicit transaction or script: the only reply is the commit's"
	for _, n := range []string{"sqlcond", "groupcommit", "redisstock", "token"} {
		notApplicable[faultlog.ReplyBeforeCommit][n] = oneStep
	}
	notApplicable[faultlog.ProcessKilled] = map[string]string{
		"memory":        "the store dies with its process: nothing is left to check",
		"otelinventory": wrapper,
	}
	for _, f := range []string{faultlog.RedisRestartNoAOF, faultlog.RedisRestartAOF, faultlog.RedisFailover, faultlog.RedisFailoverWait} {
		notApplicable[f] = map[string]string{
			"memory": sqlOnly, "sqlcond": sqlOnly, "pessimistic": sqlOnly, "sqlcond-mysql": sqlOnly,
			"pessimistic-mysql": sqlOnly, "groupcommit": sqlOnly, "otelinventory": wrapper,
		}
	}
	notApplicable[faultlog.WriterCrash] = map[string]string{}
	for _, n := range append(strategy.Names(), "otelinventory") {
		if n != "redisstock" {
			notApplicable[faultlog.WriterCrash][n] = "writes nothing behind: every change is in the store when the call returns"
		}
	}
}

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Output  string
}

type cell struct {
	faultlog.Cell
	tests  []string // package and test, as shown
	keys   []string // import path and test, as go test names them
	failed bool
}

func main() {
	in := flag.String("in", "-", "go test -json output to read (- for stdin)")
	out := flag.String("out", "-", "file to write the table to (- for stdout)")
	flag.Parse()
	r := io.Reader(os.Stdin)
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		r = f
	}
	doc, err := build(r)
	if err != nil {
		fail(err)
	}
	if *out == "-" {
		fmt.Print(doc)
		return
	}
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "reliability:", err)
	os.Exit(1)
}

// build reads the events and returns the document.
func build(r io.Reader) (string, error) {
	cells := map[[2]string]*cell{}
	failed := map[string]bool{} // package + " " + test
	var details []string
	var first, last time.Time
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // a line go test printed that is not an event
		}
		if !e.Time.IsZero() {
			if first.IsZero() {
				first = e.Time
			}
			last = e.Time
		}
		switch e.Action {
		case "fail":
			failed[e.Package+" "+e.Test] = true
		case "output":
			if c, ok := faultlog.Parse(e.Output); ok {
				k := [2]string{c.Strategy, c.Fault}
				x := cells[k]
				if x == nil {
					x = &cell{Cell: faultlog.Cell{Strategy: c.Strategy, Fault: c.Fault}}
					cells[k] = x
				}
				x.Tried += c.Tried
				x.Oversold += c.Oversold
				x.Lost += c.Lost
				x.Double += c.Double
				name := path.Base(e.Package) + " " + c.Test
				if !slices.Contains(x.tests, name) {
					x.tests = append(x.tests, name)
				}
				x.keys = append(x.keys, e.Package+" "+c.Test)
			}
			if i := strings.Index(e.Output, "FAILOVER "); i >= 0 {
				details = append(details, strings.TrimSpace(e.Output[i:]))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	// A test's fail event comes after its output.
	for _, x := range cells {
		for _, k := range x.keys {
			x.failed = x.failed || failed[k]
		}
	}
	if len(cells) == 0 {
		return "", fmt.Errorf("no FAULTCELL lines in the input: run the fault tests with go test -json")
	}

	cols := strategy.Names()
	for k := range cells {
		if !slices.Contains(cols, k[0]) {
			cols = append(cols, k[0])
		}
	}
	slices.Sort(cols[len(strategy.Names()):])

	var b strings.Builder
	b.WriteString("# Reliability: what each strategy survives\n\n")
	b.WriteString("Generated by `go run ./internal/cmd/reliability` from the `go test -json` output of a test run; do not edit.\n")
	b.WriteString("Every cell is what the fault tests measured for one strategy under one fault, summed over the tests named in it:\n")
	b.WriteString("operations tried under the fault, units oversold, units lost (or acknowledged reservations lost), operations applied twice.\n")
	b.WriteString("The tests fail on any oversell, loss or double apply they do not expect, so a passing run shows zeros except where a\n")
	b.WriteString("strategy documents a loss (redisstock without persistence or without WAIT). \"no test\" marks a fault no test exercises\n")
	b.WriteString("for that strategy, \"n/a\" one that cannot reach it (with the reason); FAILED a cell whose test failed in the run. Regenerate (see DEVELOPERS.md):\n\n")
	b.WriteString("```\ngo test -json -count=1 ./... > /tmp/faults.json\ngo run ./internal/cmd/reliability -in /tmp/faults.json -out docs/RELIABILITY.md\n```\n\n")
	fmt.Fprintf(&b, "Run of %s, %s long.\n\n", first.UTC().Format("2006-01-02 15:04 MST"), last.Sub(first).Round(time.Second))
	b.WriteString("| fault |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", c)
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, f := range faultlog.Faults {
		fmt.Fprintf(&b, "| %s |", faultNames[f])
		for _, c := range cols {
			x := cells[[2]string{c, f}]
			if x == nil {
				if why, ok := notApplicable[f][c]; ok {
					fmt.Fprintf(&b, " n/a: %s |", why)
				} else {
					b.WriteString(" no test |")
				}
				continue
			}
			status := ""
			if x.failed {
				status = "**FAILED** "
			}
			slices.Sort(x.tests)
			fmt.Fprintf(&b, " %s%s<br>%s |", status, x.Cell.String(), "`"+strings.Join(x.tests, "`, `")+"`")
		}
		b.WriteString("\n")
	}
	if len(details) > 0 {
		b.WriteString("\n## Failover runs\n\nThe FAILOVER lines the failover tests logged (see the failover notes in the documentation of redislock, redisstock and token):\n\n```\n")
		for _, d := range details {
			b.WriteString(d + "\n")
		}
		b.WriteString("```\n")
	}
	return b.String(), nil
}
