package otelinventory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/otelinventory"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

// telemetry is an SDK meter and tracer provider whose data a test reads.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	opts   *otelinventory.Options
}

func newTelemetry(t testing.TB, strategyName string) *telemetry {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	return &telemetry{reader: reader, spans: spans, opts: &otelinventory.Options{MeterProvider: mp, TracerProvider: tp, Strategy: strategyName}}
}

// collect returns every metric by name.
func (tm *telemetry) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tm.reader.Collect(context.Background(), &rm))
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, "github.com/oversell/inventory/otelinventory", sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// key names a data point by its attributes, "strategy=memory,outcome=granted"
// style (in the set's order: outcome before strategy).
func key(set attribute.Set) string {
	s := ""
	for _, kv := range set.ToSlice() {
		if s != "" {
			s += ","
		}
		s += string(kv.Key) + "=" + kv.Value.Emit()
	}
	return s
}

// sums returns the points of a counter by attribute key.
func sums(t *testing.T, m metricdata.Metrics) map[string]int64 {
	t.Helper()
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 sum, not %T", m.Name, m.Data)
	assert.True(t, sum.IsMonotonic, "%s is a counter", m.Name)
	out := make(map[string]int64)
	for _, dp := range sum.DataPoints {
		out[key(dp.Attributes)] = dp.Value
	}
	return out
}

// counts returns the number of observations of a histogram by attribute key.
func counts(t *testing.T, m metricdata.Metrics) map[string]uint64 {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a float64 histogram, not %T", m.Name, m.Data)
	out := make(map[string]uint64)
	for _, dp := range h.DataPoints {
		out[key(dp.Attributes)] = dp.Count
		if lo, ok := dp.Min.Value(); ok {
			assert.GreaterOrEqual(t, lo, 0.0, "durations are not negative")
		}
	}
	return out
}

func line(sku string, qty int64) inventory.Line { return inventory.Line{SKU: sku, Qty: qty} }

func TestConformance(t *testing.T) {
	t.Run("Configured", func(t *testing.T) {
		strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
			clk := strategytest.NewClock()
			tm := newTelemetry(t, "memory")
			return &strategytest.Harness{Strategy: otelinventory.Wrap(memory.New(&memory.Options{Now: clk.Now}), tm.opts), Advance: clk.Advance}
		})
	})
	t.Run("Unconfigured", func(t *testing.T) {
		strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
			clk := strategytest.NewClock()
			return &strategytest.Harness{Strategy: otelinventory.Wrap(memory.New(&memory.Options{Now: clk.Now}), nil), Advance: clk.Advance}
		})
	})
}

