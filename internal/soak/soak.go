// Package soak reads INVENTORY_TEST_SOAK, the switch for the long versions
// of the tests, in one place. It has no dependencies, so that the public
// test suite (strategy/strategytest) reads it without pulling in the test
// services; tests use testsvc.Soak.
package soak

import "os"

// Env is the variable that asks for the long soaks: INVENTORY_TEST_SOAK=1.
const Env = "INVENTORY_TEST_SOAK"

// On reports whether INVENTORY_TEST_SOAK=1.
func On() bool { return os.Getenv(Env) == "1" }

// Pick returns short, or long when the soaks are on: the size of a hammer or
// a fault loop, whose short version is what its checks need to be able to
// fail.
func Pick[T any](short, long T) T {
	if On() {
		return long
	}
	return short
}
