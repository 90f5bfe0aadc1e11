package sqlcond_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/oversell/inventory/internal/mystore/mytest"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

func newMySQL(db *sql.DB, schema string, now func() time.Time) (mytest.Strategy, error) {
	return sqlcond.NewMySQL(db, &sqlcond.Options{Schema: schema, Now: now})
}

func TestMySQLConformance(t *testing.T) {
	strategytest.RunConformance(t, func(ctx context.Context, t *testing.T) *strategytest.Harness {
		return mytest.Harness(ctx, t, newMySQL)
	})
}
