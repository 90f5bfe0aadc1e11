package sqlcond_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/sqlcond"
)

// A checkout holds the cart, takes the payment, then commits; a retry after
// an unknown outcome reuses the same ID. It needs a PostgreSQL server, so it
// only compiles here.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("INVENTORY_POSTGRES_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	store, err := sqlcond.New(pool, &sqlcond.Options{Schema: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if err := store.SetStock(ctx, "tshirt-m", 10); err != nil {
		log.Fatal(err)
	}

	req := inventory.Request{ID: "order-42", Lines: []inventory.Line{{SKU: "tshirt-m", Qty: 2}}, TTL: 10 * time.Minute}
	res, err := store.Reserve(ctx, req)
	for errors.Is(err, inventory.ErrOutcomeUnknown) {
		res, err = store.Reserve(ctx, req) // same ID: applied once at most
	}
	switch {
	case errors.Is(err, inventory.ErrInsufficientStock):
		log.Print("sold out")
		return
	case err != nil:
		log.Fatal(err)
	}
	// ... take the payment, then:
	if err := store.Commit(ctx, res.ID); err != nil {
		log.Fatal(err)
	}
}
