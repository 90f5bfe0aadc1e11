package strategytest

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/soak"
)

// Timeouts bounding each subtest, so a hung strategy fails instead of hanging.
const (
	behaviourTimeout = time.Minute
	hammerTimeout    = 4 * time.Minute
)

// hammerSizes are the sizes of the suite's hammers.
type hammerSizes struct {
	cancelOps int           // CancelledMidCallLeavesNoPartialState: carts per buyer (16 buyers)
	cancelFor time.Duration // CancelledMidCallLeavesNoPartialState: the longest its buyers run
	hotStock  int64         // HammerHotSKU: units of the hot SKU, sold out by 64 buyers
	manyStock int64         // HammerManySKUs: units of each of its 20 SKUs
	manyOps   int           // HammerManySKUs: carts per buyer (64 buyers)
}

// sizes are the hammers of every run: each keeps its buyers racing long
// enough for an unsafe strategy to oversell (the racy strategy of the
// suite's own tests oversells at these sizes and smaller) and for demand to
// exceed supply. With INVENTORY_TEST_SOAK=1 the hammers run longer, to find
// what is rare.
//
// The cancel hammer is bounded by time as well as by carts: a strategy
// that serialises carts behind locks (redislock) makes them one by one, and
// on a loaded machine its carts would otherwise run past behaviourTimeout.
// cancelFor leaves the rest of behaviourTimeout to calls in flight (a lock
// wait runs up to 5s) and to the accounting.
var sizes = soak.Pick(
	hammerSizes{cancelOps: 10, cancelFor: 15 * time.Second, hotStock: 150, manyStock: 60, manyOps: 12},
	hammerSizes{cancelOps: 30, cancelFor: 25 * time.Second, hotStock: 1000, manyStock: 250, manyOps: 80},
)

// minDeadlined is the fewest calls a cancel hammer must have made with a
// short deadline for its verdict to count, so that the time bound never
// turns it into a run that cancels nothing.
const minDeadlined = 32

// RunConformance checks that the strategies made by newHarness keep the
// inventory.Reserver contract. It runs one subtest per behaviour, in
// parallel, each with a harness of its own, and the two hammers.
func RunConformance(t *testing.T, newHarness HarnessMaker) {
	t.Helper()
	for _, c := range append(append(behaviours, cancelBehaviours()...), featureBehaviours()...) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			timeout := behaviourTimeout
			if strings.HasPrefix(c.name, "Hammer") {
				timeout = hammerTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			timer := time.AfterFunc(timeout, func() {
				t.Errorf("%s did not finish within %s: the strategy hangs or ignores its context", c.name, timeout)
			})
			defer timer.Stop()
			h := newHarness(ctx, t)
			require.NotNil(t, h, "HarnessMaker returned nil")
			require.NotNil(t, h.Strategy, "Harness.Strategy is nil")
			c.run(ctx, t, newSuite(h))
		})
	}
}

// suite wraps a Harness with the helpers the behaviours share.
type suite struct {
	*Harness
}

func newSuite(h *Harness) *suite {
	if h.NewID == nil {
		h.NewID = func(context.Context) (string, error) { return RandomID(), nil }
	}
	return &suite{h}
}

func (s *suite) id(ctx context.Context, t *testing.T) string {
	t.Helper()
	id, err := s.NewID(ctx)
	require.NoError(t, err, "NewID")
	return id
}

func (s *suite) stock(ctx context.Context, t *testing.T, levels map[string]int64) {
	t.Helper()
	for sku, n := range levels {
		require.NoError(t, s.Strategy.SetStock(ctx, sku, n), "SetStock(%q, %d)", sku, n)
	}
}

func (s *suite) assertAvailable(ctx context.Context, t *testing.T, want map[string]int64) {
	t.Helper()
	for sku, n := range want {
		got, err := s.Strategy.Available(ctx, sku)
		if assert.NoError(t, err, "Available(%q)", sku) {
			assert.Equal(t, n, got, "available units of %q", sku)
		}
	}
}

func (s *suite) reserve(ctx context.Context, t *testing.T, ttl time.Duration, lines ...inventory.Line) inventory.Reservation {
	t.Helper()
	req := inventory.Request{ID: s.id(ctx, t), Lines: lines, TTL: ttl}
	r, err := s.Strategy.Reserve(ctx, req)
	require.NoError(t, err, "Reserve(%+v)", req)
	return r
}