func TestMetricsCountEveryOutcome(t *testing.T) {
	ctx := context.Background()
	tm := newTelemetry(t, "memory")
	clk := strategytest.NewClock()
	inv := otelinventory.Wrap(memory.New(&memory.Options{Now: clk.Now}), tm.opts)

	require.NoError(t, inv.SetStock(ctx, "tee", 5))
	_, err := inv.AddStock(ctx, "tee", 1)
	require.NoError(t, err)
	for _, id := range []string{"a", "b", "c"} {
		_, err := inv.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("tee", 2)}, TTL: time.Minute})
		require.NoError(t, err, id)
	}
	_, err = inv.Reserve(ctx, inventory.Request{ID: "a", Lines: []inventory.Line{line("tee", 2)}})
	require.NoError(t, err, "a replay is granted again")
	_, err = inv.Reserve(ctx, inventory.Request{ID: "d", Lines: []inventory.Line{line("tee", 1)}})
	require.ErrorIs(t, err, inventory.ErrInsufficientStock)
	_, err = inv.Reserve(ctx, inventory.Request{ID: "e", Lines: []inventory.Line{line("mug", 1)}})
	require.ErrorIs(t, err, inventory.ErrUnknownSKU)
	_, err = inv.Reserve(ctx, inventory.Request{ID: "a", Lines: []inventory.Line{line("tee", 1)}})
	require.ErrorIs(t, err, inventory.ErrConflict)
	_, err = inv.Reserve(ctx, inventory.Request{ID: "", Lines: []inventory.Line{line("tee", 1)}})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	require.NoError(t, inv.Commit(ctx, "a"))
	require.NoError(t, inv.Commit(ctx, "a"), "idempotent")
	require.NoError(t, inv.Release(ctx, "b"))
	require.ErrorIs(t, inv.Commit(ctx, "b"), inventory.ErrNotHeld)
	require.ErrorIs(t, inv.Release(ctx, "zz"), inventory.ErrNotFound)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = inv.Reserve(cancelled, inventory.Request{ID: "f", Lines: []inventory.Line{line("tee", 1)}})
	require.ErrorIs(t, err, context.Canceled)
	clk.Advance(2 * time.Minute)
	n, err := inv.ExpireDue(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n, "c expired")
	n, err = inv.ExpireDue(ctx, 10)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = inv.Available(ctx, "tee")
	require.NoError(t, err)
	_, err = inv.Lookup(ctx, "a")
	require.NoError(t, err)

	ms := tm.collect(t)
	assert.Equal(t, map[string]int64{
		"outcome=granted,strategy=memory":            4,
		"outcome=insufficient_stock,strategy=memory": 1,
		"outcome=unknown_sku,strategy=memory":        1,
		"outcome=conflict,strategy=memory":           1,
		"outcome=invalid,strategy=memory":            1,
		"outcome=canceled,strategy=memory":           1,
	}, sums(t, ms["inventory.reservations"]))
	assert.Equal(t, map[string]int64{
		"outcome=ok,strategy=memory":       2,
		"outcome=not_held,strategy=memory": 1,
	}, sums(t, ms["inventory.commits"]))
	assert.Equal(t, map[string]int64{
		"outcome=ok,strategy=memory":        1,
		"outcome=not_found,strategy=memory": 1,
	}, sums(t, ms["inventory.releases"]))
	assert.Equal(t, map[string]int64{"strategy=memory": 1}, sums(t, ms["inventory.expiries"]))

	assert.Equal(t, map[string]uint64{
		"outcome=granted,strategy=memory":            4,
		"outcome=insufficient_stock,strategy=memory": 1,
		"outcome=unknown_sku,strategy=memory":        1,
		"outcome=conflict,strategy=memory":           1,
		"outcome=invalid,strategy=memory":            1,
		"outcome=canceled,strategy=memory":           1,
	}, counts(t, ms["inventory.reserve.duration"]))
	for name, want := range map[string]map[string]uint64{
		"inventory.commit.duration":     {"outcome=ok,strategy=memory": 2, "outcome=not_held,strategy=memory": 1},
		"inventory.release.duration":    {"outcome=ok,strategy=memory": 1, "outcome=not_found,strategy=memory": 1},
		"inventory.expire_due.duration": {"outcome=ok,strategy=memory": 2},
		"inventory.available.duration":  {"outcome=ok,strategy=memory": 1},
		"inventory.lookup.duration":     {"outcome=ok,strategy=memory": 1},
		"inventory.set_stock.duration":  {"outcome=ok,strategy=memory": 1},
		"inventory.add_stock.duration":  {"outcome=ok,strategy=memory": 1},
	} {
		assert.Equal(t, want, counts(t, ms[name]), name)
	}

	for name, m := range ms {
		switch {
		case name == "inventory.expiries" || name == "inventory.reservations" || name == "inventory.commits" || name == "inventory.releases":
			assert.Equal(t, "{reservation}", m.Unit, name)
		default:
			assert.Equal(t, "s", m.Unit, name)
		}
		assert.NotEmpty(t, m.Description, name)
	}
	assert.Len(t, ms, 12, "eight durations and four counters, no more")
}

// errStrategy is a memory strategy whose Reserve, Commit and Release fail
// with err.
type errStrategy struct {
	*memory.Reserver
	err error
}

func (s *errStrategy) Reserve(context.Context, inventory.Request) (inventory.Reservation, error) {
	return inventory.Reservation{}, s.err
}
func (s *errStrategy) Commit(context.Context, string) error  { return s.err }
func (s *errStrategy) Release(context.Context, string) error { return s.err }

