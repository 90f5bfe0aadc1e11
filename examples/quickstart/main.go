// Command quickstart is the shortest correct use of the library: open a
// strategy, stock a SKU, reserve a cart, commit one reservation and release
// another.
//
// It runs in process by default, and against PostgreSQL (and Redis) with
// -strategy:
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -strategy sqlcond -postgres postgres://postgres@127.0.0.1:5432/test
//	go run ./examples/quickstart -strategy redislock -redis redis://127.0.0.1:6379/0
//
// The servers default to INVENTORY_POSTGRES_URL, INVENTORY_REDIS_URL and
// INVENTORY_MYSQL_URL, else
// the local ones above.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy"
)

func main() {
	name := flag.String("strategy", "memory", "strategy to use: "+strings.Join(strategy.Names(), ", "))
	my := flag.String("mysql", envOr("INVENTORY_MYSQL_URL", "root@tcp(127.0.0.1:3306)/test"), "MySQL DSN (go-sql-driver), for the MySQL strategies")
	pg := flag.String("postgres", envOr("INVENTORY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL, for the strategies that need it")
	rd := flag.String("redis", envOr("INVENTORY_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL, for the strategies that need it")
	flag.Parse()

	cfg := &strategy.Config{PostgresURL: *pg, RedisURL: *rd, MySQLURL: *my}
	if err := open(context.Background(), os.Stdout, *name, cfg); err != nil {
		log.Fatal(err)
	}
}

// open opens the strategy called name and runs the quickstart on it.
func open(ctx context.Context, out io.Writer, name string, cfg *strategy.Config) error {
	inv, closeInv, err := strategy.Open(ctx, name, cfg)
	if err != nil {
		return err
	}
	defer closeInv(ctx)
	return run(ctx, out, inv)
}

// run is the quickstart itself: it works the same on every strategy.
func run(ctx context.Context, out io.Writer, inv inventory.Strategy) error {
	// Reservation IDs are idempotency keys: in a shop, the order number or the
	// checkout attempt. Here each run makes fresh ones (tokens, for the token
	// strategy), so the program can run again against the same database.
	newID := strategy.NewIDFunc(inv)

	if err := inv.SetStock(ctx, "tee-red-m", 3); err != nil {
		return err
	}

	// Hold two units for an order. The ID makes retries harmless.
	id, err := newID(ctx)
	if err != nil {
		return err
	}
	res, err := inv.Reserve(ctx, inventory.Request{
		ID:    id,
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 2}},
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "held", res.Lines[0].Qty, "until", res.ExpiresAt.Format("15:04"))

	// Payment went through: the units are sold.
	if err := inv.Commit(ctx, res.ID); err != nil {
		return err
	}

	// A second buyer asks for more than is left.
	if id, err = newID(ctx); err != nil {
		return err
	}
	_, err = inv.Reserve(ctx, inventory.Request{
		ID:    id,
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 2}},
	})
	var short *inventory.InsufficientStockError
	if !errors.As(err, &short) {
		return fmt.Errorf("want a refusal for lack of stock, got %v", err)
	}
	fmt.Fprintf(out, "refused: %s has %d left\n", short.SKU, short.Available)

	// A third buyer holds the last unit, then abandons the cart.
	if id, err = newID(ctx); err != nil {
		return err
	}
	res, err = inv.Reserve(ctx, inventory.Request{
		ID:    id,
		Lines: []inventory.Line{{SKU: "tee-red-m", Qty: 1}},
	})
	if err != nil {
		return err
	}
	if err := inv.Release(ctx, res.ID); err != nil {
		return err
	}

	n, err := inv.Available(ctx, "tee-red-m")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "available:", n)
	return nil
}

// envOr returns the value of the environment variable key, or def when it
// is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
