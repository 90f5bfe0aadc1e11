package pessimistic_test

import (
	"testing"

	"github.com/oversell/inventory/internal/mystore/mytest"
)

func TestMySQLProcs(t *testing.T) {
	mytest.RunProcs(t, newMySQL)
}
