package memory_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

func Example() {
	ctx := context.Background()
	r := memory.New(nil)
	if err := r.SetStock(ctx, "tee-black-m", 10); err != nil {
		log.Fatal(err)
	}

	// Hold two tees while the buyer pays.
	res, err := r.Reserve(ctx, inventory.Request{
		ID:    "order-1001",
		Lines: []inventory.Line{{SKU: "tee-black-m", Qty: 2}},
		TTL:   10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	avail, _ := r.Available(ctx, "tee-black-m")
	fmt.Println(res.ID, res.State, "available:", avail)

	// Payment went through: the units are sold.
	if err := r.Commit(ctx, "order-1001"); err != nil {
		log.Fatal(err)
	}
	avail, _ = r.Available(ctx, "tee-black-m")
	fmt.Println("committed, available:", avail)

	// Another buyer abandons the cart: the units go back.
	if _, err := r.Reserve(ctx, inventory.Request{ID: "order-1002", Lines: []inventory.Line{{SKU: "tee-black-m", Qty: 3}}}); err != nil {
		log.Fatal(err)
	}
	if err := r.Release(ctx, "order-1002"); err != nil {
		log.Fatal(err)
	}
	avail, _ = r.Available(ctx, "tee-black-m")
	fmt.Println("released, available:", avail)
	// Output:
	// order-1001 held available: 8
	// committed, available: 8
	// released, available: 8
}

func ExampleReserver_Reserve_insufficientStock() {
	ctx := context.Background()
	r := memory.New(nil)
	_ = r.SetStock(ctx, "mug", 5)
	_ = r.SetStock(ctx, "poster", 1)

	_, err := r.Reserve(ctx, inventory.Request{
		ID:    "order-7",
		Lines: []inventory.Line{{SKU: "mug", Qty: 2}, {SKU: "poster", Qty: 3}},
	})
	var ise *inventory.InsufficientStockError
	if errors.As(err, &ise) {
		fmt.Printf("only %d of %d %s left\n", ise.Available, ise.Requested, ise.SKU)
	}
	fmt.Println(errors.Is(err, inventory.ErrInsufficientStock))

	// Nothing was held: the mugs are all still there.
	avail, _ := r.Available(ctx, "mug")
	fmt.Println("mugs available:", avail)
	// Output:
	// only 1 of 3 poster left
	// true
	// mugs available: 5
}

func ExampleReserver_ExpireDue() {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	r := memory.New(&memory.Options{
		DefaultTTL: 15 * time.Minute,
		Now:        func() time.Time { return now },
	})
	_ = r.SetStock(ctx, "ticket", 100)
	res, _ := r.Reserve(ctx, inventory.Request{ID: "cart-1", Lines: []inventory.Line{{SKU: "ticket", Qty: 4}}})
	fmt.Println("expires at", res.ExpiresAt.Format(time.Kitchen))

	now = now.Add(14 * time.Minute)
	n, _ := r.ExpireDue(ctx, 100)
	fmt.Println("expired after 14m:", n)

	now = now.Add(time.Minute)
	n, _ = r.ExpireDue(ctx, 100)
	fmt.Println("expired after 15m:", n)

	avail, _ := r.Available(ctx, "ticket")
	fmt.Println("available:", avail)
	err := r.Commit(ctx, "cart-1")
	fmt.Println(errors.Is(err, inventory.ErrNotHeld), err)
	// Output:
	// expires at 12:15PM
	// expired after 14m: 0
	// expired after 15m: 1
	// available: 100
	// true inventory: reservation not held: cannot commit reservation "cart-1": it is expired
}

func ExampleOptions_retention() {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	r := memory.New(&memory.Options{
		Retention: 24 * time.Hour, // longer than any client retries
		Now:       func() time.Time { return now },
	})
	_ = r.SetStock(ctx, "mug", 10)
	req := inventory.Request{ID: "order-1", Lines: []inventory.Line{{SKU: "mug", Qty: 2}}}
	if _, err := r.Reserve(ctx, req); err != nil {
		log.Fatal(err)
	}
	if err := r.Commit(ctx, "order-1"); err != nil {
		log.Fatal(err)
	}

	// Within the retention, a retry is answered from the record.
	now = now.Add(23 * time.Hour)
	res, _ := r.Reserve(ctx, req)
	avail, _ := r.Available(ctx, "mug")
	fmt.Println("after 23h:", res.State, "available:", avail)

	// After it, the ID is forgotten; the sale stays.
	now = now.Add(time.Hour)
	_, err := r.Lookup(ctx, "order-1")
	fmt.Println("after 24h:", errors.Is(err, inventory.ErrNotFound))

	// The same request again is a new reservation: it takes stock again.
	res, _ = r.Reserve(ctx, req)
	avail, _ = r.Available(ctx, "mug")
	fmt.Println("reserved again:", res.State, "available:", avail)
	// Output:
	// after 23h: committed available: 8
	// after 24h: true
	// reserved again: held available: 6
}
