package token_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/pgstore/pgtest"
	"github.com/oversell/inventory/internal/redistest"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/token"
)

// inFlight is an inner strategy that records, per reservation ID, the most
// Reserve calls it ever had in flight at once: the token's promise is one.
type inFlight struct {
	inventory.Strategy
	delay time.Duration

	mu   sync.Mutex
	now  map[string]int
	peak map[string]int
}

func newInFlight(delay time.Duration) *inFlight {
	return &inFlight{Strategy: memory.New(nil), delay: delay, now: map[string]int{}, peak: map[string]int{}}
}

func (f *inFlight) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	f.mu.Lock()
	f.now[req.ID]++
	f.peak[req.ID] = max(f.peak[req.ID], f.now[req.ID])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.now[req.ID]--
		f.mu.Unlock()
	}()
	time.Sleep(f.delay)
	return f.Strategy.Reserve(ctx, req)
}

// doubles counts the IDs that reached Reserve more than once at a time.
func (f *inFlight) doubles() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, p := range f.peak {
		if p > 1 {
			n++
		}
	}
	return n
}

// forgetful is a wrong flag store: every claim succeeds, so duplicates all
// pass. The fault check must catch it.
type forgetful struct{ token.Store }

func (forgetful) Claim(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}

// faultRun is what one run of submissions under faults found.
type faultRun struct {
	tried, failed      int64
	oversold, lost     int64
	double, unexpected int64
	firstUnexpected    error
}

