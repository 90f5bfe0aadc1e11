package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

// Every strategy validates a request before it does anything else; a caller
// can do the same to answer bad input early.
func ExampleRequest_Validate() {
	req := inventory.Request{
		ID: "order-1001",
		Lines: []inventory.Line{
			{SKU: "tee-red-m", Qty: 2},
			{SKU: "mug", Qty: 0},
		},
	}
	err := req.Validate()
	fmt.Println(errors.Is(err, inventory.ErrInvalidRequest))

	var invalid *inventory.ValidationError
	if errors.As(err, &invalid) {
		fmt.Println(invalid.Field, "-", invalid.Reason)
	}

	req.Lines[1].Qty = 1
	fmt.Println(req.Validate())
	// Output:
	// true
	// Lines[1].Qty - 0 is outside 1..1000000000
	// <nil>
}

// A refused cart names its first short line, in SKU order, and holds
// nothing.
func ExampleInsufficientStockError() {
	ctx := context.Background()
	inv := memory.New(nil)
	_ = inv.SetStock(ctx, "mug", 10)
	_ = inv.SetStock(ctx, "tee-red-m", 1)

	_, err := inv.Reserve(ctx, inventory.Request{
		ID:    "order-1002",
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 2}, {SKU: "mug", Qty: 1}},
	})
	var short *inventory.InsufficientStockError
	if errors.As(err, &short) {
		fmt.Printf("%s: asked %d, %d left\n", short.SKU, short.Requested, short.Available)
	}
	fmt.Println(errors.Is(err, inventory.ErrInsufficientStock))

	mugs, _ := inv.Available(ctx, "mug")
	fmt.Println("mugs still available:", mugs)
	// Output:
	// tee-red-m: asked 2, 1 left
	// true
	// mugs still available: 10
}

// Commit and Release say why they refuse: the reservation is in another
// final state.
func ExampleStateError() {
	ctx := context.Background()
	inv := memory.New(nil)
	_ = inv.SetStock(ctx, "mug", 10)
	res, _ := inv.Reserve(ctx, inventory.Request{ID: "order-1003", Lines: []inventory.Line{{SKU: "mug", Qty: 1}}})
	_ = inv.Release(ctx, res.ID) // the buyer gave up

	err := inv.Commit(ctx, res.ID) // the payment arrives late
	var state *inventory.StateError
	if errors.As(err, &state) {
		fmt.Println(state.Op, "refused: the reservation is", state.State)
	}
	fmt.Println(errors.Is(err, inventory.ErrNotHeld))
	fmt.Println("release again:", inv.Release(ctx, res.ID))
	// Output:
	// commit refused: the reservation is released
	// true
	// release again: <nil>
}

// A sweep returns the units of holds whose TTL has passed; committed units
// stay sold. The clock here is a variable, so the example can move time.
func ExampleSweeper_Sweep() {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	inv := memory.New(&memory.Options{Now: func() time.Time { return now }})
	_ = inv.SetStock(ctx, "ticket", 10)

	paid, _ := inv.Reserve(ctx, inventory.Request{ID: "cart-1", Lines: []inventory.Line{{SKU: "ticket", Qty: 2}}, TTL: 10 * time.Minute})
	_ = inv.Commit(ctx, paid.ID)
	_, _ = inv.Reserve(ctx, inventory.Request{ID: "cart-2", Lines: []inventory.Line{{SKU: "ticket", Qty: 3}}, TTL: 10 * time.Minute})
	_, _ = inv.Reserve(ctx, inventory.Request{ID: "cart-3", Lines: []inventory.Line{{SKU: "ticket", Qty: 4}}, TTL: time.Hour})

	sweeper := inventory.NewSweeper(inv, &inventory.SweeperOptions{
		BatchSize: 100,
		Logger:    slog.New(slog.DiscardHandler),
	})
	now = now.Add(15 * time.Minute) // cart-2 was abandoned
	n, err := sweeper.Sweep(ctx)
	fmt.Println("expired:", n, err)

	avail, _ := inv.Available(ctx, "ticket")
	fmt.Println("available:", avail)
	cart2, _ := inv.Lookup(ctx, "cart-2")
	fmt.Println("cart-2:", cart2.State)
	// Output:
	// expired: 1 <nil>
	// available: 4
	// cart-2: expired
}

// In a service, run one Sweeper per process beside the handlers, for as long
// as the service runs. Sweepers in many processes may share a store: each
// hold is expired once.
func ExampleSweeper_Run() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	inv := memory.New(nil) // in production: the strategy the handlers use

	sweeper := inventory.NewSweeper(inv, &inventory.SweeperOptions{Interval: 30 * time.Second})
	done := make(chan error, 1)
	go func() { done <- sweeper.Run(ctx) }()

	// ... serve requests until shutdown, then:
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		log.Print(err)
	}
}
