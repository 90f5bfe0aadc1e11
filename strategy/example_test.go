package strategy_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy"
)

// Open a strategy by name, as a flag would choose it.
func ExampleOpen() {
	ctx := context.Background()
	s, closeFn, err := strategy.Open(ctx, "memory", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeFn(ctx)

	_ = s.SetStock(ctx, "mug", 3)
	newID := strategy.NewIDFunc(s)
	id, _ := newID(ctx)
	res, err := s.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "mug", Qty: 2}}})
	fmt.Println(res.State, err)
	n, _ := s.Available(ctx, "mug")
	fmt.Println("available:", n)

	_, _, err = strategy.Open(ctx, "optimism", nil)
	fmt.Println(errors.Is(err, strategy.ErrUnknownStrategy))
	// Output:
	// held <nil>
	// available: 1
	// true
}

func ExampleNames() {
	fmt.Println(strategy.Names())
	// Output: [memory sqlcond pessimistic sqlcond-mysql pessimistic-mysql groupcommit redislock redisstock token]
}