// ttl returns a short TTL for holds meant to expire, and wait lets it pass.
func (s *suite) ttl() time.Duration {
	if s.Advance != nil {
		return time.Minute
	}
	return 300 * time.Millisecond
}

func (s *suite) passTTL() {
	if s.Advance != nil {
		s.Advance(time.Minute + time.Second)
		return
	}
	time.Sleep(400 * time.Millisecond)
}

func (s *suite) assertState(ctx context.Context, t *testing.T, id string, want inventory.State) {
	t.Helper()
	r, err := s.Strategy.Lookup(ctx, id)
	if assert.NoError(t, err, "Lookup(%q)", id) {
		assert.Equal(t, want, r.State, "state of %q", id)
	}
}

func assertStateError(t *testing.T, err error, op string, state inventory.State) {
	t.Helper()
	require.ErrorIs(t, err, inventory.ErrNotHeld)
	var se *inventory.StateError
	if assert.ErrorAs(t, err, &se) {
		assert.Equal(t, op, se.Op)
		assert.Equal(t, state, se.State)
	}
}

func line(sku string, qty int64) inventory.Line { return inventory.Line{SKU: sku, Qty: qty} }

// badIDs are reservation IDs every strategy refuses with
// inventory.ErrInvalidRequest, by the rule of inventory.ValidateID.
var badIDs = map[string]string{
	"empty":          "",
	"long":           strings.Repeat("i", inventory.MaxIDLen+1),
	"NUL":            "\x00",
	"NUL inside":     "order\x00-1",
	"invalid UTF-8":  "\xff\xfe",
	"cut UTF-8":      "order-\xe2\x82",
	"control":        "order\n1",
	"surrogate half": "\xed\xa0\x80",
}

type behaviour struct {
	name string
	run  func(ctx context.Context, t *testing.T, s *suite)
}

