package otelinventory_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/otelinventory"
)

// costStore returns a memory store with stock, a held reservation "held", a
// committed one "sold", and the IDs of n fresh requests.
func costStore(t testing.TB, n int) (*memory.Reserver, []string) {
	t.Helper()
	ctx := context.Background()
	r := memory.New(nil)
	require.NoError(t, r.SetStock(ctx, "tee", inventory.MaxStock/2))
	for _, id := range []string{"held", "sold"} {
		_, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("tee", 1)}, TTL: time.Hour})
		require.NoError(t, err)
	}
	require.NoError(t, r.Commit(ctx, "sold"))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "order-" + strconv.Itoa(i)
	}
	return r, ids
}

// costOps are the calls whose allocations are compared: the hot path of a
// checkout and every kind of answer.
var costOps = []struct {
	name string
	call func(ctx context.Context, inv inventory.Strategy, id string) error
}{
	{"ReserveRelease", func(ctx context.Context, inv inventory.Strategy, id string) error {
		if _, err := inv.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("tee", 1)}}); err != nil {
			return err
		}
		return inv.Release(ctx, id)
	}},
	{"ReserveCommit", func(ctx context.Context, inv inventory.Strategy, id string) error {
		if _, err := inv.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("tee", 1)}}); err != nil {
			return err
		}
		return inv.Commit(ctx, id)
	}},
	{"ReserveReplay", func(ctx context.Context, inv inventory.Strategy, _ string) error {
		_, err := inv.Reserve(ctx, inventory.Request{ID: "held", Lines: []inventory.Line{line("tee", 1)}})
		return err
	}},
	{"ReserveRefused", func(ctx context.Context, inv inventory.Strategy, id string) error {
		_, err := inv.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("tee", inventory.MaxQty), line("zzz", 1)}})
		if err == nil {
			return assert.AnError
		}
		return nil
	}},
	{"CommitNotHeld", func(ctx context.Context, inv inventory.Strategy, _ string) error {
		if inv.Release(ctx, "sold") == nil {
			return assert.AnError
		}
		return nil
	}},
	{"Available", func(ctx context.Context, inv inventory.Strategy, _ string) error {
		_, err := inv.Available(ctx, "tee")
		return err
	}},
	{"Lookup", func(ctx context.Context, inv inventory.Strategy, _ string) error {
		_, err := inv.Lookup(ctx, "held")
		return err
	}},
	{"ExpireDueNothing", func(ctx context.Context, inv inventory.Strategy, _ string) error {
		_, err := inv.ExpireDue(ctx, 100)
		return err
	}},
}

// allocsPerCall returns the allocations of one call of op on a fresh store
// made into a Strategy by wrap.
func allocsPerCall(t *testing.T, call func(context.Context, inventory.Strategy, string) error, wrap func(*memory.Reserver) inventory.Strategy) float64 {
	t.Helper()
	const runs = 200
	r, ids := costStore(t, runs+1)
	inv := wrap(r)
	ctx := context.Background()
	i := 0
	return testing.AllocsPerRun(runs, func() {
		require.NoError(t, call(ctx, inv, ids[i]))
		i++
	})
}

func bare(r *memory.Reserver) inventory.Strategy { return r }

// TestUnconfiguredAllocatesNothingMore checks that, with no provider set, a
// wrapped call allocates exactly what the bare call does; and, so that the
// check can fail, that it tells a configured wrapper from the bare strategy.
func TestUnconfiguredAllocatesNothingMore(t *testing.T) {
	unconfigured := func(r *memory.Reserver) inventory.Strategy { return otelinventory.Wrap(r, nil) }
	noopTracer := func(r *memory.Reserver) inventory.Strategy {
		return otelinventory.Wrap(r, &otelinventory.Options{TracerProvider: tracenoop.NewTracerProvider()})
	}
	configured := func(r *memory.Reserver) inventory.Strategy {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		return otelinventory.Wrap(r, &otelinventory.Options{TracerProvider: tp, MeterProvider: mp})
	}
	for _, op := range costOps {
		t.Run(op.name, func(t *testing.T) {
			want := allocsPerCall(t, op.call, bare)
			assert.Equal(t, want, allocsPerCall(t, op.call, unconfigured), "no provider: allocations per call")
			assert.Equal(t, want, allocsPerCall(t, op.call, noopTracer), "a no-op tracer provider: allocations per call")
			assert.Greater(t, allocsPerCall(t, op.call, configured), want, "the check sees what a span costs")
			t.Logf("%s: %.0f allocs per call, bare and unconfigured", op.name, want)
		})
	}
}

// BenchmarkOverhead compares the bare memory strategy with the same strategy
// wrapped with no provider set (the global no-op) and with SDK providers
// (every span sampled, metrics read by nobody): one Reserve of a fresh ID
// and one Release per operation. The store keeps every reservation, so its
// maps grow with b.N: compare variants at one fixed -benchtime=Nx.
func BenchmarkOverhead(b *testing.B) {
	run := func(b *testing.B, wrap func(*memory.Reserver) inventory.Strategy) {
		r, ids := costStore(b, b.N)
		inv := wrap(r)
		ctx := context.Background()
		lines := []inventory.Line{line("tee", 1)}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := inv.Reserve(ctx, inventory.Request{ID: ids[i], Lines: lines}); err != nil {
				b.Fatal(err)
			}
			if err := inv.Release(ctx, ids[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Bare", func(b *testing.B) { run(b, bare) })
	b.Run("Unconfigured", func(b *testing.B) {
		run(b, func(r *memory.Reserver) inventory.Strategy { return otelinventory.Wrap(r, nil) })
	})
	b.Run("Configured", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		run(b, func(r *memory.Reserver) inventory.Strategy {
			return otelinventory.Wrap(r, &otelinventory.Options{TracerProvider: tp, MeterProvider: mp})
		})
	})
}

// globalEnv makes the test binary run TestGlobalProvidersAreFollowed for
// real: setting the global providers cannot be undone, so it runs in a
// process of its own.
const globalEnv = "OTELINVENTORY_TEST_GLOBAL"

// TestGlobalProvidersAreFollowed checks that a strategy wrapped before the
// global providers are set starts recording once they are.
func TestGlobalProvidersAreFollowed(t *testing.T) {
	if os.Getenv(globalEnv) != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGlobalProvidersAreFollowed$", "-test.count=1")
		cmd.Env = append(os.Environ(), globalEnv+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return
	}
	ctx := context.Background()
	inv := otelinventory.Wrap(memory.New(nil), nil)
	require.NoError(t, inv.SetStock(ctx, "tee", 1), "before: nothing recorded")

	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	tm := &telemetry{reader: reader, spans: spans}

	_, err := inv.Reserve(ctx, inventory.Request{ID: "a", Lines: []inventory.Line{line("tee", 1)}})
	require.NoError(t, err)
	ended := spans.Ended()
	require.Len(t, ended, 1, "one span: the Reserve after the global provider was set")
	assert.Equal(t, "inventory.reserve", ended[0].Name())
	ms := tm.collect(t)
	assert.Equal(t, map[string]int64{"outcome=granted,strategy=memory": 1}, sums(t, ms["inventory.reservations"]))
	assert.NotContains(t, ms, "inventory.set_stock.duration", "the call before was not recorded")
}
