package otelinventory

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/oversell/inventory"
)

// observe makes an asynchronous instrument for every Metric of rep's first
// snapshot, named inventory.<strategy>.<metric name>, and registers one
// callback that reads rep on every collection. A Metric whose name first
// appears in a later snapshot, or whose Kind is neither Counter nor Gauge, is
// not exported.
func observe(meter metric.Meter, strategy string, rep inventory.MetricsReporter, attrs measure) {
	type inst struct {
		counter metric.Float64ObservableCounter
		gauge   metric.Float64ObservableGauge
	}
	byName := make(map[string]inst)
	var all []metric.Observable
	for _, m := range rep.Metrics() {
		if _, dup := byName[m.Name]; dup {
			continue
		}
		name := "inventory." + strategy + "." + m.Name
		unit, desc := metric.WithUnit(m.Unit), metric.WithDescription(m.Description)
		var in inst
		var err error
		switch m.Kind {
		case inventory.Counter:
			in.counter, err = meter.Float64ObservableCounter(name, unit, desc)
			if in.counter != nil {
				all = append(all, in.counter)
			}
		case inventory.Gauge:
			in.gauge, err = meter.Float64ObservableGauge(name, unit, desc)
			if in.gauge != nil {
				all = append(all, in.gauge)
			}
		default:
			continue
		}
		if err != nil {
			otel.Handle(err)
		}
		byName[m.Name] = in
	}
	if len(all) == 0 {
		return
	}
	obsOpts := attrs.obs
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, m := range rep.Metrics() {
			in, ok := byName[m.Name]
			switch {
			case !ok:
			case in.counter != nil:
				o.ObserveFloat64(in.counter, m.Value, obsOpts...)
			case in.gauge != nil:
				o.ObserveFloat64(in.gauge, m.Value, obsOpts...)
			}
		}
		return nil
	}, all...)
	if err != nil {
		otel.Handle(err)
	}
}
