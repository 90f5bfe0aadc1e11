// Package strategytest is the conformance suite every inventory strategy
// runs, like net/http/httptest or testing/fstest for their interfaces.
//
// A strategy's test file calls RunConformance with a HarnessMaker that makes
// an isolated instance per subtest. The suite checks each behaviour of the
// inventory.Reserver contract in its own subtest, and hammers the strategy
// with concurrent buyers on scarce stock, checking the exact invariant:
// nothing oversold, nothing lost, every retry harmless.
//
// The hammer core (Hammer) is also callable outside of tests and returns a
// Report, so the benchmark command reuses it.
package strategytest
