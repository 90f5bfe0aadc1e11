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
// # Linearizability
//
// The hammer checks totals at quiet points; it cannot see an Available that
// is stale while calls are in flight, or a retry answered differently from
// the first call. RunConformance therefore also records two histories of
// concurrent Reserve, Commit, Release and Available calls, with the time
// each was made and returned, and checks them with porcupine
// (github.com/anishathalye/porcupine) against a sequential model of the
// contract: one of one-line carts over three SKUs, checked per SKU, and one
// of carts of two lines within two pairs of SKUs, checked per pair
// (partitioned by connected SKUs). Some calls get a deadline of a few
// milliseconds; a call that fails without a definite answer
// (ErrOutcomeUnknown, a deadline, a cut connection) is modelled as possibly
// applied at any point after it was made, and is retried with the same ID,
// which must agree. A check that does not finish within
// LinearizabilityTimeout fails (porcupine's Unknown is not a pass). On
// failure the test names the HTML file in which porcupine drew the history
// and prints where the check got stuck. The suite's own tests show that the
// racy strategy, one whose Available is stale only while calls are in
// flight (which the hammer passes), and one whose retry takes stock again
// all come out Illegal. A strategy that takes some carts line by line says
// why in Harness.LinesTakenApart, and the two-line verdict is logged.
//
// # Many processes
//
// RunProcs runs the hammer in several processes at once on one store: the
// test binary is run again once per worker, selected by -test.run and an
// environment variable, and each worker opens the store with connections
// of its own. The test's own process stocks the SKUs, merges the workers'
// reports and checks the invariant across all of them. With Kill, one
// worker is killed with SIGKILL at a random point of its run; after the
// holds' TTL and a sweep, nothing may be left held, no unit lost or
// returned twice, and the other workers may have seen no error outside the
// contract. A store-backed strategy's test runs the three standard runs in
// a few lines:
//
//	func TestProcs(t *testing.T) {
//		strategytest.RunProcsSuite(t, strategytest.ProcsConfig{
//			Setup: func(ctx context.Context, t *testing.T) string { return newSchema(ctx, t) }, // once
//			Open: func(ctx context.Context, t *testing.T, ns string) *strategytest.Harness {   // in every process
//				return &strategytest.Harness{Strategy: openOn(ctx, t, ns)}
//			},
//		})
//	}
//
// The test must reach the call the same way in every process, and do
// nothing before it that a worker must not do: in a worker, the call does
// the worker's share and ends the test (it is skipped). Procs returns the
// ProcsReport without failing the test, for tests that expect a failure.
//
// The runner itself needs no test: ProcsRun takes the parent's own handle
// on the store, a hook that runs this program again as a worker, and a
// directory, and returns the merged ProcsReport; the program finds its
// orders in a worker with ProcsWorkerOrders and runs its share with
// ProcsWorker.Run, whose data (latencies, say) the parent gets back
// through ProcsRun.Collect. The workers' buyers start together, once every
// worker has opened the store. Procs is a thin wrapper over it, and
// cmd/invbench's -procs runs its benchmark points through it.
//
// # Guarantees
//
// RunConformance checks every behaviour of the inventory.Reserver contract in
// a subtest named after it (SameIDConcurrentDecrementsOnce,
// OverdueHoldCannotBeCommittedBeforeASweep,
// SweepersReturnAbandonedHoldsOnce, ...), then hammers the strategy with
// concurrent buyers: 64 selling out one hot SKU, which must end with exactly
// its stock granted; 64 with carts of up to five lines over 20 SKUs; and
// calls cut short at random by their contexts. The hammers run as long as
// their checks need to be able to fail (the racy strategy oversells at their
// sizes); INVENTORY_TEST_SOAK=1 runs them several times longer. After each hammer it checks
// the exact invariant per SKU: available + held + sold equals the stock set
// plus the units added, never below zero, and no error outside the
// contract. The suite's own tests keep a deliberately racy strategy and
// show that the hammer catches its oversell, and two broken wrappers of a
// PostgreSQL strategy that the multi-process runs catch: one that never
// returns expired holds, one that loses updates across processes.
//
// The optional features have a subtest each: LimitPerBuyer,
// PartialCartHoldsWhatIsThere, RepeatsMatchBuyerAndPartial,
// ExtendKeepsAHoldLonger (capped at Harness.MaxHold), LevelsAgreeWithEachOther,
// BackordersSellBeyondTheStock, and HammerLimitPerBuyer, 64 sessions of 8
// buyers racing for a SKU that sells 2 per buyer, after which no buyer holds
// and has bought more than 2 and the units add up. A strategy that refuses a
// feature with inventory.ErrUnsupported passes its subtest once the subtest
// has seen that the refusal changed nothing, and the subtest logs that the
// feature is not offered (UnofferedFeaturesAreRefusedCleanly checks every
// refusal at once). The suite's own tests keep a wrong strategy for each of
// these checks (one that ignores the limit, one whose Levels count held
// units as sold, one that refuses after it has taken the units, ...) and
// show that the subtests catch each.
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
