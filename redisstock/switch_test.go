package redisstock_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
)

// switching is a client that dials whichever server it was last switched
// to, for every command (a connection lives a nanosecond in its pool), as a
// failover client does while it follows a switch of masters and holds
// connections to the old master and the new one at once.
type switching struct {
	*redis.Client
	to atomic.Pointer[string]
}

func newSwitching(t *testing.T, addr string) *switching {
	s := &switching{}
	s.switchTo(addr)
	s.Client = redis.NewClient(&redis.Options{
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, *s.to.Load())
		},
		ConnMaxLifetime: time.Nanosecond,
	})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (s *switching) switchTo(addr string) { s.to.Store(&addr) }

// twoMasters is a store loaded on server a, with three reservations
// written behind and a fourth (a-4) only in a, and server b empty: a is an
// old master that still answers as one, b the master Sentinel promoted,
// emptied.
func twoMasters(ctx context.Context, t *testing.T) (in *instance, a, b *redistest.Server) {
	a, b = redistest.Start(t, nil), redistest.Start(t, nil)
	in = setupBare(ctx, t, a.Client(nil), nil)
	require.NoError(t, in.SetStock(ctx, "s", 10))
	for i := 1; i <= 4; i++ {
		_, err := in.Reserve(ctx, req(fmt.Sprintf("a-%d", i), line("s", 1)))
		require.NoError(t, err)
		if i == 3 {
			require.NoError(t, in.NewWriter(nil).Drain(ctx))
		}
	}
	return in, a, b
}

// onServer returns a store of in's schema and prefix on the client c.
func onServer(t *testing.T, in *instance, c redis.UniversalClient) *redisstock.Reserver {
	r, err := redisstock.New(testsvc.Postgres(t), c, &redisstock.Options{Schema: in.Schema, KeyPrefix: in.Prefix, Now: in.Clock.Now})
	require.NoError(t, err)
	return r
}

// TestLoadOnOneServer runs a Load through a client that switches from the
// emptied master b to the old master a after the Load found b empty and
// wiped it: every command of the Load still goes to b, which ends with what
// PostgreSQL has, and a is left as it was. The twin sends each command
// over whatever connection it gets, as the store did before it pinned one:
// it rebuilds a half of b and the other half, markers included, over a,
// whose reservation a-4 PostgreSQL never got.
func TestLoadOnOneServer(t *testing.T) {
	t.Parallel()
	for _, wrong := range []bool{false, true} {
		t.Run(map[bool]string{false: "Pinned", true: "Unpinned"}[wrong], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in, a, b := twoMasters(ctx, t)
			sw := newSwitching(t, b.Addr())
			rb := onServer(t, in, sw)
			rb.SetUnpinned(wrong)
			rb.SetBeforeLoadStock(func() { sw.switchTo(a.Addr()) })
			require.NoError(t, rb.Load(ctx))

			onB := onServer(t, in, b.Client(nil))
			okB, err := onB.Loaded(ctx)
			require.NoError(t, err)
			availA, err := in.Available(ctx, "s")
			require.NoError(t, err)
			t.Logf("wrong=%v: b loaded=%v; a says %d available with a-1..a-4 held", wrong, okB, availA)
			if wrong {
				assert.Equal(t, int64(7), availA, "the twin wrote PostgreSQL's stock over a, which holds a-4 too: 11 units of 10")
				return
			}
			require.True(t, okB, "the Load rebuilt b, the server it began on")
			n, err := onB.Available(ctx, "s")
			require.NoError(t, err)
			assert.Equal(t, int64(7), n)
			rep, err := onB.Reconcile(ctx, nil)
			require.NoError(t, err)
			assert.Empty(t, rep.Differences, "b agrees with PostgreSQL")
			assert.Equal(t, int64(6), availA, "a is left as it was")
		})
	}
}