// submitUnderFaults submits tokens, each by four buyers at once through two
// Reservers, while hurt damages the flag store's link during the round of
// that token (nil: no faults). Then it submits every token once more with
// the link whole, which must succeed, and checks the inner stock: every
// unit available or held by a token's reservation, none taken twice.
func submitUnderFaults(t *testing.T, store token.Store, hurt func(tok string)) faultRun {
	t.Helper()
	ctx := t.Context()
	const stock, tokens, buyers = 1000, 40, 4
	inner := newInFlight(2 * time.Millisecond)
	require.NoError(t, inner.SetStock(ctx, "sku", stock))
	issuer := newIssuer(t, nil)
	rs := []*token.Reserver{token.Wrap(inner, issuer, store, nil), token.Wrap(inner, issuer, store, nil)}
	var run faultRun
	reqs := make([]inventory.Request, tokens)
	for i := range reqs {
		tok, err := issuer.Issue(ctx)
		require.NoError(t, err)
		reqs[i] = inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "sku", Qty: 1 + rand.Int64N(3)}}}
	}
	var mu sync.Mutex
	check := func(req inventory.Request, res inventory.Reservation, err error) {
		mu.Lock()
		defer mu.Unlock()
		run.tried++
		switch {
		case err == nil:
			if res.ID != req.ID || !inventory.SameLines(res.Lines, req.Lines) {
				run.unexpected++
				run.firstUnexpected = cmp(run.firstUnexpected, fmt.Errorf("%s answered with %+v", req.ID, res))
			}
		case errors.Is(err, inventory.ErrOutcomeUnknown), errors.Is(err, inventory.ErrUnavailable),
			errors.Is(err, inventory.ErrContended), errors.Is(err, context.DeadlineExceeded):
			run.failed++
		default:
			run.unexpected++
			run.firstUnexpected = cmp(run.firstUnexpected, err)
		}
	}
	for _, req := range reqs {
		var wg sync.WaitGroup
		for b := range buyers {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				res, err := rs[b%2].Reserve(cctx, req)
				check(req, res, err)
			})
		}
		if hurt != nil {
			hurt(req.ID)
		}
		wg.Wait()
	}
	var held int64
	for _, req := range reqs {
		// A client sends again what found the store unavailable (a server
		// coming back, a pool with killed connections left in it).
		var res inventory.Reservation
		var err error
		for range 50 {
			if res, err = rs[0].Reserve(ctx, req); !errors.Is(err, inventory.ErrUnavailable) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		require.NoError(t, err, "a submission with the link whole")
		require.Equal(t, req.ID, res.ID)
		if res.State == inventory.Held {
			held += req.Lines[0].Qty
		}
	}
	avail, err := inner.Available(ctx, "sku")
	require.NoError(t, err)
	if avail < 0 || held > stock {
		run.oversold = max(-avail, held-stock)
	}
	if avail+held < stock {
		run.lost = stock - avail - held
	}
	if avail+held > stock {
		run.oversold = max(run.oversold, avail+held-stock)
	}
	run.double = inner.doubles()
	return run
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// TestFlagStoreFaults submits each token from four buyers at once while the
// link to its flag store (Redis, PostgreSQL) loses the reply to the token's
// first store call (the store acted, the client never learnt it) or is cut
// whole at a random moment. Whatever the calls answered, no token reaches
// the inner strategy twice at a time, every unit is available or held by a
// token's reservation, and a later submission of each token succeeds.
func TestFlagStoreFaults(t *testing.T) {
	stores := map[string]func(t *testing.T, addr string) token.Store{
		"Redis": func(t *testing.T, addr string) token.Store {
			rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 3, DialTimeout: time.Second})
			t.Cleanup(func() { _ = rdb.Close() })
			return token.NewRedisStore(rdb, &token.RedisOptions{Prefix: testsvc.RedisPrefix(t)})
		},
		"Postgres": func(t *testing.T, addr string) token.Store {
			st, err := token.NewPostgresStore(pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 4, Addr: addr}), &token.PostgresOptions{Schema: testsvc.Schema(t)})
			require.NoError(t, err)
			require.NoError(t, st.Migrate(t.Context()))
			return st
		},
	}
	targets := map[string]func(t *testing.T) string{
		"Redis": func(t *testing.T) string {
			opt, err := redis.ParseURL(testsvc.RedisURL(t))
			require.NoError(t, err)
			return opt.Addr
		},
		"Postgres": func(t *testing.T) string { return testsvc.PostgresAddr(t) },
	}
	faults := map[string]func(p *faultproxy.Proxy) func(tok string){
		faultlog.ReplyAfterCommit: func(p *faultproxy.Proxy) func(string) {
			return func(tok string) { p.Arm(faultproxy.Rule{Pattern: []byte(tok), Times: 1}) }
		},
		faultlog.ConnCut: func(p *faultproxy.Proxy) func(string) {
			return func(string) {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				p.CutAll()
			}
		},
	}
	for name, open := range stores {
		for fault, hurt := range faults {
			t.Run(name+"/"+fault, func(t *testing.T) {
				t.Parallel()
				p, err := faultproxy.New(targets[name](t))
				require.NoError(t, err)
				t.Cleanup(func() { _ = p.Close() })
				store := open(t, p.Addr())
				run := submitUnderFaults(t, store, hurt(p))
				p.Disarm()
				t.Logf("%d submissions, %d failed under the fault, %d doubles, %d unexpected (first: %v); proxy fired %d",
					run.tried, run.failed, run.double, run.unexpected, run.firstUnexpected, p.Fired())
				assert.Zero(t, run.oversold, "oversold")
				assert.Zero(t, run.lost, "lost")
				assert.Zero(t, run.double, "tokens that reached the inner strategy twice at a time")
				assert.Zero(t, run.unexpected, "answers outside the contract: first %v", run.firstUnexpected)
				faultlog.Log(t, faultlog.Cell{Strategy: "token", Fault: fault, Tried: run.tried,
					Oversold: run.oversold, Lost: run.lost, Double: run.double})
			})
		}
	}
	t.Run("CheckCatchesAStoreThatLetsDuplicatesThrough", func(t *testing.T) {
		t.Parallel()
		run := submitUnderFaults(t, forgetful{token.NewMemoryStore()}, nil)
		t.Logf("a store whose every claim succeeds: %d of 40 tokens reached the inner strategy twice at a time", run.double)
		assert.Positive(t, run.double)
	})
}

