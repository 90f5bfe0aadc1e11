// Package leakcheck finds the goroutines that a piece of test code started
// and left running.
//
// Counting every goroutine in the process, as runtime.NumGoroutine does,
// blames a test for the goroutines of the tests running in parallel with
// it. A Scope instead runs the code under a profiler label of its own;
// every goroutine started from there, directly or through any library,
// inherits the label, and Leaked lists only those.
package leakcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const labelKey = "inventory_leakcheck"

var scopes atomic.Int64

// Scope is a label that marks the goroutines started under it.
type Scope struct {
	value string
}

// New returns a Scope that no other Scope in the process shares.
func New() *Scope {
	return &Scope{value: strconv.FormatInt(scopes.Add(1), 10)}
}

// Do runs f with the scope's label on the calling goroutine; goroutines
// that f starts carry it too. The caller's own labels are restored after.
func (s *Scope) Do(ctx context.Context, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(labelKey, s.value), f)
}

// Leaked returns how many goroutines carrying the scope's label are alive,
// and their stacks.
func (s *Scope) Leaked() (int, string) {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return 0, ""
	}
	// In this format a record is "<count> @ <pcs>", an optional
	// "# labels: {...}" line and the stack lines, ending with a blank line.
	want := fmt.Sprintf("%q:%q", labelKey, s.value)
	var n int
	var stacks strings.Builder
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		sc := bufio.NewScanner(strings.NewReader(rec))
		if !sc.Scan() {
			continue
		}
		head := sc.Text()
		count, _, ok := strings.Cut(head, " @ ")
		if !ok || !sc.Scan() || !strings.HasPrefix(sc.Text(), "# labels: ") || !strings.Contains(sc.Text(), want) {
			continue
		}
		c, err := strconv.Atoi(count)
		if err != nil {
			continue
		}
		n += c
		stacks.WriteString(rec)
		stacks.WriteString("\n\n")
	}
	return n, stacks.String()
}

// Check waits up to timeout for the goroutines started under the scope to
// end, and fails tb with their stacks if some are still running. It polls
// on the calling goroutine, which is not itself labelled after Do returns.
func (s *Scope) Check(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	n, stacks := s.Leaked()
	for deadline := time.Now().Add(timeout); n > 0 && time.Now().Before(deadline); n, stacks = s.Leaked() {
		time.Sleep(10 * time.Millisecond)
	}
	if n > 0 {
		tb.Errorf("%d goroutines leaked:\n%s", n, stacks)
	}
}