// TestOldMasterRefused has a writer read the old master a after a Load
// rebuilt the emptied master b and b's first reservation was written
// behind. a's reservation a-4, never written behind, is older than that
// one, and its sequence number below PostgreSQL's, as any event of b's own
// history already applied would be: only the epoch of a's marker, an older
// Load's, tells them apart. The writer refuses a's batch and unloads a, so
// that PostgreSQL keeps exactly what b has. The twin applies events
// without comparing epochs, as the writer did before the marker's epoch was
// kept in PostgreSQL: PostgreSQL then holds a-4, which b never had, and
// more units than the stock.
func TestOldMasterRefused(t *testing.T) {
	t.Parallel()
	for _, wrong := range []bool{false, true} {
		t.Run(map[bool]string{false: "Refused", true: "IgnoringEpoch"}[wrong], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in, _, b := twoMasters(ctx, t)
			in.SetIgnoreEpoch(wrong)
			onB := onServer(t, in, b.Client(nil))
			require.NoError(t, onB.Load(ctx))
			_, err := onB.Reserve(ctx, req("b-1", line("s", 1)))
			require.NoError(t, err)
			require.NoError(t, onB.NewWriter(nil).Drain(ctx))

			err = in.NewWriter(nil).Drain(ctx) // a writer that reached a
			pg := testsvc.Postgres(t)
			var units, avail, a4 int64
			require.NoError(t, pg.QueryRow(ctx, `SELECT coalesce(sum(l.qty), 0) FROM "`+in.Schema+`".reservation r
JOIN "`+in.Schema+`".reservation_line l ON l.reservation_id = r.id WHERE r.state IN (1, 2)`).Scan(&units))
			require.NoError(t, pg.QueryRow(ctx, `SELECT available FROM "`+in.Schema+`".stock WHERE sku = 's'`).Scan(&avail))
			require.NoError(t, pg.QueryRow(ctx, `SELECT count(*) FROM "`+in.Schema+`".reservation WHERE id = 'a-4'`).Scan(&a4))
			rep, rerr := onB.Reconcile(ctx, nil)
			require.NoError(t, rerr)
			t.Logf("wrong=%v: drain of a: %v; PostgreSQL holds %d units, %d available, a-4 %d times; b and PostgreSQL differ on %d", wrong, err, units, avail, a4, len(rep.Differences))
			if wrong {
				require.NoError(t, err)
				assert.Equal(t, int64(1), a4, "without the epoch PostgreSQL takes a-4 from the old master")
				assert.NotEmpty(t, rep.Differences)
				return
			}
			require.ErrorIs(t, err, redisstock.ErrWentBack)
			ok, err := in.Loaded(ctx)
			require.NoError(t, err)
			assert.False(t, ok, "a refuses until Load")
			assert.Zero(t, a4)
			assert.Equal(t, int64(10), units+avail, "available + held + sold = stock")
			assert.Empty(t, rep.Differences, "PostgreSQL keeps what b has")
		})
	}
}

// TestLoadWaitsForReplicas loads, with WaitReplicas 1, a server that no
// replica follows, as an emptied old master is until Sentinel makes it a
// replica: what it is given is thrown away with it, so the Load fails with
// ErrNotReplicated, takes its markers back, and PostgreSQL keeps following
// the history it followed. The twin commits without the WAIT, as Load did
// before: PostgreSQL then follows the server that will be thrown away, and
// refuses the real master's events until it is rebuilt, dropping what it
// acknowledged with its replica's confirmation.
func TestLoadWaitsForReplicas(t *testing.T) {
	t.Parallel()
	for _, wrong := range []bool{false, true} {
		t.Run(map[bool]string{false: "Waits", true: "NoWait"}[wrong], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			srv := redistest.Start(t, nil)
			schema := testsvc.Schema(t)
			r, err := redisstock.New(testsvc.Postgres(t), srv.Client(nil), &redisstock.Options{Schema: schema, KeyPrefix: testsvc.RedisPrefix(t), WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, r.Migrate(ctx))
			r.SetLoadNoWait(wrong)
			lerr := r.Load(ctx)
			ok, err := r.Loaded(ctx)
			require.NoError(t, err)
			var followed int
			require.NoError(t, testsvc.Postgres(t).QueryRow(ctx, `SELECT count(*) FROM "`+schema+`".redisstock_bucket WHERE epoch <> ''`).Scan(&followed))
			t.Logf("wrong=%v: load: %v; loaded=%v; buckets PostgreSQL follows a Load in: %d", wrong, lerr, ok, followed)
			if wrong {
				require.NoError(t, lerr)
				assert.Equal(t, 1, followed, "without the WAIT PostgreSQL follows a Load no replica has")
				return
			}
			require.ErrorIs(t, lerr, redisstock.ErrNotReplicated)
			assert.False(t, ok, "the markers are taken back")
			assert.Zero(t, followed, "PostgreSQL follows no Load the replicas did not confirm")
		})
	}
}