func TestOutcomeOfEveryError(t *testing.T) {
	transport := errors.New("read tcp: connection reset by peer")
	for _, tc := range []struct {
		err    error
		want   string
		failed bool // the span's status is Error
	}{
		{&inventory.ValidationError{Field: "ID", Reason: "empty"}, "invalid", false},
		{&inventory.InsufficientStockError{SKU: "tee", Requested: 2, Available: 1}, "insufficient_stock", false},
		{&inventory.UnknownSKUError{SKU: "tee"}, "unknown_sku", false},
		{fmt.Errorf("lookup: %w", inventory.ErrNotFound), "not_found", false},
		{inventory.ErrConflict, "conflict", false},
		{&inventory.StateError{ID: "a", Op: "commit", State: inventory.Released}, "not_held", false},
		{fmt.Errorf("lock wait: %w", inventory.ErrContended), "contended", true},
		{&inventory.OutcomeUnknownError{Op: "reserve", ID: "a", Err: transport}, "outcome_unknown", true},
		{&inventory.OutcomeUnknownError{Op: "reserve", ID: "a", Err: context.Canceled}, "outcome_unknown", true},
		{&inventory.UnavailableError{Op: "reserve", Server: "postgres", Err: transport}, "unavailable", true},
		{fmt.Errorf("reserve: %w", context.Canceled), "canceled", true},
		{context.DeadlineExceeded, "deadline_exceeded", true},
		{transport, "error", true},
	} {
		t.Run(tc.want, func(t *testing.T) {
			ctx := context.Background()
			tm := newTelemetry(t, "broken")
			inv := otelinventory.Wrap(&errStrategy{Reserver: memory.New(nil), err: tc.err}, tm.opts)
			_, err := inv.Reserve(ctx, inventory.Request{ID: "a", Lines: []inventory.Line{line("tee", 1)}})
			require.True(t, err == tc.err, "the error passes through untouched: %v", err)
			require.True(t, inv.Commit(ctx, "a") == tc.err)
			require.True(t, inv.Release(ctx, "a") == tc.err)

			ms := tm.collect(t)
			want := map[string]int64{"outcome=" + tc.want + ",strategy=broken": 1}
			assert.Equal(t, want, sums(t, ms["inventory.reservations"]))
			assert.Equal(t, want, sums(t, ms["inventory.commits"]))
			assert.Equal(t, want, sums(t, ms["inventory.releases"]))

			spans := tm.spans.Ended()
			require.Len(t, spans, 3)
			for _, s := range spans {
				assert.Equal(t, attribute.StringValue(tc.want), attrOf(s, "outcome"), s.Name())
				if tc.failed {
					assert.Equal(t, codes.Error, s.Status().Code, s.Name())
					assert.Equal(t, tc.err.Error(), s.Status().Description)
					assert.Equal(t, attribute.StringValue(tc.want), attrOf(s, "error.type"))
					require.Len(t, s.Events(), 1, "the error is recorded")
					assert.Equal(t, "exception", s.Events()[0].Name)
				} else {
					assert.Equal(t, codes.Unset, s.Status().Code, "%s: a refusal is an answer, not a failure", s.Name())
					assert.Empty(t, s.Events())
				}
			}
		})
	}
}