// TestFlagStoreServerFaults submits each token from four buyers at once
// while the flag store's server fails under them: the PostgreSQL backends
// of the store's pool are terminated, or a redis-server of the test's own is
// SIGKILLed and restarted, from its append-only file or empty. The checks
// are those of TestFlagStoreFaults, whose
// CheckCatchesAStoreThatLetsDuplicatesThrough shows them failing. An empty
// restart forgets the flags of the tokens in flight, so a duplicate may
// reach the inner strategy beside the first submission: that is counted,
// not refused, and the inner strategy's idempotency on the ID keeps the
// stock exact.
func TestFlagStoreServerFaults(t *testing.T) {
	const every = 8 // the server fails in the round of every eighth token, never the last
	redisStore := func(t *testing.T, aof bool) (token.Store, func(tok string)) {
		srv := redistest.Start(t, &redistest.Options{AppendOnly: aof})
		rdb := srv.Client(&redis.Options{MaxRetries: 3, DialTimeout: 250 * time.Millisecond})
		var n int
		return token.NewRedisStore(rdb, &token.RedisOptions{Prefix: testsvc.RedisPrefix(t)}), func(string) {
			if n++; n%every == every/2 {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				srv.Restart()
			}
		}
	}
	for _, c := range []struct {
		fault     string
		open      func(t *testing.T) (token.Store, func(tok string))
		mayDouble bool
	}{
		{faultlog.BackendKilled, func(t *testing.T) (token.Store, func(tok string)) {
			app := pgtest.AppName()
			st, err := token.NewPostgresStore(pgtest.Pool(t, pgtest.PoolConfig{MaxConns: 4, AppName: app}), &token.PostgresOptions{Schema: testsvc.Schema(t)})
			require.NoError(t, err)
			require.NoError(t, st.Migrate(t.Context()))
			admin := testsvc.Postgres(t)
			var n int
			return st, func(string) {
				if n++; n%every == every/2 {
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					_, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app)
					assert.NoError(t, err)
				}
			}
		}, false},
		{faultlog.RedisRestartAOF, func(t *testing.T) (token.Store, func(tok string)) { return redisStore(t, true) }, false},
		{faultlog.RedisRestartNoAOF, func(t *testing.T) (token.Store, func(tok string)) { return redisStore(t, false) }, true},
		{faultlog.RedisFailover, func(t *testing.T) (token.Store, func(tok string)) { return failoverStore(t, 0) }, true},
		{faultlog.RedisFailoverWait, func(t *testing.T) (token.Store, func(tok string)) { return failoverStore(t, 1) }, false},
	} {
		t.Run(c.fault, func(t *testing.T) {
			t.Parallel()
			store, hurt := c.open(t)
			run := submitUnderFaults(t, store, hurt)
			t.Logf("%d submissions, %d failed under the fault, %d doubles, %d unexpected (first: %v)",
				run.tried, run.failed, run.double, run.unexpected, run.firstUnexpected)
			assert.Zero(t, run.oversold, "oversold")
			assert.Zero(t, run.lost, "lost")
			if !c.mayDouble {
				assert.Zero(t, run.double, "tokens that reached the inner strategy twice at a time")
			}
			assert.Zero(t, run.unexpected, "answers outside the contract: first %v", run.firstUnexpected)
			faultlog.Log(t, faultlog.Cell{Strategy: "token", Fault: c.fault, Tried: run.tried,
				Oversold: run.oversold, Lost: run.lost, Double: run.double})
		})
	}
}

// failoverStore returns a RedisStore on a failover client of a Sentinel
// set-up of the test's own, waiting for wait replicas, and the fault of
// TestFlagStoreServerFaults: midway through the tokens it holds the
// replication stream for a round of submissions, then, once that round is
// over, SIGKILLs the primary during the next round and cuts the stream, so
// that the promoted replica lacks what the held round wrote. Once the
// Sentinels agree on the new master it counts the flags the old primary had
// for the finished rounds and the new master lacks, with a FAILOVER line:
// without WAIT the flag of the held round is gone (so the check sees a loss
// when there is one); with WAIT none may be, since a claim the replica did
// not confirm failed and was cleared.
func failoverStore(t *testing.T, wait int) (token.Store, func(tok string)) {
	s := redistest.StartSentinel(t)
	c := s.FailoverClient(&redis.FailoverOptions{MaxRetries: 3, DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	prefix := testsvc.RedisPrefix(t)
	store := token.NewRedisStore(c, &token.RedisOptions{Prefix: prefix, WaitReplicas: wait, ReplicaTimeout: 300 * time.Millisecond})
	const held = 20 // the round (1-based) whose writes the replica never gets
	var seen []string
	return store, func(tok string) {
		seen = append(seen, tok)
		switch len(seen) {
		case held - 1: // the held round's submissions start after this
			s.Link.Hold()
		case held + 1:
			done := seen[:held] // finished rounds; this one is in flight
			old := s.Primary.Client(nil)
			flagged := map[string]bool{}
			for _, tok := range done {
				n, err := old.Exists(t.Context(), prefix+tok).Result()
				require.NoError(t, err)
				flagged[tok] = n == 1
			}
			took, err := s.FailOver(t.Context(), nil)
			require.NoError(t, err)
			var had, lost int
			for _, tok := range done {
				if !flagged[tok] {
					continue
				}
				had++
				n, err := c.Exists(t.Context(), prefix+tok).Result()
				require.NoError(t, err)
				if n == 0 {
					lost++
				}
			}
			t.Logf("FAILOVER strategy=token wait=%d failover_ms=%d tokens_before_kill=%d flags_before_kill=%d flags_lost=%d",
				wait, took.Milliseconds(), len(done), had, lost)
			if wait > 0 {
				assert.Zero(t, lost, "flags the replica confirmed and the new master lacks")
			} else {
				assert.Positive(t, lost, "without WAIT the flag of the held round is on the old primary alone")
			}
		}
	}
}
