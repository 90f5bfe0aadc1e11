package strategytest

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oversell/inventory"
)

// BenchHarnessMaker returns a new Harness for the benchmark b, or skips b.
// It registers the cleanup of what it made with b.Cleanup. It is the
// benchmark twin of HarnessMaker, which takes a *testing.T. A strategy's test
// file can write its maker once over testing.TB and hand it to both:
//
//	func newHarness(ctx context.Context, tb testing.TB) *strategytest.Harness { ... }
//
//	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness { return newHarness(ctx, t) })
//	strategytest.RunBenchmarks(b, func(ctx context.Context, b *testing.B) *strategytest.Harness { return newHarness(ctx, b) })
type BenchHarnessMaker func(ctx context.Context, b *testing.B) *Harness

// Shape of the shared benchmarks.
const (
	// BenchBuyers is the number of goroutines the parallel benchmarks aim
	// at: b.SetParallelism rounds it up to a multiple of GOMAXPROCS.
	BenchBuyers = 64
	// BenchSKUs is the number of SKUs of ManySKUs and Cart3.
	BenchSKUs = 256
	// benchStock is the stock of every SKU: enough never to run out, as
	// every operation gives its units back.
	benchStock = 1 << 40
)

// RunBenchmarks measures the strategies made by newHarness under parallel
// buyers (about BenchBuyers goroutines), one operation being a Reserve
// followed by a Release of the same reservation, so the stock never runs out:
//
//   - HotSKU: every buyer reserves one unit of one SKU, the worst case for
//     row and key locks.
//   - ManySKUs: every buyer reserves one unit of a SKU picked uniformly from
//     BenchSKUs, the best case.
//   - Cart3: every buyer reserves a cart of three distinct SKUs out of
//     BenchSKUs, listed in random order.
//
// Each sub-benchmark gets a fresh Harness per round, made before the timer
// starts. It reports allocations, and as extra metrics the share of
// operations that failed with inventory.ErrContended (contended/op), which a
// strategy may return under load; any other error fails the benchmark.
func RunBenchmarks(b *testing.B, newHarness BenchHarnessMaker) {
	b.Helper()
	b.Run("HotSKU", func(b *testing.B) { runBench(b, newHarness, 1, 1) })
	b.Run("ManySKUs", func(b *testing.B) { runBench(b, newHarness, BenchSKUs, 1) })
	b.Run("Cart3", func(b *testing.B) { runBench(b, newHarness, BenchSKUs, 3) })
}

func runBench(b *testing.B, newHarness BenchHarnessMaker, skus, lines int) {
	ctx := b.Context()
	h := newHarness(ctx, b)
	if h == nil || h.Strategy == nil {
		b.Fatal("BenchHarnessMaker returned no strategy")
	}
	names := make([]string, skus)
	for i := range names {
		names[i] = SKUName(i)
		if err := h.Strategy.SetStock(ctx, names[i], benchStock); err != nil {
			b.Fatalf("SetStock(%q): %v", names[i], err)
		}
	}
	newID := h.NewID
	var contended atomic.Int64
	var worker atomic.Uint64
	b.SetParallelism((BenchBuyers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		rng := rand.New(rand.NewPCG(w, uint64(time.Now().UnixNano())))
		ids := newBenchIDs(newID)
		req := inventory.Request{Lines: make([]inventory.Line, lines)}
		for pb.Next() {
			pickLines(rng, names, req.Lines)
			id, err := ids.next(ctx)
			if err != nil {
				b.Errorf("NewID: %v", err)
				return
			}
			req.ID = id
			if _, err := h.Strategy.Reserve(ctx, req); err != nil {
				if errors.Is(err, inventory.ErrContended) {
					contended.Add(1)
					continue
				}
				b.Errorf("Reserve(%q): %v", id, err)
				return
			}
			if err := h.Strategy.Release(ctx, id); err != nil {
				if errors.Is(err, inventory.ErrContended) {
					contended.Add(1)
					continue
				}
				b.Errorf("Release(%q): %v", id, err)
				return
			}
		}
	})
	b.StopTimer()
	if n := contended.Load(); n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "contended/op")
	}
}

// pickLines fills lines with distinct SKUs out of names, one unit each. The
// first pick is uniform; the lines come in no particular order.
func pickLines(rng *rand.Rand, names []string, lines []inventory.Line) {
	for i := range lines {
		sku := names[rng.IntN(len(names))]
		for taken(lines[:i], sku) {
			sku = names[rng.IntN(len(names))]
		}
		lines[i] = inventory.Line{SKU: sku, Qty: 1}
	}
}

func taken(lines []inventory.Line, sku string) bool {
	for _, l := range lines {
		if l.SKU == sku {
			return true
		}
	}
	return false
}

// benchIDs makes request IDs: the harness's own when it has NewID, else a
// random prefix and a counter, cheaper than RandomID so that the benchmark
// measures the strategy.
type benchIDs struct {
	newID  func(ctx context.Context) (string, error)
	prefix []byte
	n      uint64
}

func newBenchIDs(newID func(ctx context.Context) (string, error)) *benchIDs {
	return &benchIDs{newID: newID, prefix: []byte(RandomID()[:16] + "-")}
}

func (g *benchIDs) next(ctx context.Context) (string, error) {
	if g.newID != nil {
		return g.newID(ctx)
	}
	g.n++
	return string(strconv.AppendUint(g.prefix, g.n, 36)), nil
}
