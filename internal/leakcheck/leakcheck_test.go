package leakcheck_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/oversell/inventory/internal/leakcheck"
)

func TestLeakedCountsOnlyTheScopesGoroutines(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	// Noise outside the scope: not counted.
	for range 3 {
		go func() { <-stop }()
	}
	s := leakcheck.New()
	s.Do(t.Context(), func(context.Context) {
		go func() { <-stop }()
		go func() {
			go func() { <-stop }() // grandchildren inherit the label
			<-stop
		}()
	})
	assert.Eventually(t, func() bool { n, _ := s.Leaked(); return n == 3 }, time.Second, time.Millisecond)
	n, stacks := s.Leaked()
	assert.Equal(t, 3, n)
	assert.Contains(t, stacks, "TestLeakedCountsOnlyTheScopesGoroutines")

	other := leakcheck.New()
	n, _ = other.Leaked()
	assert.Zero(t, n, "another scope sees none of them")
}

func TestCheckFailsOnALeakAndPassesWhenTheGoroutinesEnd(t *testing.T) {
	stop := make(chan struct{})
	s := leakcheck.New()
	s.Do(t.Context(), func(context.Context) { go func() { <-stop }() })

	rec := &recorder{TB: t}
	s.Check(rec, 50*time.Millisecond)
	assert.True(t, rec.failed, "a goroutine still running is a leak")

	close(stop)
	rec = &recorder{TB: t}
	s.Check(rec, 5*time.Second)
	assert.False(t, rec.failed, "ended goroutines are not")
}

// recorder records a failure instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()                           {}
func (r *recorder) Errorf(format string, args ...any) { r.failed = true }
