package pessimistic_test

import (
	"testing"

	"github.com/oversell/inventory/internal/pgstore/pgtest"
)

// A reservation is a batch that locks, then an UPDATE, then COMMIT: losing
// the batch's reply changes nothing; losing COMMIT's leaves the outcome
// unknown.
func TestFaults(t *testing.T) {
	pgtest.RunFaults(t, newStrategy, pgtest.BatchPoint(false), pgtest.CommitPoint())
}

// A buyer process killed mid-run loses no units.
func TestCrashedProcessLosesNoUnits(t *testing.T) {
	pgtest.RunCrash(t, newStrategy)
}