func attrOf(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// clientStrategy stands in for a strategy whose database client is
// instrumented (otelpgx, redisotel): each call starts a span of the client
// from the context it was given.
type clientStrategy struct {
	*memory.Reserver
	tracer trace.Tracer
}

func (s *clientStrategy) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	_, span := s.tracer.Start(ctx, "UPDATE stock", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	return s.Reserver.Reserve(ctx, req)
}

func TestSpansNestUnderTheCallerAndOverTheClient(t *testing.T) {
	ctx := context.Background()
	tm := newTelemetry(t, "sqlcond")
	tracer := tm.opts.TracerProvider.Tracer("client")
	mem := memory.New(nil)
	require.NoError(t, mem.SetStock(ctx, "tee", 10))
	require.NoError(t, mem.SetStock(ctx, "mug", 10))
	inv := otelinventory.Wrap(&clientStrategy{Reserver: mem, tracer: tracer}, tm.opts)

	ctx, parent := tracer.Start(ctx, "POST /reservations", trace.WithSpanKind(trace.SpanKindServer))
	_, err := inv.Reserve(ctx, inventory.Request{ID: "order-7", Lines: []inventory.Line{line("tee", 2), line("mug", 1)}, TTL: time.Minute})
	require.NoError(t, err)
	require.NoError(t, inv.Commit(ctx, "order-7"))
	parent.End()

	byName := make(map[string]sdktrace.ReadOnlySpan)
	for _, s := range tm.spans.Ended() {
		byName[s.Name()] = s
	}
	require.Len(t, byName, 4)
	server, reserve, client, commit := byName["POST /reservations"], byName["inventory.reserve"], byName["UPDATE stock"], byName["inventory.commit"]
	require.NotNil(t, reserve)
	require.NotNil(t, client)
	require.NotNil(t, commit)
	assert.Equal(t, server.SpanContext().SpanID(), reserve.Parent().SpanID(), "reserve nests under the caller's span")
	assert.Equal(t, server.SpanContext().SpanID(), commit.Parent().SpanID())
	assert.Equal(t, reserve.SpanContext().SpanID(), client.Parent().SpanID(), "the client's span nests under reserve")
	assert.Equal(t, server.SpanContext().TraceID(), client.SpanContext().TraceID())
	assert.Equal(t, trace.SpanKindInternal, reserve.SpanKind())

	assert.Equal(t, attribute.StringValue("sqlcond"), attrOf(reserve, "strategy"))
	assert.Equal(t, attribute.StringValue("granted"), attrOf(reserve, "outcome"))
	assert.Equal(t, attribute.StringValue("order-7"), attrOf(reserve, "inventory.reservation.id"))
	assert.Equal(t, attribute.StringSliceValue([]string{"tee", "mug"}), attrOf(reserve, "inventory.skus"))
	assert.Equal(t, attribute.IntValue(2), attrOf(reserve, "inventory.lines"))
	assert.Equal(t, attribute.Int64Value(3), attrOf(reserve, "inventory.units"))
	assert.Equal(t, attribute.Float64Value(60), attrOf(reserve, "inventory.ttl"))
	assert.Equal(t, codes.Unset, reserve.Status().Code)
	assert.Equal(t, attribute.StringValue("order-7"), attrOf(commit, "inventory.reservation.id"))
	assert.Equal(t, attribute.StringValue("ok"), attrOf(commit, "outcome"))

	// SKUs and IDs are on spans only: no data point of any instrument has an
	// attribute other than strategy and outcome.
	for name, m := range tm.collect(t) {
		var sets []attribute.Set
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				sets = append(sets, dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				sets = append(sets, dp.Attributes)
			}
		}
		require.NotEmpty(t, sets, name)
		for _, set := range sets {
			for _, kv := range set.ToSlice() {
				assert.Contains(t, []attribute.Key{"strategy", "outcome"}, kv.Key, "%s has attribute %s", name, kv.Key)
			}
		}
	}
}

// reporting is a memory strategy with internal signals.
type reporting struct {
	*memory.Reserver
	mu      sync.Mutex
	flushes float64
	depth   float64
}

func (r *reporting) set(flushes, depth float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes, r.depth = flushes, depth
}

func (r *reporting) Metrics() []inventory.Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	return []inventory.Metric{
		{Name: "flushes", Unit: "{flush}", Description: "Flushes so far.", Kind: inventory.Counter, Value: r.flushes},
		{Name: "queue.depth", Unit: "{request}", Description: "Requests waiting.", Kind: inventory.Gauge, Value: r.depth},
		{Name: "bogus", Unit: "1", Description: "No kind: not exported.", Value: 1},
	}
}

