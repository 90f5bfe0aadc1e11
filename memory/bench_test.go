package memory_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// BenchmarkReserveRelease measures one Reserve plus one Release per
// operation. Stock never runs out. allocs/op includes the ID string the
// benchmark builds for every request.
func BenchmarkReserveRelease(b *testing.B) {
	const manySKUs = 1024
	skuNames := make([]string, manySKUs)
	for i := range skuNames {
		skuNames[i] = "sku-" + strconv.Itoa(i)
	}

	b.Run("Sequential", func(b *testing.B) {
		r := newBenchStore(b, skuNames[:1])
		ids := newIDs()
		lines := []inventory.Line{{SKU: skuNames[0], Qty: 1}}
		b.ReportAllocs()
		for b.Loop() {
			reserveRelease(b, r, ids.next(), lines)
		}
	})

	b.Run("HotSKU", func(b *testing.B) {
		r := newBenchStore(b, skuNames[:1])
		lines := []inventory.Line{{SKU: skuNames[0], Qty: 1}}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ids := newIDs()
			for pb.Next() {
				reserveRelease(b, r, ids.next(), lines)
			}
		})
	})

	b.Run("ManySKUs", func(b *testing.B) {
		r := newBenchStore(b, skuNames)
		var worker atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ids := newIDs()
			lines := []inventory.Line{{SKU: skuNames[worker.Add(1)%manySKUs], Qty: 1}}
			for pb.Next() {
				reserveRelease(b, r, ids.next(), lines)
			}
		})
	})

	b.Run("Cart3", func(b *testing.B) {
		r := newBenchStore(b, skuNames)
		var worker atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ids := newIDs()
			lines := make([]inventory.Line, 3)
			i := int(worker.Add(1)) * 97
			for pb.Next() {
				// Three SKUs named out of order, so carts cross.
				lines[0] = inventory.Line{SKU: skuNames[(i+2)%manySKUs], Qty: 1}
				lines[1] = inventory.Line{SKU: skuNames[i%manySKUs], Qty: 2}
				lines[2] = inventory.Line{SKU: skuNames[(i+1)%manySKUs], Qty: 3}
				reserveRelease(b, r, ids.next(), lines)
				i++
			}
		})
	})
}

func newBenchStore(b *testing.B, skus []string) *memory.Reserver {
	b.Helper()
	r := memory.New(nil)
	for _, s := range skus {
		if err := r.SetStock(context.Background(), s, inventory.MaxStock); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

func reserveRelease(b *testing.B, r *memory.Reserver, id string, lines []inventory.Line) {
	ctx := context.Background()
	if _, err := r.Reserve(ctx, inventory.Request{ID: id, Lines: lines}); err != nil {
		b.Fatal(err)
	}
	if err := r.Release(ctx, id); err != nil {
		b.Fatal(err)
	}
}

var benchWorker atomic.Int64

// ids makes request IDs unique across the goroutines of a benchmark.
type ids struct {
	buf    []byte
	prefix int
	n      int64
}

func newIDs() *ids {
	i := &ids{buf: make([]byte, 0, 32)}
	i.buf = strconv.AppendInt(i.buf, benchWorker.Add(1), 36)
	i.buf = append(i.buf, '-')
	i.prefix = len(i.buf)
	return i
}

func (i *ids) next() string {
	i.n++
	i.buf = strconv.AppendInt(i.buf[:i.prefix], i.n, 36)
	return string(i.buf)
}