var behaviours = []behaviour{
	{"ReserveWithinStock", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"apple": 10})
		r := s.reserve(ctx, t, 0, line("apple", 3))
		assert.Equal(t, inventory.Held, r.State)
		assert.Equal(t, []inventory.Line{line("apple", 3)}, r.Lines)
		assert.False(t, r.ExpiresAt.IsZero(), "ExpiresAt is set")
		s.assertAvailable(ctx, t, map[string]int64{"apple": 7})
		got, err := s.Strategy.Lookup(ctx, r.ID)
		require.NoError(t, err)
		assert.Equal(t, r.ID, got.ID)
		assert.Equal(t, r.Lines, got.Lines)
		assert.Equal(t, inventory.Held, got.State)
		assert.WithinDuration(t, r.ExpiresAt, got.ExpiresAt, time.Millisecond)
	}},
	{"ReserveAllOfTheStock", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"apple": 5})
		s.reserve(ctx, t, 0, line("apple", 5))
		s.assertAvailable(ctx, t, map[string]int64{"apple": 0})
		_, err := s.Strategy.Reserve(ctx, inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("apple", 1)}})
		require.ErrorIs(t, err, inventory.ErrInsufficientStock)
	}},
	{"LinesComeBackSortedBySKU", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 5, "b": 5, "c": 5})
		r := s.reserve(ctx, t, 0, line("c", 1), line("a", 2), line("b", 3))
		assert.Equal(t, []inventory.Line{line("a", 2), line("b", 3), line("c", 1)}, r.Lines)
	}},
	{"TTLSetsExpiry", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"apple": 5})
		short := s.reserve(ctx, t, time.Minute, line("apple", 1))
		long := s.reserve(ctx, t, time.Hour, line("apple", 1))
		def := s.reserve(ctx, t, 0, line("apple", 1))
		d := long.ExpiresAt.Sub(short.ExpiresAt)
		assert.InDelta(t, float64(59*time.Minute), float64(d), float64(5*time.Second), "an hour's hold outlasts a minute's by 59m")
		assert.True(t, def.ExpiresAt.After(short.ExpiresAt), "TTL 0 takes a default longer than a minute")
	}},
	{"MultiLineAllOrNothing", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 5, "b": 5, "c": 1})
		s.reserve(ctx, t, 0, line("a", 2), line("b", 2), line("c", 1))
		s.assertAvailable(ctx, t, map[string]int64{"a": 3, "b": 3, "c": 0})
		_, err := s.Strategy.Reserve(ctx, inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("a", 1), line("b", 1), line("c", 1)}})
		require.ErrorIs(t, err, inventory.ErrInsufficientStock)
		s.assertAvailable(ctx, t, map[string]int64{"a": 3, "b": 3, "c": 0})
	}},
	{"InsufficientStockLeavesEveryLineUntouched", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 5, "b": 2, "c": 5})
		id := s.id(ctx, t)
		_, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("c", 1), line("b", 3), line("a", 1)}})
		require.ErrorIs(t, err, inventory.ErrInsufficientStock)
		var ise *inventory.InsufficientStockError
		require.ErrorAs(t, err, &ise)
		assert.Equal(t, "b", ise.SKU)
		assert.Equal(t, int64(3), ise.Requested)
		assert.Equal(t, int64(2), ise.Available)
		s.assertAvailable(ctx, t, map[string]int64{"a": 5, "b": 2, "c": 5})
		_, err = s.Strategy.Lookup(ctx, id)
		assert.ErrorIs(t, err, inventory.ErrNotFound, "a refused request leaves no reservation")
		// The same ID may be used again once stock allows.
		s.stock(ctx, t, map[string]int64{"b": 3})
		_, err = s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("c", 1), line("b", 3), line("a", 1)}})
		require.NoError(t, err)
		s.assertAvailable(ctx, t, map[string]int64{"a": 4, "b": 0, "c": 4})
	}},
	{"UnknownSKU", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 5})
		_, err := s.Strategy.Reserve(ctx, inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("a", 1), line("zz-missing", 1)}})
		require.ErrorIs(t, err, inventory.ErrUnknownSKU)
		var ue *inventory.UnknownSKUError
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "zz-missing", ue.SKU)
		s.assertAvailable(ctx, t, map[string]int64{"a": 5})
		_, err = s.Strategy.Available(ctx, "zz-missing")
		assert.ErrorIs(t, err, inventory.ErrUnknownSKU)
		_, err = s.Strategy.AddStock(ctx, "zz-missing", 1)
		assert.ErrorIs(t, err, inventory.ErrUnknownSKU)
		_, err = s.Strategy.Available(ctx, "zz-missing")
		assert.ErrorIs(t, err, inventory.ErrUnknownSKU, "AddStock on an unknown SKU does not create it")
	}},
	{"InvalidRequestsChangeNothing", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 5, "b": 5})
		good := func() inventory.Request {
			return inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("a", 1), line("b", 1)}}
		}
		many := make([]inventory.Line, inventory.MaxLines+1)
		for i := range many {
			many[i] = line("a"+strings.Repeat("x", i), 1)
		}
		cases := map[string]func(r *inventory.Request){
			"EmptyID":       func(r *inventory.Request) { r.ID = "" },
			"LongID":        func(r *inventory.Request) { r.ID = strings.Repeat("i", inventory.MaxIDLen+1) },
			"NoLines":       func(r *inventory.Request) { r.Lines = nil },
			"TooManyLines":  func(r *inventory.Request) { r.Lines = many },
			"EmptySKU":      func(r *inventory.Request) { r.Lines[1].SKU = "" },
			"LongSKU":       func(r *inventory.Request) { r.Lines[1].SKU = strings.Repeat("s", inventory.MaxSKULen+1) },
			"InvalidUTF8":   func(r *inventory.Request) { r.Lines[1].SKU = "b\xff" },
			"ControlChar":   func(r *inventory.Request) { r.Lines[1].SKU = "b\x00" },
			"NewlineInSKU":  func(r *inventory.Request) { r.Lines[1].SKU = "b\n" },
			"DuplicateSKU":  func(r *inventory.Request) { r.Lines[1].SKU = "a" },
			"ZeroQty":       func(r *inventory.Request) { r.Lines[1].Qty = 0 },
			"NegativeQty":   func(r *inventory.Request) { r.Lines[1].Qty = -1 },
			"HugeQty":       func(r *inventory.Request) { r.Lines[1].Qty = inventory.MaxQty + 1 },
			"OverflowQty":   func(r *inventory.Request) { r.Lines[1].Qty = 1<<63 - 1 },
			"NegativeTTL":   func(r *inventory.Request) { r.TTL = -time.Second },
			"MinInt64Qty":   func(r *inventory.Request) { r.Lines[0].Qty = -1 << 63 },
			"UnknownAndBad": func(r *inventory.Request) { r.Lines[0].SKU = "zz-missing"; r.Lines[1].Qty = 0 },
		}
		for name, mutate := range cases {
			req := good()
			mutate(&req)
			_, err := s.Strategy.Reserve(ctx, req)
			assert.ErrorIs(t, err, inventory.ErrInvalidRequest, name)
			if req.ID != "" && len(req.ID) <= inventory.MaxIDLen {
				_, err = s.Strategy.Lookup(ctx, req.ID)
				assert.ErrorIs(t, err, inventory.ErrNotFound, "%s left a reservation", name)
			}
		}
		s.assertAvailable(ctx, t, map[string]int64{"a": 5, "b": 5})
		var units int64
		for _, sku := range []string{"a", "b"} {
			n, err := s.Strategy.Available(ctx, sku)
			require.NoError(t, err)
			units += n
		}
		faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s.Strategy), Fault: faultlog.BadInput,
			Tried: int64(len(cases)), Oversold: max(0, units-10), Lost: max(0, 10-units)})
	}},
	{"InvalidIDsChangeNothing", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 5})
		held := s.reserve(ctx, t, 0, line("a", 1))
		for name, id := range badIDs {
			_, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 1)}})
			assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "Reserve with %s ID %q", name, id)
			assert.ErrorIs(t, s.Strategy.Commit(ctx, id), inventory.ErrInvalidRequest, "Commit with %s ID %q", name, id)
			assert.ErrorIs(t, s.Strategy.Release(ctx, id), inventory.ErrInvalidRequest, "Release with %s ID %q", name, id)
			_, err = s.Strategy.Lookup(ctx, id)
			assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "Lookup with %s ID %q", name, id)
		}
		s.assertAvailable(ctx, t, map[string]int64{"a": 4})
		s.assertState(ctx, t, held.ID, inventory.Held)
	}},
	{"InvalidAdministrationChangesNothing", func(ctx context.Context, t *testing.T, s *suite) {
		st := s.Strategy
		s.stock(ctx, t, map[string]int64{"a": 5})
		assert.ErrorIs(t, st.SetStock(ctx, "a", -1), inventory.ErrInvalidRequest)
		assert.ErrorIs(t, st.SetStock(ctx, "a", inventory.MaxStock+1), inventory.ErrInvalidRequest)
		assert.ErrorIs(t, st.SetStock(ctx, "", 1), inventory.ErrInvalidRequest)
		assert.ErrorIs(t, st.SetStock(ctx, "bad\x01", 1), inventory.ErrInvalidRequest)
		_, err := st.AddStock(ctx, "a", inventory.MaxStock)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "adding past MaxStock")
		_, err = st.AddStock(ctx, "a", 1<<62)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "overflow")
		_, err = st.AddStock(ctx, "a", -1<<63)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "overflow")
		_, err = st.AddStock(ctx, "a", -6)
		assert.ErrorIs(t, err, inventory.ErrInsufficientStock, "removing more than available")
		_, err = st.Available(ctx, "")
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
		_, err = st.ExpireDue(ctx, 0)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
		_, err = st.ExpireDue(ctx, -1)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
		assert.ErrorIs(t, st.Commit(ctx, ""), inventory.ErrInvalidRequest)
		assert.ErrorIs(t, st.Release(ctx, strings.Repeat("x", inventory.MaxIDLen+1)), inventory.ErrInvalidRequest)
		_, err = st.Lookup(ctx, "")
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
		s.assertAvailable(ctx, t, map[string]int64{"a": 5})
	}},
	{"StockAdministration", func(ctx context.Context, t *testing.T, s *suite) {
		st := s.Strategy
		s.stock(ctx, t, map[string]int64{"a": 5})
		n, err := st.AddStock(ctx, "a", 3)
		require.NoError(t, err)
		assert.Equal(t, int64(8), n)
		n, err = st.AddStock(ctx, "a", -8)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)
		n, err = st.AddStock(ctx, "a", 0)
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)
		s.stock(ctx, t, map[string]int64{"a": 4})
		r := s.reserve(ctx, t, 0, line("a", 3))
		s.stock(ctx, t, map[string]int64{"a": 10})
		s.assertAvailable(ctx, t, map[string]int64{"a": 10})
		require.NoError(t, st.Release(ctx, r.ID))
		s.assertAvailable(ctx, t, map[string]int64{"a": 13})
		require.NoError(t, st.SetStock(ctx, "b", 0))
		s.assertAvailable(ctx, t, map[string]int64{"b": 0})
		_, err = st.Reserve(ctx, inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("b", 1)}})
		assert.ErrorIs(t, err, inventory.ErrInsufficientStock)
	}},
	{"SameIDTwiceDecrementsOnce", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10, "b": 10})
		req := inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("a", 2), line("b", 3)}}
		first, err := s.Strategy.Reserve(ctx, req)
		require.NoError(t, err)
		req.Lines = []inventory.Line{line("b", 3), line("a", 2)} // same lines, other order
		again, err := s.Strategy.Reserve(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, first.ID, again.ID)
		assert.Equal(t, first.Lines, again.Lines)
		assert.Equal(t, inventory.Held, again.State)
		assert.WithinDuration(t, first.ExpiresAt, again.ExpiresAt, time.Millisecond)
		s.assertAvailable(ctx, t, map[string]int64{"a": 8, "b": 7})
	}},
	{"SameIDConcurrentDecrementsOnce", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 100, "b": 100})
		req := inventory.Request{ID: s.id(ctx, t), Lines: []inventory.Line{line("a", 2), line("b", 3)}}
		var wg sync.WaitGroup
		errs := make([]error, 32)
		res := make([]inventory.Reservation, 32)
		for i := range 32 {
			wg.Go(func() { res[i], errs[i] = s.Strategy.Reserve(ctx, req) })
		}
		wg.Wait()
		for i := range 32 {
			if errs[i] != nil {
				// A strategy may refuse an in-flight duplicate as contended.
				assert.ErrorIs(t, errs[i], inventory.ErrContended, "submission %d", i)
				continue
			}
			assert.Equal(t, req.ID, res[i].ID)
			assert.Equal(t, inventory.Held, res[i].State)
		}
		s.assertAvailable(ctx, t, map[string]int64{"a": 98, "b": 97})
	}},
	{"SameIDOtherLinesConflicts", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10, "b": 10})
		r := s.reserve(ctx, t, 0, line("a", 2))
		for _, lines := range [][]inventory.Line{
			{line("a", 3)},
			{line("b", 2)},
			{line("a", 2), line("b", 1)},
		} {
			_, err := s.Strategy.Reserve(ctx, inventory.Request{ID: r.ID, Lines: lines})
			assert.ErrorIs(t, err, inventory.ErrConflict, "%+v", lines)
		}
		s.assertAvailable(ctx, t, map[string]int64{"a": 8, "b": 10})
		s.assertState(ctx, t, r.ID, inventory.Held)
	}},
	{"SameIDAfterSettleReturnsTheSettledReservation", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		c := s.reserve(ctx, t, 0, line("a", 2))
		require.NoError(t, s.Strategy.Commit(ctx, c.ID))
		r := s.reserve(ctx, t, 0, line("a", 3))
		require.NoError(t, s.Strategy.Release(ctx, r.ID))
		got, err := s.Strategy.Reserve(ctx, inventory.Request{ID: c.ID, Lines: c.Lines})
		require.NoError(t, err)
		assert.Equal(t, inventory.Committed, got.State)
		got, err = s.Strategy.Reserve(ctx, inventory.Request{ID: r.ID, Lines: r.Lines})
		require.NoError(t, err)
		assert.Equal(t, inventory.Released, got.State, "a released ID is not reserved again")
		s.assertAvailable(ctx, t, map[string]int64{"a": 8})
	}},
	{"CommitIsIdempotent", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		r := s.reserve(ctx, t, 0, line("a", 4))
		require.NoError(t, s.Strategy.Commit(ctx, r.ID))
		require.NoError(t, s.Strategy.Commit(ctx, r.ID))
		s.assertState(ctx, t, r.ID, inventory.Committed)
		s.assertAvailable(ctx, t, map[string]int64{"a": 6})
	}},
	{"ReleaseIsIdempotent", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10, "b": 1})
		r := s.reserve(ctx, t, 0, line("a", 4), line("b", 1))
		s.assertAvailable(ctx, t, map[string]int64{"a": 6, "b": 0})
		require.NoError(t, s.Strategy.Release(ctx, r.ID))
		require.NoError(t, s.Strategy.Release(ctx, r.ID))
		s.assertState(ctx, t, r.ID, inventory.Released)
		s.assertAvailable(ctx, t, map[string]int64{"a": 10, "b": 1})
	}},
	{"ConcurrentSettlesApplyOnce", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		r := s.reserve(ctx, t, 0, line("a", 4))
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				err := s.Strategy.Release(ctx, r.ID)
				if err != nil {
					assert.ErrorIs(t, err, inventory.ErrContended)
				}
			})
		}
		wg.Wait()
		s.assertAvailable(ctx, t, map[string]int64{"a": 10})
	}},
	{"CommitAfterReleaseFails", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		r := s.reserve(ctx, t, 0, line("a", 4))
		require.NoError(t, s.Strategy.Release(ctx, r.ID))
		assertStateError(t, s.Strategy.Commit(ctx, r.ID), "commit", inventory.Released)
		s.assertState(ctx, t, r.ID, inventory.Released)
		s.assertAvailable(ctx, t, map[string]int64{"a": 10})
	}},
	{"ReleaseAfterCommitFails", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		r := s.reserve(ctx, t, 0, line("a", 4))
		require.NoError(t, s.Strategy.Commit(ctx, r.ID))
		assertStateError(t, s.Strategy.Release(ctx, r.ID), "release", inventory.Committed)
		s.assertState(ctx, t, r.ID, inventory.Committed)
		s.assertAvailable(ctx, t, map[string]int64{"a": 6})
	}},
	{"UnknownReservation", func(ctx context.Context, t *testing.T, s *suite) {
		id := s.id(ctx, t)
		assert.ErrorIs(t, s.Strategy.Commit(ctx, id), inventory.ErrNotFound)
		assert.ErrorIs(t, s.Strategy.Release(ctx, id), inventory.ErrNotFound)
		_, err := s.Strategy.Lookup(ctx, id)
		assert.ErrorIs(t, err, inventory.ErrNotFound)
	}},
	{"ExpiryReturnsUnits", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10, "b": 10})
		short := s.reserve(ctx, t, s.ttl(), line("a", 3), line("b", 1))
		long := s.reserve(ctx, t, time.Hour, line("a", 2))
		n, err := s.Strategy.ExpireDue(ctx, 100)
		require.NoError(t, err)
		assert.Zero(t, n, "nothing is due yet")
		s.passTTL()
		n, err = s.Strategy.ExpireDue(ctx, 100)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		s.assertState(ctx, t, short.ID, inventory.Expired)
		s.assertState(ctx, t, long.ID, inventory.Held)
		s.assertAvailable(ctx, t, map[string]int64{"a": 8, "b": 10})
		n, err = s.Strategy.ExpireDue(ctx, 100)
		require.NoError(t, err)
		assert.Zero(t, n, "an expired hold is not expired twice")
		s.assertAvailable(ctx, t, map[string]int64{"a": 8, "b": 10})
		assertStateError(t, s.Strategy.Commit(ctx, short.ID), "commit", inventory.Expired)
		assertStateError(t, s.Strategy.Release(ctx, short.ID), "release", inventory.Expired)
		s.assertAvailable(ctx, t, map[string]int64{"a": 8, "b": 10})
	}},
	{"OverdueHoldCannotBeCommittedBeforeASweep", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		c := s.reserve(ctx, t, s.ttl(), line("a", 3))
		r := s.reserve(ctx, t, s.ttl(), line("a", 2))
		s.passTTL()
		assertStateError(t, s.Strategy.Commit(ctx, c.ID), "commit", inventory.Expired)
		assertStateError(t, s.Strategy.Release(ctx, r.ID), "release", inventory.Expired)
		s.assertState(ctx, t, c.ID, inventory.Expired)
		s.assertState(ctx, t, r.ID, inventory.Expired)
		s.assertAvailable(ctx, t, map[string]int64{"a": 10})
		n, err := s.Strategy.ExpireDue(ctx, 100)
		require.NoError(t, err)
		assert.Zero(t, n, "holds already expired are not expired again")
		s.assertAvailable(ctx, t, map[string]int64{"a": 10})
	}},
	{"ExpiryNeverTouchesSettledReservations", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		c := s.reserve(ctx, t, s.ttl(), line("a", 3))
		r := s.reserve(ctx, t, s.ttl(), line("a", 2))
		require.NoError(t, s.Strategy.Commit(ctx, c.ID))
		require.NoError(t, s.Strategy.Release(ctx, r.ID))
		s.passTTL()
		n, err := s.Strategy.ExpireDue(ctx, 100)
		require.NoError(t, err)
		assert.Zero(t, n)
		s.assertState(ctx, t, c.ID, inventory.Committed)
		s.assertState(ctx, t, r.ID, inventory.Released)
		s.assertAvailable(ctx, t, map[string]int64{"a": 7})
		require.NoError(t, s.Strategy.Commit(ctx, c.ID), "a committed reservation stays committed after its TTL")
	}},
	{"ExpireDueRespectsLimit", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		for range 5 {
			s.reserve(ctx, t, s.ttl(), line("a", 1))
		}
		s.passTTL()
		n, err := s.Strategy.ExpireDue(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		s.assertAvailable(ctx, t, map[string]int64{"a": 7})
		n, err = s.Strategy.ExpireDue(ctx, 10)
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		s.assertAvailable(ctx, t, map[string]int64{"a": 10})
	}},
	{"ConcurrentExpiryReturnsUnitsOnce", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 100})
		for range 40 {
			s.reserve(ctx, t, s.ttl(), line("a", 2))
		}
		s.passTTL()
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for range 8 {
			wg.Go(func() {
				for {
					n, err := s.Strategy.ExpireDue(ctx, 3)
					if !assert.NoError(t, err) || n == 0 {
						return
					}
					mu.Lock()
					total += n
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, 40, total)
		s.assertAvailable(ctx, t, map[string]int64{"a": 100})
	}},
	{"SweepersReturnAbandonedHoldsOnce", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 100, "b": 100})
		var abandoned, committed []inventory.Reservation
		for i := range 30 {
			r := s.reserve(ctx, t, s.ttl(), line("a", 1), line("b", 2))
			if i%3 == 0 {
				require.NoError(t, s.Strategy.Commit(ctx, r.ID))
				committed = append(committed, r)
			} else {
				abandoned = append(abandoned, r)
			}
		}
		s.passTTL()
		quiet := slog.New(slog.DiscardHandler)
		var wg sync.WaitGroup
		counts := make([]int, 2)
		for i := range counts {
			sw := inventory.NewSweeper(s.Strategy, &inventory.SweeperOptions{BatchSize: 4 + i, Logger: quiet})
			wg.Go(func() {
				n, err := sw.Sweep(ctx)
				assert.NoError(t, err)
				counts[i] = n
			})
		}
		wg.Wait()
		assert.Equal(t, len(abandoned), counts[0]+counts[1], "two sweepers together expire each abandoned hold once")
		s.assertAvailable(ctx, t, map[string]int64{"a": 90, "b": 80})
		for _, r := range abandoned {
			s.assertState(ctx, t, r.ID, inventory.Expired)
		}
		for _, r := range committed {
			s.assertState(ctx, t, r.ID, inventory.Committed)
		}
	}},
	{"CancelledContextChangesNothing", func(ctx context.Context, t *testing.T, s *suite) {
		s.stock(ctx, t, map[string]int64{"a": 10})
		r := s.reserve(ctx, t, 0, line("a", 1))
		dead, cancel := context.WithCancel(ctx)
		cancel()
		id := s.id(ctx, t)
		_, err := s.Strategy.Reserve(dead, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 2)}})
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, s.Strategy.Commit(dead, r.ID), context.Canceled)
		assert.ErrorIs(t, s.Strategy.Release(dead, r.ID), context.Canceled)
		_, err = s.Strategy.Lookup(ctx, id)
		assert.ErrorIs(t, err, inventory.ErrNotFound)
		s.assertState(ctx, t, r.ID, inventory.Held)
		s.assertAvailable(ctx, t, map[string]int64{"a": 9})
	}},
	{"CancelledMidCallLeavesNoPartialState", func(ctx context.Context, t *testing.T, s *suite) {
		rep, err := Hammer(ctx, HammerConfig{
			Strategy: s.Strategy, NewID: s.NewID, Advance: s.Advance,
			Workers: 16, SKUs: 5, Stock: 200, MaxLines: 3, OpsPerWorker: sizes.cancelOps, Duration: sizes.cancelFor,
			CancelFraction: 0.5, CancelWithin: 2 * time.Millisecond,
		})
		require.NoError(t, err)
		t.Log(rep)
		assertReport(t, rep)
		assert.GreaterOrEqual(t, rep.Deadlined, int64(minDeadlined), "calls made with a short deadline")
		faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s.Strategy), Fault: faultlog.ContextCancelled,
			Tried: rep.Reserves, Oversold: rep.Oversold, Lost: rep.Lost})
	}},
	{"LinearizableOneLineCarts", func(ctx context.Context, t *testing.T, s *suite) {
		s.linearizable(ctx, t, linConfig{SKUs: []string{"a", "b", "c"}}, s.BucketsApart)
	}},
	{"LinearizableTwoLineCarts", func(ctx context.Context, t *testing.T, s *suite) {
		s.linearizable(ctx, t, linConfig{
			SKUs:   []string{"a", "b", "c", "d"},
			Groups: [][]string{{"a", "b"}, {"c", "d"}}, TwoLines: 0.7,
		}, s.LinesTakenApart)
	}},
	{"HammerHotSKU", func(ctx context.Context, t *testing.T, s *suite) {
		rep, err := Hammer(ctx, HammerConfig{
			Strategy: s.Strategy, NewID: s.NewID, Advance: s.Advance,
			Workers: 64, SKUs: 1, Stock: sizes.hotStock, MaxQty: 3, SellOut: true, Settle: true,
		})
		require.NoError(t, err)
		t.Log(rep)
		assertReport(t, rep)
		assert.Equal(t, sizes.hotStock, rep.Granted, "units granted while demand exceeds supply")
		require.Len(t, rep.SKUs, 1)
		assert.Equal(t, rep.Released, rep.SKUs[0].Available, "available after settling equals the units released")
		assert.Equal(t, sizes.hotStock-rep.Released, rep.SKUs[0].Sold)
		assert.Zero(t, rep.SKUs[0].Held)
	}},
	{"HammerManySKUs", func(ctx context.Context, t *testing.T, s *suite) {
		rep, err := Hammer(ctx, HammerConfig{
			Strategy: s.Strategy, NewID: s.NewID, Advance: s.Advance,
			Workers: 64, SKUs: 20, Stock: sizes.manyStock, MaxQty: 3, MaxLines: 5, OpsPerWorker: sizes.manyOps,
		})
		require.NoError(t, err)
		t.Log(rep)
		assertReport(t, rep)
		assert.Positive(t, rep.Refused, "demand exceeded supply at least once")
	}},
}

