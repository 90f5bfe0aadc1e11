package otelinventory_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/otelinventory"
)

// Wrap a strategy and read what it recorded. An application hands Options
// the providers its exporter feeds (Prometheus, OTLP), or sets the global
// ones and passes nil.
func ExampleWrap() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	inv := otelinventory.Wrap(memory.New(nil), &otelinventory.Options{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Strategy:      "memory",
	})

	_ = inv.SetStock(ctx, "tee-red-m", 1)
	for _, id := range []string{"order-1", "order-2"} {
		_, _ = inv.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 1}}})
	}

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "inventory.reservations" {
			continue
		}
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			outcome, _ := dp.Attributes.Value(otelinventory.OutcomeKey)
			fmt.Println(m.Name, outcome.Emit(), dp.Value)
		}
	}
	// Unordered output:
	// inventory.reservations granted 1
	// inventory.reservations insufficient_stock 1
}
