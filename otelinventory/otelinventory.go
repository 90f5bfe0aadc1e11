package otelinventory

import (
	"context"
	"path"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/oversell/inventory"
)

// scopeName names the instrumentation scope of every meter and tracer, as
// the OpenTelemetry docs recommend: the package's import path.
const scopeName = "github.com/oversell/inventory/otelinventory"

// Attribute keys.
const (
	// StrategyKey is the attribute naming the wrapped strategy, on every
	// instrument and span.
	StrategyKey = attribute.Key("strategy")
	// OutcomeKey is the attribute saying how a call ended, on every
	// instrument of calls and on spans.
	OutcomeKey = attribute.Key("outcome")

	// Span-only attributes.
	reservationIDKey = attribute.Key("inventory.reservation.id")
	skuKey           = attribute.Key("inventory.sku")
	skusKey          = attribute.Key("inventory.skus")
	linesKey         = attribute.Key("inventory.lines")
	unitsKey         = attribute.Key("inventory.units")
	ttlKey           = attribute.Key("inventory.ttl")
	limitKey         = attribute.Key("inventory.limit")
	expiredKey       = attribute.Key("inventory.expired")
	errorTypeKey     = attribute.Key("error.type") // semantic conventions
)

// Options configures Wrap. A nil *Options takes every default.
type Options struct {
	// MeterProvider makes the instruments. Default: the global provider
	// (otel.GetMeterProvider), a no-op until otel.SetMeterProvider is
	// called; the instruments follow it from then on.
	MeterProvider metric.MeterProvider
	// TracerProvider makes the spans. Default: the global provider
	// (otel.GetTracerProvider). While the global provider is not set, no
	// span is started at all, so that the wrapper costs nothing.
	TracerProvider trace.TracerProvider
	// Strategy is the value of the strategy attribute, and the middle of the
	// names of the wrapped strategy's own metrics
	// (inventory.<Strategy>.<metric name>). Default: the name of the package
	// that defines the wrapped strategy's type ("sqlcond" for a
	// *sqlcond.Reserver).
	Strategy string
}

// Wrap returns a Strategy that instruments every call to s (see the package
// documentation) and otherwise behaves exactly as s. When s implements
// inventory.MetricsReporter, its metrics are read on every collection. When s
// issues its own request IDs (a NewID(ctx) (string, error) method, as
// strategy.IDIssuer), so does the returned Strategy. The returned Strategy
// has an Unwrap() inventory.Strategy method that returns s.
func Wrap(s inventory.Strategy, opts *Options) inventory.Strategy {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Strategy == "" {
		o.Strategy = typePackage(s)
	}
	if s == nil {
		s = nilStrategy{}
	}
	w := newWrapped(s, &o)
	if is, ok := s.(idIssuer); ok {
		return &issuing{wrapped: w, issuer: is}
	}
	return w
}

// idIssuer is strategy.IDIssuer, spelled out so that this package does not
// depend on every strategy.
type idIssuer interface {
	NewID(ctx context.Context) (string, error)
}

// issuing is a wrapped strategy that also issues the IDs it accepts.
type issuing struct {
	*wrapped
	issuer idIssuer
}

// NewID returns a request ID from the wrapped strategy.
func (s *issuing) NewID(ctx context.Context) (string, error) { return s.issuer.NewID(ctx) }

// An op is an instrumented method.
type op int

const (
	opReserve op = iota
	opCommit
	opRelease
	opAvailable
	opLookup
	opSetStock
	opAddStock
	opExpireDue
	opCancel
	opPurge
	opRebalance
	opLevels
	opExtend
	numOps
)

// opNames name the ops in instrument and span names.
var opNames = [numOps]string{"reserve", "commit", "release", "available", "lookup", "set_stock", "add_stock", "expire_due", "cancel", "purge", "rebalance", "levels", "extend"}

