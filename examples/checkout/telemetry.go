package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/otelinventory"
)

// telemetry is the service's metrics: an OpenTelemetry MeterProvider whose
// exporter is a Prometheus registry of the service's own, served at
// GET /metrics.
type telemetry struct {
	provider *sdkmetric.MeterProvider
	metrics  http.Handler
}

func newTelemetry() (*telemetry, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	return &telemetry{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// instrument returns inv recording its calls under the strategy name.
func (t *telemetry) instrument(inv inventory.Strategy, name string) inventory.Strategy {
	return otelinventory.Wrap(inv, &otelinventory.Options{MeterProvider: t.provider, Strategy: name})
}

// routes serves GET /metrics beside api.
func (t *telemetry) routes(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.metrics)
	mux.Handle("/", api)
	return mux
}

func (t *telemetry) close() { _ = t.provider.Shutdown(context.Background()) }
