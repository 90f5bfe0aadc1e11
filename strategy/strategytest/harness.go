package strategytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/oversell/inventory"
)

// Harness is one isolated strategy instance and the means to drive it. A
// HarnessMaker returns a new one for every subtest.
type Harness struct {
	// Strategy is a fresh instance with a namespace of its own (its own
	// schema, key prefix or process state) and no SKUs. Required.
	Strategy inventory.Strategy

	// NewID returns a new request ID the strategy accepts. A strategy that
	// checks tokens hands out issued tokens here. Default: 32 random hex
	// characters.
	NewID func(ctx context.Context) (string, error)

	// Advance moves the clock the strategy reads reservation TTLs from (see
	// Clock) forward by d. Nil means the strategy reads the wall clock, and
	// the suite sleeps instead, with TTLs kept short.
	Advance func(d time.Duration)

	// LinesTakenApart, when set, says why the strategy takes the lines of
	// some carts one at a time, so that for a moment another call can see
	// a cart half taken (Available lower, a refusal) that ends up refused
	// whole. The history of two-line carts is then still recorded and
	// checked, and its verdict logged with this reason instead of failing
	// the test. Default: "" (a cart's lines are taken at once, and the
	// verdict must be Ok).
	LinesTakenApart string

	// BucketsApart, when set, says why the strategy reads or takes the
	// stock buckets of one SKU one at a time (buckets in several hash
	// slots), so that Available sums them at several instants and a line
	// may be refused on such a sum. The history of one-line carts is then
	// still recorded and checked, and its verdict logged with this reason
	// instead of failing the test. Default: "" (the verdict must be Ok).
	BucketsApart string

	// MaxHold is the strategy's Options.MaxHold, the longest Extend keeps
	// a hold from the moment it was reserved. Default: 1h, the default of
	// every strategy that offers Extend.
	MaxHold time.Duration
}

// HarnessMaker returns a new Harness for the test t, or skips t. It registers
// the cleanup of what it made with t.Cleanup.
type HarnessMaker func(ctx context.Context, t *testing.T) *Harness

// Clock is a manual clock for strategies whose options take a
// `Now func() time.Time`. It starts at a fixed instant and moves only when
// Advance is called. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading 2030-01-01T00:00:00Z.
func NewClock() *Clock {
	return &Clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// RandomID returns 32 random hex characters.
func RandomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
