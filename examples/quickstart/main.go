// Command quickstart is the shortest correct use of the library: open a
// strategy, stock a SKU, reserve a cart, commit one reservation and release
// another.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
)

func main() {
	ctx := context.Background()
	inv := memory.New(nil)

	if err := inv.SetStock(ctx, "tee-red-m", 3); err != nil {
		log.Fatal(err)
	}

	// Hold two units for an order. The ID makes retries harmless.
	res, err := inv.Reserve(ctx, inventory.Request{
		ID:    "order-1001",
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 2}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held", res.Lines[0].Qty, "until", res.ExpiresAt.Format("15:04"))

	// Payment went through: the units are sold.
	if err := inv.Commit(ctx, res.ID); err != nil {
		log.Fatal(err)
	}

	// A second buyer asks for more than is left.
	_, err = inv.Reserve(ctx, inventory.Request{
		ID:    "order-1002",
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 2}},
	})
	var short *inventory.InsufficientStockError
	if errors.As(err, &short) {
		fmt.Printf("refused: %s has %d left\n", short.SKU, short.Available)
	}

	// A third buyer holds the last unit, then abandons the cart.
	res, err = inv.Reserve(ctx, inventory.Request{
		ID:    "order-1003",
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 1}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := inv.Release(ctx, res.ID); err != nil {
		log.Fatal(err)
	}

	n, err := inv.Available(ctx, "tee-red-m")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("available:", n)
}
