package token_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/token"
)

func Example() {
	ctx := context.Background()
	// In production: 32 bytes or more from crypto/rand, kept secret and
	// shared by every server.
	secret := []byte("an example secret, 32 bytes long")
	issuer, err := token.NewIssuer([][]byte{secret}, nil)
	if err != nil {
		log.Fatal(err)
	}
	r := token.Wrap(memory.New(nil), issuer, token.NewMemoryStore(), nil)
	if err := r.SetStock(ctx, "tshirt", 3); err != nil {
		log.Fatal(err)
	}

	// The checkout page opens: issue a token and put it in the form.
	tok, err := issuer.Issue(ctx)
	if err != nil {
		log.Fatal(err)
	}

	// The form is submitted twice (a double click): the stock is taken once,
	// and both submissions get the same reservation.
	req := inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "tshirt", Qty: 2}}}
	first, err := r.Reserve(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	second, err := r.Reserve(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	n, _ := r.Available(ctx, "tshirt")
	fmt.Println(first.State, second.ID == first.ID, "available:", n)

	// The order is placed: commit the reservation; its ID is the token.
	fmt.Println(r.Commit(ctx, tok))

	// A forged token never reaches the stock.
	_, err = r.Reserve(ctx, inventory.Request{ID: "forged", Lines: req.Lines})
	fmt.Println(errors.Is(err, token.ErrInvalidToken), errors.Is(err, inventory.ErrInvalidRequest))
	// Output:
	// held true available: 1
	// <nil>
	// true true
}

func ExampleNewRedisStore() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	issuer, err := token.NewIssuer([][]byte{[]byte("an example secret, 32 bytes long")}, nil)
	if err != nil {
		log.Fatal(err)
	}
	store := token.NewRedisStore(client, &token.RedisOptions{Prefix: "shop:token:"})
	r := token.Wrap(memory.New(nil), issuer, store, nil)
	_ = r.SetStock(ctx, "tshirt", 3)
}

func ExamplePostgresStore_Migrate() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := token.NewPostgresStore(pool, &token.PostgresOptions{Schema: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	issuer, err := token.NewIssuer([][]byte{[]byte("an example secret, 32 bytes long")}, nil)
	if err != nil {
		log.Fatal(err)
	}
	r := token.Wrap(memory.New(nil), issuer, store, nil)
	_ = r.SetStock(ctx, "tshirt", 3)
}
