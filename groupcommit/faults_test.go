package groupcommit_test

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/groupcommit"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// flushPoint is the flush that carries a reservation: its ID is bound in the
// flush's array of request IDs. The flush is its own implicit transaction,
// so losing its reply leaves the outcome unknown.
var flushPoint = pgtest.FaultPoint{Name: "flush", Pattern: func(id string) []byte { return []byte(id) }, Commits: true}

func TestFaults(t *testing.T) {
	pgtest.RunFaults(t, newStrategy, flushPoint)
}

// A buyer process killed mid-run loses no units.
func TestCrashedProcessLosesNoUnits(t *testing.T) {
	pgtest.RunCrash(t, newStrategy)
}

// Every call of a flush whose reply is lost, or whose request is lost with
// the connection, gets inventory.ErrOutcomeUnknown; retried with the same
// ID, each applies exactly once.
func TestAmbiguousBatchGivesEveryCallOutcomeUnknown(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, err := pgconn.ParseConfig(testsvc.PostgresURL(t))
	require.NoError(t, err)
	proxy, err := faultproxy.New(net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	r, schema := open(t, pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 4, Addr: proxy.Addr()}), groupcommit.Options{Flushers: 1})
	direct, err := groupcommit.New(testsvc.Postgres(t), &groupcommit.Options{Schema: schema}) // beside the proxy, to look
	require.NoError(t, err)
	skus := []string{"a", "b", "c"}
	want := map[string]int64{}
	for _, sku := range skus {
		require.NoError(t, r.SetStock(ctx, sku, 1_000_000))
		want[sku] = 1_000_000
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))

	// Every 10 cases meet both modes with every flush size (2..6 calls).
	cases := 40
	if testsvc.Soak() {
		cases = 1000
	}
	var members, applied int
	for i := range cases {
		mode := faultproxy.DropReply
		if i%2 == 1 {
			mode = faultproxy.DropRequest
		}
		reqs := make([]inventory.Request, 2+i%5)
		errs := make([]error, len(reqs))
		var calls []func()
		for k := range reqs {
			reqs[k] = inventory.Request{ID: strategytest.RandomID()}
			for _, j := range rng.Perm(len(skus))[:1+rng.IntN(2)] {
				reqs[k].Lines = append(reqs[k].Lines, inventory.Line{SKU: skus[j], Qty: 1 + rng.Int64N(3)})
			}
			calls = append(calls, func() { _, errs[k] = r.Reserve(ctx, reqs[k]) })
		}
		g := closeGate(t, r, schema)
		wait := queueInOrder(t, r, calls...)
		before := proxy.Fired()
		// The rule matches the last request's ID, bound in the flush that
		// carries them all.
		proxy.Arm(faultproxy.Rule{Pattern: []byte(reqs[len(reqs)-1].ID), Mode: mode, Times: 1})
		g.open()
		wait()
		proxy.Disarm()
		require.Equal(t, before+1, proxy.Fired(), "case %d: the rule fired once", i)
		for k, err := range errs {
			require.ErrorIs(t, err, inventory.ErrOutcomeUnknown, "case %d (%v), call %d of %d", i, mode, k, len(reqs))
			_, lerr := direct.Lookup(ctx, reqs[k].ID)
			if mode == faultproxy.DropReply {
				require.NoError(t, lerr, "case %d: the server applied the flush whose reply was lost", i)
				applied++
			} else {
				require.ErrorIs(t, lerr, inventory.ErrNotFound, "case %d: the lost request applied nothing", i)
			}
		}
		members += len(reqs)
		for k, req := range reqs {
			res, err := r.Reserve(ctx, req)
			require.NoError(t, err, "case %d: retry of call %d", i, k)
			require.True(t, inventory.SameLines(req.Lines, res.Lines))
			for _, l := range req.Lines {
				want[l.SKU] -= l.Qty
			}
		}
		for _, sku := range skus {
			n, err := direct.Available(ctx, sku)
			require.NoError(t, err)
			require.Equal(t, want[sku], n, "case %d: %s taken other than once per call", i, sku)
		}
	}
	t.Logf("%d broken flushes carried %d calls, all ErrOutcomeUnknown; %d had been applied, the rest applied by the retry", cases, members, applied)
	assert.Positive(t, applied)
}