// opDescriptions describe the duration instrument of each op.
var opDescriptions = [numOps]string{
	"Duration of Reserve calls: holding the units of a cart.",
	"Duration of Commit calls: selling the units of a hold.",
	"Duration of Release calls: returning the units of a hold.",
	"Duration of Available calls.",
	"Duration of Lookup calls.",
	"Duration of SetStock calls.",
	"Duration of AddStock calls.",
	"Duration of ExpireDue calls: returning the units of overdue holds.",
	"Duration of Cancel calls: releasing a hold, or recording an ID as cancelled.",
	"Duration of Purge calls: deleting settled reservations past their retention.",
	"Duration of Rebalance calls: moving units between a SKU's stock buckets.",
	"Duration of Levels calls: reading a SKU's stock levels.",
	"Duration of Extend calls: keeping a hold longer.",
}

// durationBuckets are the bounds of the duration histograms, in seconds: from
// an in-process call (tens of microseconds) to a lock wait of seconds.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// measure holds the options of one measurement, made once, so that a call
// builds no attribute set and allocates no option slice.
type measure struct {
	rec []metric.RecordOption
	add []metric.AddOption
	obs []metric.ObserveOption
}

// traceMode says when a wrapped strategy starts spans.
type traceMode int

const (
	traceAlways      traceMode = iota // Options.TracerProvider set
	traceNever                        // a no-op provider was given
	traceIfGlobalSet                  // the global provider, once it is set
)

// wrapped is the Strategy Wrap returns.
type wrapped struct {
	inner inventory.Strategy

	tracer    trace.Tracer
	traceMode traceMode
	spanNames [numOps]string
	spanOpts  []trace.SpanStartOption

	durations    [numOps]metric.Float64Histogram
	reservations metric.Int64Counter
	commits      metric.Int64Counter
	releases     metric.Int64Counter
	cancels      metric.Int64Counter
	expiries     metric.Int64Counter

	// measures[op][outcome] carries the strategy and outcome attributes;
	// plain carries the strategy attribute alone.
	measures [numOps][numOutcomes]measure
	plain    measure
	strategy attribute.KeyValue
}

var _ inventory.Strategy = (*wrapped)(nil)

func newWrapped(s inventory.Strategy, o *Options) *wrapped {
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tp := o.TracerProvider
	mode := traceAlways
	switch {
	case tp == nil:
		tp, mode = otel.GetTracerProvider(), traceIfGlobalSet
	case isNoopTracerProvider(tp):
		mode = traceNever
	}
	meter := mp.Meter(scopeName)
	w := &wrapped{
		inner:     s,
		tracer:    tp.Tracer(scopeName),
		traceMode: mode,
		strategy:  StrategyKey.String(o.Strategy),
	}
	w.spanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(w.strategy)}

	for i := range numOps {
		w.spanNames[i] = "inventory." + opNames[i]
		w.durations[i] = histogram(meter, "inventory."+opNames[i]+".duration", opDescriptions[i])
		for j := range numOutcomes {
			name := outcomeNames[j]
			if op(i) == opReserve && outcome(j) == outcomeOK {
				name = "granted"
			}
			w.measures[i][j] = newMeasure(attribute.NewSet(w.strategy, OutcomeKey.String(name)))
		}
	}
	w.plain = newMeasure(attribute.NewSet(w.strategy))
	w.reservations = counter(meter, "inventory.reservations", "{reservation}", "Reserve calls, by outcome: granted, or why not.")
	w.commits = counter(meter, "inventory.commits", "{reservation}", "Commit calls, by outcome.")
	w.releases = counter(meter, "inventory.releases", "{reservation}", "Release calls, by outcome.")
	w.cancels = counter(meter, "inventory.cancels", "{reservation}", "Cancel calls, by outcome.")
	w.expiries = counter(meter, "inventory.expiries", "{reservation}", "Holds whose TTL passed that ExpireDue expired, returning their units.")

	if rep, ok := s.(inventory.MetricsReporter); ok {
		observe(meter, o.Strategy, rep, w.plain)
	}
	return w
}

