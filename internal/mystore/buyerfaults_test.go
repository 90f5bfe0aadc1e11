package mystore_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/mystore/mytest"
	"github.com/oversell/inventory/strategy/strategytest"
)

// A reservation with a Buyer (or Partial) is not the one CALL of the
// plain path: it is a transaction of several statements, the reservation
// row first, then COMMIT. Its replies are lost at both ends through a
// faultproxy. The reply to the reservation row's INSERT, before COMMIT:
// the call fails (the connection goes with the reply, and the server rolls
// the transaction back), nothing is reserved, and the retry reserves once.
// The reply to COMMIT: the call fails with inventory.ErrOutcomeUnknown, the
// reservation stands, and the retry answers with it. Either way the stock
// and the buyer's usage of a SKU with a limit are taken exactly once: after
// the run the buyer may take what the limit leaves, and not a unit more.
func TestBuyerCartRepliesLostApplyOnce(t *testing.T) {
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			s, tried, err := buyerRepliesLost(t, mk, nil)
			require.NoError(t, err)
			for _, f := range []string{faultlog.ReplyBeforeCommit, faultlog.ReplyAfterCommit} {
				faultlog.Log(t, faultlog.Cell{Strategy: faultlog.StrategyName(s), Fault: f, Tried: tried[f]})
			}
		})
	}
}

// The check catches a strategy whose retry is not idempotent.
func TestBuyerCartRepliesLostCatchesAFreshIDOnRetry(t *testing.T) {
	_, _, err := buyerRepliesLost(t, makers["pessimistic"], func(s mytest.Strategy) mytest.Strategy {
		return &freshIDOnRetry{Strategy: s, seen: map[string]bool{}}
	})
	require.Error(t, err)
	t.Log("caught:", err)
}

// buyerRepliesLost runs the check of TestBuyerCartRepliesLostApplyOnce on
// a strategy made by mk, wrapped by wrap when not nil, and returns the
// strategy, the calls it broke per fault, and the first broken guarantee.
func buyerRepliesLost(t *testing.T, mk mytest.Maker, wrap func(mytest.Strategy) mytest.Strategy) (inventory.Strategy, map[string]int64, error) {
	ctx := t.Context()
	rig := newLostReplyRig(t, mk, wrap)
	b, proxy, s, direct, stock := rig.b, rig.proxy, rig.s, rig.direct, rig.stock
	const limit = 60 // per buyer, of "a"
	require.NoError(t, inventory.SetStockWith(ctx, direct, "a", stock["a"], inventory.StockOptions{Limit: limit}))
	require.NoError(t, direct.SetStock(ctx, "b", stock["b"]))
	checkStock := rig.checkStock
	found := func(id string) bool {
		_, err := direct.Lookup(ctx, id)
		if err != nil {
			require.ErrorIs(t, err, inventory.ErrNotFound)
		}
		return err == nil
	}

	tried := map[string]int64{}
	var used int64 // units of "a" the buyer holds
	for i := range 8 {
		req := inventory.Request{ID: strategytest.RandomID(), Buyer: "buyer-1", TTL: time.Hour, Lines: []inventory.Line{{SKU: "a", Qty: 2}}}
		if i%2 == 1 {
			req.Lines = append(req.Lines, inventory.Line{SKU: "b", Qty: 3})
		}
		fault, pattern := faultlog.ReplyBeforeCommit, mytest.CallPoint.Pattern(req.ID) // the reservation row's INSERT
		if i%4 >= 2 {
			fault, pattern = faultlog.ReplyAfterCommit, []byte("\x03COMMIT") // COM_QUERY COMMIT, not "READ COMMITTED"
		}
		what := fmt.Sprintf("reserve %d (%s)", i, fault)
		before := proxy.Fired()
		proxy.Arm(faultproxy.Rule{Pattern: pattern, Mode: faultproxy.DropReply, Times: 1})
		_, err := s.Reserve(ctx, req)
		proxy.Disarm()
		require.Greater(t, proxy.Fired(), before, "%s: the rule never fired", what)
		tried[fault]++
		if err == nil {
			return s, tried, fmt.Errorf("%s: a call whose reply was lost succeeded", what)
		}
		if bug := b.ServerBug(err); bug != nil {
			return s, tried, fmt.Errorf("%s: %w", what, bug)
		}
		switch fault {
		case faultlog.ReplyBeforeCommit:
			if !errors.Is(err, inventory.ErrOutcomeUnknown) && !errors.Is(err, inventory.ErrUnavailable) {
				return s, tried, fmt.Errorf("%s: the error is neither inventory.ErrOutcomeUnknown nor ErrUnavailable: %w", what, err)
			}
			if found(req.ID) {
				return s, tried, fmt.Errorf("%s: reserved, though COMMIT was never sent", what)
			}
		default:
			if !errors.Is(err, inventory.ErrOutcomeUnknown) {
				return s, tried, fmt.Errorf("%s: the commit's reply was lost, but the error is not inventory.ErrOutcomeUnknown: %w", what, err)
			}
			if !found(req.ID) {
				return s, tried, fmt.Errorf("%s: not reserved, though the server committed before the reply was lost", what)
			}
			for _, l := range req.Lines {
				stock[l.SKU] -= l.Qty
			}
			used += req.Lines[0].Qty
		}
		if err := checkStock(what + ", before the retry"); err != nil {
			return s, tried, err
		}
		var res inventory.Reservation
		for range 100 { // the server may still hold the broken transaction's locks
			if res, err = s.Reserve(ctx, req); !errors.Is(err, inventory.ErrContended) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			return s, tried, fmt.Errorf("%s: the retry: %w", what, err)
		}
		if res.State != inventory.Held || !inventory.SameLines(req.Lines, res.Lines) {
			return s, tried, fmt.Errorf("%s: the retry answered %v %v, not one reservation of the lines", what, res.State, res.Lines)
		}
		if fault == faultlog.ReplyBeforeCommit {
			for _, l := range req.Lines {
				stock[l.SKU] -= l.Qty
			}
			used += req.Lines[0].Qty
		}
		if err := checkStock(what + ", after the retry"); err != nil {
			return s, tried, err
		}
	}
	// The buyer's usage counted each reservation once: what the limit leaves
	// may be taken, one unit more may not.
	over := inventory.Request{ID: strategytest.RandomID(), Buyer: "buyer-1", Lines: []inventory.Line{{SKU: "a", Qty: limit - used + 1}}}
	if _, err := direct.Reserve(ctx, over); !errors.Is(err, inventory.ErrLimitExceeded) {
		return s, tried, fmt.Errorf("%d units past a limit of %d with %d used: %v, want inventory.ErrLimitExceeded", over.Lines[0].Qty, limit, used, err)
	}
	rest := inventory.Request{ID: strategytest.RandomID(), Buyer: "buyer-1", Lines: []inventory.Line{{SKU: "a", Qty: limit - used}}}
	if _, err := direct.Reserve(ctx, rest); err != nil {
		return s, tried, fmt.Errorf("the %d units a limit of %d leaves with %d used: %w", rest.Lines[0].Qty, limit, used, err)
	}
	return s, tried, nil
}