// linearizable records a history of concurrent calls as cfg describes
// (with the suite's sizes filled in) and checks it against the model of the
// contract. With a reason the strategy gives for not taking a cart at once
// (Harness.LinesTakenApart), the verdict is logged, not asserted.
func (s *suite) linearizable(ctx context.Context, t *testing.T, cfg linConfig, apart string) {
	t.Helper()
	cfg.Strategy, cfg.NewID = s.Strategy, s.NewID
	cfg.Stock, cfg.Clients, cfg.Readers, cfg.Ops, cfg.Reads, cfg.CancelPct = 5, 5, 1, 14, 40, 0.1
	cfg.Seed = rand.Uint64()
	history, err := recordHistory(ctx, cfg)
	require.NoError(t, err)
	res, err := checkHistory(t.Name(), cfg.SKUs, cfg.Stock, history, LinearizabilityTimeout)
	require.NoError(t, err)
	t.Log(res)
	if apart != "" && res.Result == porcupine.Illegal {
		t.Logf("not linearizable, as the strategy says: %s", apart)
		return
	}
	assert.Equal(t, porcupine.Ok, res.Result, "%s (seed %d)", res, cfg.Seed)
}

// assertReport fails t for everything wrong in a hammer report.
func assertReport(t *testing.T, rep *Report) {
	t.Helper()
	assert.Zero(t, rep.Oversold, "units oversold")
	assert.Zero(t, rep.Lost, "units lost")
	assert.False(t, rep.NegativeSeen, "available seen below zero")
	for _, err := range rep.Unexpected {
		assert.Fail(t, "error outside the contract", "%v", err)
	}
	for _, s := range rep.SKUs {
		assert.Equal(t, s.Total, s.Available+s.Held+s.Sold, "%s: available %d + held %d + sold %d != total %d", s.SKU, s.Available, s.Held, s.Sold, s.Total)
	}
}
