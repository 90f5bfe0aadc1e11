package strategytest_test

import (
	"context"
	"fmt"
	"log"
	"testing"

	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/strategy/strategytest"
)

// A strategy's test file runs the whole suite in a few lines. This one is
// the test of the memory strategy; a PostgreSQL strategy makes a schema of
// its own in the maker and drops it with t.Cleanup.
func ExampleRunConformance() {
	testConformance := func(t *testing.T) {
		strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
			clk := strategytest.NewClock()
			return &strategytest.Harness{
				Strategy: memory.New(&memory.Options{Now: clk.Now}),
				Advance:  clk.Advance,
			}
		})
	}
	_ = testConformance // in a _test.go file: func TestConformance(t *testing.T)
}

// Hammer runs outside of tests too: here 32 buyers sell out 100 units of one
// SKU, and the report checks that exactly 100 were granted and nothing was
// oversold or lost.
func ExampleHammer() {
	rep, err := strategytest.Hammer(context.Background(), strategytest.HammerConfig{
		Strategy: memory.New(nil),
		Workers:  32,
		Stock:    100,
		SellOut:  true,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ok:", rep.OK())
	fmt.Println("granted:", rep.Granted, "oversold:", rep.Oversold, "lost:", rep.Lost)
	fmt.Println("available:", rep.SKUs[0].Available, "held:", rep.SKUs[0].Held)
	// Output:
	// ok: true
	// granted: 100 oversold: 0 lost: 0
	// available: 0 held: 100
}