func newMeasure(set attribute.Set) measure {
	opt := metric.WithAttributeSet(set)
	return measure{rec: []metric.RecordOption{opt}, add: []metric.AddOption{opt}, obs: []metric.ObserveOption{opt}}
}

func histogram(m metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	if h == nil {
		return noop.Float64Histogram{}
	}
	return h
}

func counter(m metric.Meter, name, unit, desc string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	if err != nil {
		otel.Handle(err)
	}
	if c == nil {
		return noop.Int64Counter{}
	}
	return c
}

// Unwrap returns the strategy w instruments.
func (w *wrapped) Unwrap() inventory.Strategy { return w.inner }

// Reserve calls the wrapped Reserve and records it.
func (w *wrapped) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	ctx, span := w.start(ctx, opReserve)
	if span != nil {
		span.SetAttributes(requestAttributes(req)...)
	}
	begin := time.Now()
	res, err := w.inner.Reserve(ctx, req)
	m := w.finish(ctx, opReserve, begin, span, err)
	w.reservations.Add(ctx, 1, m.add...)
	return res, err
}

// Commit calls the wrapped Commit and records it.
func (w *wrapped) Commit(ctx context.Context, id string) error {
	ctx, span := w.start(ctx, opCommit)
	if span != nil {
		span.SetAttributes(reservationIDKey.String(id))
	}
	begin := time.Now()
	err := w.inner.Commit(ctx, id)
	m := w.finish(ctx, opCommit, begin, span, err)
	w.commits.Add(ctx, 1, m.add...)
	return err
}

// Release calls the wrapped Release and records it.
func (w *wrapped) Release(ctx context.Context, id string) error {
	ctx, span := w.start(ctx, opRelease)
	if span != nil {
		span.SetAttributes(reservationIDKey.String(id))
	}
	begin := time.Now()
	err := w.inner.Release(ctx, id)
	m := w.finish(ctx, opRelease, begin, span, err)
	w.releases.Add(ctx, 1, m.add...)
	return err
}

// Cancel calls the wrapped Cancel and records it.
func (w *wrapped) Cancel(ctx context.Context, id string) error {
	ctx, span := w.start(ctx, opCancel)
	if span != nil {
		span.SetAttributes(reservationIDKey.String(id))
	}
	begin := time.Now()
	err := w.inner.Cancel(ctx, id)
	m := w.finish(ctx, opCancel, begin, span, err)
	w.cancels.Add(ctx, 1, m.add...)
	return err
}

// Available calls the wrapped Available and records it.
func (w *wrapped) Available(ctx context.Context, sku string) (int64, error) {
	ctx, span := w.start(ctx, opAvailable)
	if span != nil {
		span.SetAttributes(skuKey.String(sku))
	}
	begin := time.Now()
	n, err := w.inner.Available(ctx, sku)
	if span != nil && err == nil {
		span.SetAttributes(unitsKey.Int64(n))
	}
	w.finish(ctx, opAvailable, begin, span, err)
	return n, err
}

// Lookup calls the wrapped Lookup and records it.
func (w *wrapped) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	ctx, span := w.start(ctx, opLookup)
	if span != nil {
		span.SetAttributes(reservationIDKey.String(id))
	}
	begin := time.Now()
	res, err := w.inner.Lookup(ctx, id)
	w.finish(ctx, opLookup, begin, span, err)
	return res, err
}

// SetStock calls the wrapped SetStock and records it.
func (w *wrapped) SetStock(ctx context.Context, sku string, available int64) error {
	ctx, span := w.start(ctx, opSetStock)
	if span != nil {
		span.SetAttributes(skuKey.String(sku), unitsKey.Int64(available))
	}
	begin := time.Now()
	err := w.inner.SetStock(ctx, sku, available)
	w.finish(ctx, opSetStock, begin, span, err)
	return err
}

