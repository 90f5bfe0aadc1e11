package strategytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/strategy/strategytest"
)

// neverExpires is sqlcond with an ExpireDue that returns nothing: the
// units of a killed process's holds never come back.
type neverExpires struct{ *sqlcond.Reserver }

func (neverExpires) ExpireDue(context.Context, int) (int, error) { return 0, nil }

// lostUpdate is sqlcond behind a read-then-write of the stock: it reads
// Available, reserves, then writes back what it read less what it took,
// erasing what other buyers, in this process or another, took meanwhile.
type lostUpdate struct{ *sqlcond.Reserver }

func (l lostUpdate) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if len(req.Lines) != 1 {
		return l.Reserver.Reserve(ctx, req)
	}
	before, err := l.Available(ctx, req.Lines[0].SKU)
	if err != nil {
		return inventory.Reservation{}, err
	}
	time.Sleep(2 * time.Millisecond) // the window another buyer reserves in
	r, err := l.Reserver.Reserve(ctx, req)
	if err != nil || before < req.Lines[0].Qty {
		return r, err
	}
	return r, l.SetStock(ctx, req.Lines[0].SKU, before-req.Lines[0].Qty)
}

type wrongMaker func(*sqlcond.Reserver) pgtest.Strategy

func maker(wrap wrongMaker) pgtest.Maker {
	return func(db pgstore.DB, schema string, now func() time.Time) (pgtest.Strategy, error) {
		s, err := sqlcond.New(db, &sqlcond.Options{Schema: schema, Now: now})
		if err != nil {
			return nil, err
		}
		return wrap(s), nil
	}
}

func procsConfig(wrap wrongMaker) strategytest.ProcsConfig {
	mk := maker(wrap)
	return strategytest.ProcsConfig{Procs: 3, Setup: pgtest.ProcsSetup(mk, nil), Open: pgtest.ProcsOpen(mk)}
}

// TestProcsCatchesHoldsThatNeverReturn shows the kill check can fail: when
// the strategy's sweep returns nothing, the killed worker's holds are
// still held after their TTL.
func TestProcsCatchesHoldsThatNeverReturn(t *testing.T) {
	cfg := procsConfig(func(s *sqlcond.Reserver) pgtest.Strategy { return neverExpires{s} })
	cfg.Kill = true
	cfg.Hammer = strategytest.HammerConfig{Workers: 4, SKUs: 3, Stock: 1000, MaxLines: 2, OpsPerWorker: 20, HoldTTL: 500 * time.Millisecond}
	rep, err := strategytest.Procs(t, cfg)
	require.NoError(t, err)
	t.Log(rep)
	require.GreaterOrEqual(t, rep.Killed, 0, "a worker was killed")
	assert.Positive(t, rep.HeldAfterSweep, "units still held after the TTL and a sweep")
	assert.False(t, rep.OK())
}

// TestProcsCatchesLostUpdates shows the check across processes can fail:
// a read-then-write of the stock oversells, and the end state says so.
func TestProcsCatchesLostUpdates(t *testing.T) {
	cfg := procsConfig(func(s *sqlcond.Reserver) pgtest.Strategy { return lostUpdate{s} })
	cfg.Hammer = strategytest.HammerConfig{Workers: 4, SKUs: 1, Stock: 100, MaxQty: 2, SellOut: true, FixedStock: true}
	rep, err := strategytest.Procs(t, cfg)
	require.NoError(t, err)
	t.Log(rep)
	assert.Positive(t, rep.Oversold, "units oversold across the processes")
	assert.Greater(t, rep.Granted, int64(100), "more units granted than exist")
	assert.False(t, rep.OK())
}
