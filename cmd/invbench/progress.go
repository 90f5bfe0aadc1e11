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

func (b *bar) finish() {
	if b.pb == nil {
		return
	}
	_ = b.pb.Finish()
	_ = b.pb.Clear()
}