// AddStock calls the wrapped AddStock and records it.
func (w *wrapped) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	ctx, span := w.start(ctx, opAddStock)
	if span != nil {
		span.SetAttributes(skuKey.String(sku), unitsKey.Int64(delta))
	}
	begin := time.Now()
	n, err := w.inner.AddStock(ctx, sku, delta)
	w.finish(ctx, opAddStock, begin, span, err)
	return n, err
}

// ExpireDue calls the wrapped ExpireDue, records it, and counts the holds it
// expired.
func (w *wrapped) ExpireDue(ctx context.Context, limit int) (int, error) {
	ctx, span := w.start(ctx, opExpireDue)
	if span != nil {
		span.SetAttributes(limitKey.Int(limit))
	}
	begin := time.Now()
	n, err := w.inner.ExpireDue(ctx, limit)
	if span != nil {
		span.SetAttributes(expiredKey.Int(n))
	}
	w.finish(ctx, opExpireDue, begin, span, err)
	if n > 0 {
		w.expiries.Add(ctx, int64(n), w.plain.add...)
	}
	return n, err
}

// SetStockWith calls the wrapped strategy's SetStockWith (see
// inventory.SetStockWith) and records it as a SetStock.
func (w *wrapped) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	ctx, span := w.start(ctx, opSetStock)
	if span != nil {
		span.SetAttributes(skuKey.String(sku), unitsKey.Int64(available))
	}
	begin := time.Now()
	err := inventory.SetStockWith(ctx, w.inner, sku, available, opts)
	w.finish(ctx, opSetStock, begin, span, err)
	return err
}

// Rebalance calls the wrapped strategy's Rebalance (see inventory.Rebalance)
// and records it.
func (w *wrapped) Rebalance(ctx context.Context, sku string) error {
	ctx, span := w.start(ctx, opRebalance)
	if span != nil {
		span.SetAttributes(skuKey.String(sku))
	}
	begin := time.Now()
	err := inventory.Rebalance(ctx, w.inner, sku)
	w.finish(ctx, opRebalance, begin, span, err)
	return err
}

// Levels calls the wrapped strategy's Levels (see inventory.StockLevels:
// a strategy that does not offer it refuses with inventory.ErrUnsupported)
// and records it.
func (w *wrapped) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	ctx, span := w.start(ctx, opLevels)
	if span != nil {
		span.SetAttributes(skuKey.String(sku))
	}
	begin := time.Now()
	l, err := inventory.StockLevels(ctx, w.inner, sku)
	w.finish(ctx, opLevels, begin, span, err)
	return l, err
}

// Extend calls the wrapped strategy's Extend (see inventory.Extend: a
// strategy that does not offer it refuses with inventory.ErrUnsupported) and
// records it.
func (w *wrapped) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	ctx, span := w.start(ctx, opExtend)
	if span != nil {
		span.SetAttributes(reservationIDKey.String(id))
	}
	begin := time.Now()
	res, err := inventory.Extend(ctx, w.inner, id, ttl)
	w.finish(ctx, opExtend, begin, span, err)
	return res, err
}

// Purge calls the wrapped strategy's Purge (see inventory.Purge), so that a
// Sweeper on the wrapper purges, and records it.
func (w *wrapped) Purge(ctx context.Context, limit int) (int, error) {
	ctx, span := w.start(ctx, opPurge)
	if span != nil {
		span.SetAttributes(limitKey.Int(limit))
	}
	begin := time.Now()
	n, err := inventory.Purge(ctx, w.inner, limit)
	w.finish(ctx, opPurge, begin, span, err)
	return n, err
}