func TestMetricsReporterSignalsAreObserved(t *testing.T) {
	tm := newTelemetry(t, "batcher")
	rep := &reporting{Reserver: memory.New(nil)}
	rep.set(3, 7)
	otelinventory.Wrap(rep, tm.opts)

	read := func() (float64, float64) {
		ms := tm.collect(t)
		assert.NotContains(t, ms, "inventory.batcher.bogus")
		flushes, depth := ms["inventory.batcher.flushes"], ms["inventory.batcher.queue.depth"]
		assert.Equal(t, "{flush}", flushes.Unit)
		assert.Equal(t, "Requests waiting.", depth.Description)
		sum, ok := flushes.Data.(metricdata.Sum[float64])
		require.True(t, ok, "flushes is a float64 sum, not %T", flushes.Data)
		require.True(t, sum.IsMonotonic)
		require.Len(t, sum.DataPoints, 1)
		assert.Equal(t, "strategy=batcher", key(sum.DataPoints[0].Attributes))
		gauge, ok := depth.Data.(metricdata.Gauge[float64])
		require.True(t, ok, "queue.depth is a float64 gauge, not %T", depth.Data)
		require.Len(t, gauge.DataPoints, 1)
		return sum.DataPoints[0].Value, gauge.DataPoints[0].Value
	}
	f, d := read()
	assert.Equal(t, 3.0, f)
	assert.Equal(t, 7.0, d)
	rep.set(5, 0)
	f, d = read()
	assert.Equal(t, 5.0, f, "read again on every collection")
	assert.Equal(t, 0.0, d)
}

func TestIDIssuerAndUnwrapStayReachable(t *testing.T) {
	ctx := context.Background()
	tok, closeTok, err := strategy.Open(ctx, "token", &strategy.Config{TokenInner: "memory"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = closeTok(ctx) })
	tm := newTelemetry(t, "token")
	inv := otelinventory.Wrap(tok, tm.opts)

	_, ok := inv.(strategy.IDIssuer)
	require.True(t, ok, "a wrapped IDIssuer issues IDs")
	id, err := strategy.NewIDFunc(inv)(ctx)
	require.NoError(t, err)
	require.NoError(t, inv.SetStock(ctx, "tee", 1))
	_, err = inv.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("tee", 1)}})
	require.NoError(t, err, "the token strategy takes the IDs the wrapper issued")
	_, err = inv.Reserve(ctx, inventory.Request{ID: "not-a-token", Lines: []inventory.Line{line("tee", 1)}})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)

	u, ok := inv.(interface{ Unwrap() inventory.Strategy })
	require.True(t, ok)
	assert.Same(t, tok, u.Unwrap())

	mem := memory.New(nil)
	plain := otelinventory.Wrap(mem, nil)
	_, ok = plain.(strategy.IDIssuer)
	assert.False(t, ok, "a strategy that issues no IDs is not made to")
	assert.Same(t, mem, plain.(interface{ Unwrap() inventory.Strategy }).Unwrap())
}

func TestWrapNilFailsInsteadOfPanicking(t *testing.T) {
	ctx := context.Background()
	inv := otelinventory.Wrap(nil, nil)
	_, err := inv.Reserve(ctx, inventory.Request{ID: "a", Lines: []inventory.Line{line("tee", 1)}})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	require.ErrorIs(t, inv.Commit(ctx, "a"), inventory.ErrInvalidRequest)
	require.ErrorIs(t, inv.Release(ctx, "a"), inventory.ErrInvalidRequest)
	_, err = inv.Available(ctx, "tee")
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	_, err = inv.Lookup(ctx, "a")
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	require.ErrorIs(t, inv.SetStock(ctx, "tee", 1), inventory.ErrInvalidRequest)
	_, err = inv.AddStock(ctx, "tee", 1)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
	_, err = inv.ExpireDue(ctx, 1)
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)
}

func TestDefaultStrategyNameIsThePackage(t *testing.T) {
	tm := newTelemetry(t, "")
	tm.opts.Strategy = ""
	inv := otelinventory.Wrap(memory.New(nil), tm.opts)
	require.NoError(t, inv.SetStock(context.Background(), "tee", 1))
	assert.Equal(t, map[string]uint64{"outcome=ok,strategy=memory": 1}, counts(t, tm.collect(t)["inventory.set_stock.duration"]))
}
