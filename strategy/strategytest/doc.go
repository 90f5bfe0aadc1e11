// Package strategytest is the conformance suite every inventory strategy
// runs, like net/http/httptest or testing/fstest for their interfaces.
//
// A strategy's test file calls RunConformance with a HarnessMaker that makes
// an isolated instance per subtest (its own schema, key prefix or process
// state), driven by a manual Clock where the strategy takes one:
//
//	func TestConformance(t *testing.T) {
//		strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
//			clk := strategytest.NewClock()
//			return &strategytest.Harness{Strategy: memory.New(&memory.Options{Now: clk.Now}), Advance: clk.Advance}
//		})
//	}
//
// RunBenchmarks does the same for the shared benchmarks, and Hammer, the
// core of the suite's concurrent tests, is also callable outside of tests
// and returns a Report, so the benchmark command reuses it.
//
// # Guarantees
//
// RunConformance checks every behaviour of the inventory.Reserver contract in
// a subtest named after it (SameIDConcurrentDecrementsOnce,
// OverdueHoldCannotBeCommittedBeforeASweep,
// SweepersReturnAbandonedHoldsOnce, ...), then hammers the strategy with
// concurrent buyers: 64 selling out one hot SKU, which must end with exactly
// its stock granted; 64 with carts of up to five lines over 20 SKUs; and
// calls cut short at random by their contexts. After each hammer it checks
// the exact invariant per SKU: available + held + sold equals the stock set
// plus the units added, never below zero, and no error outside the
// contract. The suite's own tests keep a deliberately racy strategy and
// show that the hammer catches its oversell.
//
// # Cost
//
// Subtests run in parallel, each with a harness of its own. With a Harness
// that has Advance, expiry is tested by moving the clock; without it the
// suite sleeps, with TTLs kept short. The hammers dominate the run time.
//
// # Failures
//
// A behaviour that breaks the contract fails its subtest with what it saw
// (testify assertions). A subtest that does not finish within its timeout
// (a minute, four for the hammers) fails instead of hanging the run. Hammer
// returns an error only when the run could not be set up or checked; what
// the strategy did wrong is in the Report (Oversold, Lost, NegativeSeen,
// Unexpected; Report.OK sums it up).
package strategytest
