package redislock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redislock"
)

// A checkout service: stock and ledger in PostgreSQL, SKU locks in Redis (a
// single server here; pass several addresses for a cluster).
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal:5432/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"redis.internal:6379"}})
	defer rdb.Close()

	r, err := redislock.New(pool, rdb, &redislock.Options{LockTTL: 5 * time.Second, WaitTimeout: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	res, err := r.Reserve(ctx, inventory.Request{
		ID:    "order-1001",
		Lines: []inventory.Line{{SKU: "sku-red-shirt-m", Qty: 1}, {SKU: "sku-socks", Qty: 2}},
		TTL:   10 * time.Minute,
	})
	switch {
	case errors.Is(err, inventory.ErrInsufficientStock):
		fmt.Println("sold out:", err)
	case errors.Is(err, redislock.ErrFenced), errors.Is(err, inventory.ErrContended):
		fmt.Println("busy, nothing changed; try again:", err)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("held until", res.ExpiresAt)
	}
}
