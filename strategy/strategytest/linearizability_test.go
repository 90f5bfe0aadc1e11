package strategytest

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// stale is a deliberately wrong strategy that never oversells: its stock is
// memory's, but while any of its Reserve, Commit or Release calls is in
// flight, Available answers with the value it last read at a quiet moment.
// At quiet points it is exact, so the hammer, which checks totals there,
// passes it; a history of concurrent calls shows reads that no order of the
// calls explains.
type stale struct {
	inventory.Strategy
	busy atomic.Int64
	mu   sync.Mutex
	last map[string]int64
}

func newStale() *stale { return &stale{Strategy: memory.New(nil), last: map[string]int64{}} }

func (s *stale) enter() func() {
	s.busy.Add(1)
	return func() { s.busy.Add(-1) }
}

func (s *stale) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	defer s.enter()()
	return s.Strategy.Reserve(ctx, req)
}

func (s *stale) Commit(ctx context.Context, id string) error {
	defer s.enter()()
	return s.Strategy.Commit(ctx, id)
}

func (s *stale) Release(ctx context.Context, id string) error {
	defer s.enter()()
	return s.Strategy.Release(ctx, id)
}

func (s *stale) Available(ctx context.Context, sku string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.last[sku]; ok && s.busy.Load() > 0 {
		return n, nil
	}
	n, err := s.Strategy.Available(ctx, sku)
	if err == nil {
		s.last[sku] = n
	}
	return n, err
}

// slowMemory is memory with a pause in every call, so the calls of a
// history overlap as those of a networked store do.
type slowMemory struct{ inventory.Strategy }

func (m slowMemory) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	time.Sleep(200 * time.Microsecond)
	return m.Strategy.Reserve(ctx, req)
}

func linTestConfig(s inventory.Strategy, twoLines bool) linConfig {
	cfg := linConfig{
		Strategy: s, NewID: func(context.Context) (string, error) { return RandomID(), nil },
		SKUs: []string{"a", "b", "c"}, Stock: 5, Clients: 5, Readers: 1, Ops: 14, Reads: 40, Seed: 1,
	}
	if twoLines {
		cfg.SKUs = []string{"a", "b", "c", "d"}
		cfg.Groups, cfg.TwoLines = [][]string{{"a", "b"}, {"c", "d"}}, 0.7
	}
	return cfg
}

func checkStrategy(t *testing.T, s inventory.Strategy, twoLines bool) linResult {
	t.Helper()
	cfg := linTestConfig(s, twoLines)
	history, err := recordHistory(t.Context(), cfg)
	require.NoError(t, err)
	res, err := checkHistory(t.Name(), cfg.SKUs, cfg.Stock, history, LinearizabilityTimeout)
	require.NoError(t, err)
	t.Log(res)
	if res.Visualization != "" {
		t.Cleanup(func() { _ = os.Remove(res.Visualization) })
	}
	return res
}

// TestLinearizabilityCatchesOversell shows the check can fail: the racy
// strategy's lost updates come out Illegal, and the failure is drawn.
func TestLinearizabilityCatchesOversell(t *testing.T) {
	for _, two := range []bool{false, true} {
		t.Run(map[bool]string{false: "OneLine", true: "TwoLines"}[two], func(t *testing.T) {
			res := checkStrategy(t, newRacy(), two)
			assert.Equal(t, porcupine.Illegal, res.Result)
			assert.FileExists(t, res.Visualization, "the failing history is drawn in a file named in the output")
		})
	}
}

// TestLinearizabilityCatchesStaleReads shows the check sees what the hammer
// cannot: a strategy whose Available is stale while calls are in flight
// passes the hammer and comes out Illegal.
func TestLinearizabilityCatchesStaleReads(t *testing.T) {
	rep, err := Hammer(t.Context(), HammerConfig{Strategy: newStale(), Workers: 16, SKUs: 5, Stock: 100, MaxLines: 3, OpsPerWorker: 30})
	require.NoError(t, err)
	t.Log(rep)
	assert.True(t, rep.OK(), "the hammer passes the stale strategy: %s", rep)

	s := newStale()
	s.Strategy = slowMemory{s.Strategy}
	for _, two := range []bool{false, true} {
		t.Run(map[bool]string{false: "OneLine", true: "TwoLines"}[two], func(t *testing.T) {
			res := checkStrategy(t, s, two)
			assert.Equal(t, porcupine.Illegal, res.Result)
		})
	}
}

// TestLinearizabilityPassesMemory shows the model accepts a correct
// strategy, calls of unknown outcome included.
func TestLinearizabilityPassesMemory(t *testing.T) {
	res := checkStrategy(t, slowMemory{memory.New(nil)}, true)
	assert.Equal(t, porcupine.Ok, res.Result)
}

// unsure is memory behind a connection that sometimes loses the reply:
// every third Reserve of a new ID fails with ErrOutcomeUnknown, applied
// or not at random. With double set, the retry of a lost reply takes the
// stock again, under a name of its own: a store that forgets IDs.
type unsure struct {
	inventory.Strategy
	double bool
	mu     sync.Mutex
	n      int
	lost   map[string]bool
}

func (u *unsure) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	time.Sleep(200 * time.Microsecond)
	u.mu.Lock()
	u.n++
	n, retry := u.n, u.lost[req.ID]
	u.mu.Unlock()
	if retry && u.double {
		again := req
		again.ID += "-again"
		r, err := u.Strategy.Reserve(ctx, again)
		r.ID = req.ID
		return r, err
	}
	if n%3 != 0 || retry {
		return u.Strategy.Reserve(ctx, req)
	}
	if n%2 == 0 {
		if _, err := u.Strategy.Reserve(ctx, req); err != nil {
			return inventory.Reservation{}, err
		}
		u.mu.Lock()
		u.lost[req.ID] = true
		u.mu.Unlock()
	}
	return inventory.Reservation{}, &inventory.OutcomeUnknownError{Op: "reserve", ID: req.ID, Err: errors.New("reply lost")}
}

// TestLinearizabilityModelsUnknownOutcomes shows that calls of unknown
// outcome are modelled as possibly applied (a correct store passes), and
// that a retry by the same ID must agree with them: a store whose retry
// takes the stock again comes out Illegal.
func TestLinearizabilityModelsUnknownOutcomes(t *testing.T) {
	res := checkStrategy(t, &unsure{Strategy: memory.New(nil), lost: map[string]bool{}}, true)
	assert.Equal(t, porcupine.Ok, res.Result)
	assert.Positive(t, res.Uncertain)

	res = checkStrategy(t, &unsure{Strategy: memory.New(nil), lost: map[string]bool{}, double: true}, false)
	assert.Equal(t, porcupine.Illegal, res.Result)
}
