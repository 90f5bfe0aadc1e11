package sqlcond_test

import (
	"testing"

	"github.com/oversell/inventory/internal/pgstore/pgtest"
)

// A reservation is one batch that commits by itself: losing its reply leaves
// the outcome unknown.
func TestFaults(t *testing.T) {
	pgtest.RunFaults(t, newStrategy, pgtest.BatchPoint(true))
}

// A buyer process killed mid-run loses no units.
func TestCrashedProcessLosesNoUnits(t *testing.T) {
	pgtest.RunCrash(t, newStrategy)
}
