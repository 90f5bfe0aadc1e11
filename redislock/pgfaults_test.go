package redislock_test

import (
	"testing"

	"github.com/oversell/inventory/internal/pgstore/pgtest"
)

// TestPostgresFaults breaks the PostgreSQL side of Reserve: the batch that
// records the reservation and reads the stock, and the COMMIT after the
// fenced write.
func TestPostgresFaults(t *testing.T) {
	t.Parallel()
	pgtest.RunFaults(t, maker(t), pgtest.BatchPoint(false), pgtest.CommitPoint())
}
