package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// bar shows the run's progress on a terminal: which point runs, how many
// are done, and an estimate of the time left. It clears itself at the end so
// that the table follows on a clean screen.
type bar struct {
	w       io.Writer
	pb      *progressbar.ProgressBar
	stepped bool
}

func newBar(w io.Writer) *bar { return &bar{w: w} }

func (b *bar) start(total int) {
	b.pb = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

func (b *bar) step(desc string) {
	if b.stepped {
		_ = b.pb.Add(1)
	}
	b.stepped = true
	b.pb.Describe(fmt.Sprintf("%-36s", desc))
}

func (b *bar) done(*Result) {}

func (b *bar) finish() {
	if b.pb == nil {
		return
	}
	_ = b.pb.Finish()
	_ = b.pb.Clear()
}

// lines shows the run's progress where a bar cannot be drawn (a pipe, a
// file, CI): a line per point as it ends, with its result, so that a long
// run is never silent.
type lines struct {
	w       io.Writer
	total   int
	n       int
	desc    string
	started time.Time
	begun   time.Time
}

func newLines(w io.Writer) *lines { return &lines{w: w} }

func (l *lines) start(total int) {
	l.total, l.begun = total, time.Now()
	fmt.Fprintf(l.w, "invbench: %d points; a line as each ends, the tables at the end\n", total)
}

func (l *lines) step(desc string) {
	l.n++
	l.desc, l.started = desc, time.Now()
}

func (l *lines) done(r *Result) {
	took := time.Since(l.started).Round(100 * time.Millisecond)
	what := r.check()
	if r.Problem == "" || r.Decided > 0 {
		what = fmt.Sprintf("%s ops/s, p99 %s, %s", fmtRate(r.Throughput), fmtMs(r.P99), what)
	}
	if r.Problem != "" {
		what += ": " + r.Problem
	}
	fmt.Fprintf(l.w, "invbench: [%d/%d] %s: %s (%s)\n", l.n, l.total, l.desc, what, took)
}

func (l *lines) finish() {
	fmt.Fprintf(l.w, "invbench: %d points in %s\n", l.n, time.Since(l.begun).Round(time.Second))
}