// start starts the span of a call, if spans are on, and returns the context
// to call the wrapped strategy with. The span is nil when they are off.
func (w *wrapped) start(ctx context.Context, o op) (context.Context, trace.Span) {
	switch w.traceMode {
	case traceNever:
		return ctx, nil
	case traceIfGlobalSet:
		if !globalTracerSet() {
			return ctx, nil
		}
	}
	ctx, span := w.tracer.Start(ctx, w.spanNames[o], w.spanOpts...)
	if !span.IsRecording() {
		span.End()
		return ctx, nil
	}
	return ctx, span
}

// finish records the duration and outcome of a call, ends its span, and
// returns the measurement options of its outcome.
func (w *wrapped) finish(ctx context.Context, o op, begin time.Time, span trace.Span, err error) measure {
	oc := classify(err)
	m := w.measures[o][oc]
	w.durations[o].Record(ctx, time.Since(begin).Seconds(), m.rec...)
	if span != nil {
		name := outcomeNames[oc]
		if o == opReserve && oc == outcomeOK {
			name = "granted"
		}
		span.SetAttributes(OutcomeKey.String(name))
		if oc.failed() {
			span.SetAttributes(errorTypeKey.String(name))
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return m
}

// requestAttributes are the span attributes of a Reserve request.
func requestAttributes(req inventory.Request) []attribute.KeyValue {
	skus := make([]string, len(req.Lines))
	var units int64
	for i, l := range req.Lines {
		skus[i] = l.SKU
		units += l.Qty
	}
	return []attribute.KeyValue{
		reservationIDKey.String(req.ID),
		skusKey.StringSlice(skus),
		linesKey.Int(len(req.Lines)),
		unitsKey.Int64(units),
		ttlKey.Float64(req.TTL.Seconds()),
	}
}

// globalTracerSet reports whether otel.SetTracerProvider was called: until
// then the global provider is the API's own delegating one, whose spans
// record nothing.
func globalTracerSet() bool {
	tp := otel.GetTracerProvider()
	if isNoopTracerProvider(tp) {
		return false
	}
	t := reflect.TypeOf(tp)
	return t.Kind() != reflect.Pointer || t.Elem().PkgPath() != "go.opentelemetry.io/otel/internal/global"
}

func isNoopTracerProvider(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return true
	}
	return false
}

// typePackage returns the last element of the import path of the package
// that defines the type of s, or "unknown".
func typePackage(s inventory.Strategy) string {
	t := reflect.TypeOf(s)
	if t == nil {
		return "unknown"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if p := t.PkgPath(); p != "" {
		return path.Base(p)
	}
	return "unknown"
}

// errNilStrategy is what every call of a Wrap of nil returns.
var errNilStrategy = &inventory.ValidationError{Field: "Strategy", Reason: "nil"}

// nilStrategy stands in for a nil Strategy: every call fails.
type nilStrategy struct{}

func (nilStrategy) Reserve(context.Context, inventory.Request) (inventory.Reservation, error) {
	return inventory.Reservation{}, errNilStrategy
}
func (nilStrategy) Commit(context.Context, string) error                   { return errNilStrategy }
func (nilStrategy) Release(context.Context, string) error                  { return errNilStrategy }
func (nilStrategy) Cancel(context.Context, string) error                   { return errNilStrategy }
func (nilStrategy) Available(context.Context, string) (int64, error)       { return 0, errNilStrategy }
func (nilStrategy) SetStock(context.Context, string, int64) error          { return errNilStrategy }
func (nilStrategy) AddStock(context.Context, string, int64) (int64, error) { return 0, errNilStrategy }
func (nilStrategy) ExpireDue(context.Context, int) (int, error)            { return 0, errNilStrategy }
func (nilStrategy) Purge(context.Context, int) (int, error)                { return 0, errNilStrategy }
func (nilStrategy) Rebalance(context.Context, string) error                { return errNilStrategy }
func (nilStrategy) SetStockWith(context.Context, string, int64, inventory.StockOptions) error {
	return errNilStrategy
}
func (nilStrategy) Lookup(context.Context, string) (inventory.Reservation, error) {
	return inventory.Reservation{}, errNilStrategy
}
