package redisstock_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
)

// TestProcs runs the hammer in four processes at once on one schema and one
// key prefix over four buckets, and kills one of them mid-run: its holds
// expire, and a cart it left half taken is undone after PendingTimeout.
func TestProcs(t *testing.T) {
	rdb := testsvc.Redis(t)
	prefix := func(schema string) string { return "invtest:procs:" + schema + ":" }
	mk := func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
		return redisstock.New(db, rdb, &redisstock.Options{Schema: schema, KeyPrefix: prefix(schema), Buckets: 4, Now: now, PendingTimeout: time.Second})
	}
	pgtest.RunProcs(t, mk, 0, func(t *testing.T, schema string) {
		testsvc.CleanRedisPrefix(t, prefix(schema))
		s, err := mk(testsvc.Postgres(t), schema, time.Now)
		require.NoError(t, err)
		require.NoError(t, s.(*redisstock.Reserver).Load(t.Context()))
	})
}
