package strategy_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

func TestNamesListEveryStrategyOnceWithMemoryFirst(t *testing.T) {
	names := strategy.Names()
	require.NotEmpty(t, names)
	assert.Equal(t, "memory", names[0])
	assert.Contains(t, names, "token")
	seen := map[string]bool{}
	for _, n := range names {
		assert.False(t, seen[n], "%q listed twice", n)
		seen[n] = true
	}
	infos := strategy.All()
	require.Len(t, infos, len(names))
	for i, info := range infos {
		assert.Equal(t, names[i], info.Name)
		assert.NotEmpty(t, info.Summary, "summary of %s", info.Name)
	}
}

func TestUnknownNameFailsListingTheKnownNames(t *testing.T) {
	s, closeFn, err := strategy.Open(t.Context(), "optimistic-wishes", nil)
	require.ErrorIs(t, err, strategy.ErrUnknownStrategy)
	assert.Nil(t, s)
	assert.Nil(t, closeFn)
	assert.Contains(t, err.Error(), `"optimistic-wishes"`)
	for _, n := range strategy.Names() {
		assert.Contains(t, err.Error(), n)
	}

	_, err = strategy.Lookup("")
	require.ErrorIs(t, err, strategy.ErrUnknownStrategy)
	info, err := strategy.Lookup("memory")
	require.NoError(t, err)
	assert.Empty(t, info.Services)
}

func TestLookupReturnsACopy(t *testing.T) {
	for _, name := range strategy.Names() {
		info, err := strategy.Lookup(name)
		require.NoError(t, err)
		if len(info.Services) > 0 {
			info.Services[0] = "scribbled"
			again, err := strategy.Lookup(name)
			require.NoError(t, err)
			assert.NotEqual(t, strategy.Service("scribbled"), again.Services[0])
		}
	}
}

func TestMemoryFromNilConfigWorksAndHonoursClockAndTTL(t *testing.T) {
	ctx := t.Context()
	s, closeFn, err := strategy.Open(ctx, "memory", nil)
	require.NoError(t, err)
	require.NoError(t, closeFn(ctx))
	require.NoError(t, closeFn(ctx), "closing twice is harmless")
	require.NoError(t, s.SetStock(ctx, "a", 1))

	clk := strategytest.NewClock()
	s, closeFn, err = strategy.Open(ctx, "memory", &strategy.Config{Now: clk.Now, DefaultTTL: time.Minute})
	require.NoError(t, err)
	defer func() { assert.NoError(t, closeFn(ctx)) }()
	require.NoError(t, s.SetStock(ctx, "a", 1))
	res, err := s.Reserve(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	assert.Equal(t, clk.Now().Add(time.Minute), res.ExpiresAt)
}

func TestMemoryHonoursRetention(t *testing.T) {
	ctx := t.Context()
	clk := strategytest.NewClock()
	s, closeFn, err := strategy.Open(ctx, "memory", &strategy.Config{Now: clk.Now, Retention: time.Hour})
	require.NoError(t, err)
	defer func() { assert.NoError(t, closeFn(ctx)) }()
	require.NoError(t, s.SetStock(ctx, "a", 2))
	_, err = s.Reserve(ctx, inventory.Request{ID: "r1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, "r1"))
	clk.Advance(time.Hour)
	_, err = s.Lookup(ctx, "r1")
	require.ErrorIs(t, err, inventory.ErrNotFound, "forgotten an hour after it settled")
	n, err := s.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the sold unit stays sold")
}

func TestServiceMissingFromConfigFailsWithErrServiceNotConfigured(t *testing.T) {
	for _, info := range strategy.All() {
		if len(info.Services) == 0 {
			continue
		}
		t.Run(info.Name, func(t *testing.T) {
			_, _, err := strategy.Open(t.Context(), info.Name, &strategy.Config{})
			require.ErrorIs(t, err, strategy.ErrServiceNotConfigured)
		})
	}
	// The token strategy's flags can be put in a service explicitly.
	_, _, err := strategy.Open(t.Context(), "token", &strategy.Config{TokenInner: "memory", TokenStore: strategy.Redis})
	require.ErrorIs(t, err, strategy.ErrServiceNotConfigured)
	_, _, err = strategy.Open(t.Context(), "token", &strategy.Config{TokenStore: "floppy"})
	require.Error(t, err)
	_, _, err = strategy.Open(t.Context(), "token", &strategy.Config{TokenInner: "token"})
	require.Error(t, err)
	_, _, err = strategy.Open(t.Context(), "token", &strategy.Config{TokenInner: "nope"})
	require.ErrorIs(t, err, strategy.ErrUnknownStrategy)
}

func TestUnreachableURLFailsAndLeavesNothingOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, _, err := strategy.Open(ctx, "token", &strategy.Config{
		TokenStore: strategy.Postgres, PostgresURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2",
	})
	require.Error(t, err)
	_, _, err = strategy.Open(ctx, "token", &strategy.Config{TokenStore: strategy.Redis, RedisURL: "not a url"})
	require.Error(t, err)
}

func TestTokenStrategyAcceptsOnlyTheIDsItIssues(t *testing.T) {
	ctx := t.Context()
	s, closeFn, err := strategy.Open(ctx, "token", &strategy.Config{TokenInner: "memory"})
	require.NoError(t, err)
	defer func() { assert.NoError(t, closeFn(ctx)) }()
	require.NoError(t, s.SetStock(ctx, "a", 5))

	_, err = s.Reserve(ctx, inventory.Request{ID: strategytest.RandomID(), Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	require.ErrorIs(t, err, inventory.ErrInvalidRequest)

	id, err := strategy.NewIDFunc(s)(ctx)
	require.NoError(t, err)
	req := inventory.Request{ID: id, Lines: []inventory.Line{{SKU: "a", Qty: 2}}}
	_, err = s.Reserve(ctx, req)
	require.NoError(t, err)
	_, err = s.Reserve(ctx, req)
	require.NoError(t, err, "a duplicate gets the first reservation")
	n, err := s.Available(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
}

func TestNewIDFuncGivesFreshRandomIDsForOrdinaryStrategies(t *testing.T) {
	s, closeFn, err := strategy.Open(t.Context(), "memory", nil)
	require.NoError(t, err)
	defer func() { assert.NoError(t, closeFn(t.Context())) }()
	next := strategy.NewIDFunc(s)
	a, err := next(t.Context())
	require.NoError(t, err)
	b, err := next(t.Context())
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	require.NoError(t, inventory.ValidateID(a))
}

// services returns the shared pool and client, or skips.
func services(t *testing.T) (*pgxpool.Pool, *redis.Client) {
	t.Helper()
	return testsvc.Postgres(t), testsvc.Redis(t)
}

// variant is a strategy to open and how: token once per place its flags can
// live.
type variant struct {
	label, name string
	tokenStore  strategy.Service
}

func variants() []variant {
	var vs []variant
	for _, name := range strategy.Names() {
		if name != "token" {
			vs = append(vs, variant{label: name, name: name})
			continue
		}
		for _, st := range []strategy.Service{strategy.Postgres, strategy.Redis, strategy.InProcess} {
			vs = append(vs, variant{label: "token/" + string(st), name: name, tokenStore: st})
		}
	}
	return vs
}

func TestEveryStrategyOpensReservesAndDropsItsNamespace(t *testing.T) {
	pool, rc := services(t)
	my := testsvc.MySQL(t)
	for _, v := range variants() {
		t.Run(v.label, func(t *testing.T) {
			ctx := t.Context()
			schema := "invtest_reg_" + strategytest.RandomID()[:12]
			prefix := "invtest:reg:" + strategytest.RandomID()[:12] + ":"
			s, closeFn, err := strategy.Open(ctx, v.name, &strategy.Config{
				Postgres: pool, Redis: rc, MySQL: my, Schema: schema, KeyPrefix: prefix, TokenStore: v.tokenStore, Drop: true,
			})
			require.NoError(t, err)
			closed := false
			t.Cleanup(func() {
				if !closed {
					_ = closeFn(context.Background())
				}
			})

			newID := strategy.NewIDFunc(s)
			require.NoError(t, s.SetStock(ctx, "a", 10))
			require.NoError(t, s.SetStock(ctx, "b", 10))
			ids := make([]string, 3)
			for i := range ids {
				ids[i], err = newID(ctx)
				require.NoError(t, err)
				_, err = s.Reserve(ctx, inventory.Request{ID: ids[i], Lines: []inventory.Line{{SKU: "b", Qty: 2}, {SKU: "a", Qty: 1}}})
				require.NoError(t, err)
			}
			require.NoError(t, s.Commit(ctx, ids[0]))
			require.NoError(t, s.Release(ctx, ids[1]))
			res, err := s.Lookup(ctx, ids[2])
			require.NoError(t, err)
			assert.Equal(t, inventory.Held, res.State)
			for sku, want := range map[string]int64{"a": 8, "b": 6} {
				n, err := s.Available(ctx, sku)
				require.NoError(t, err)
				assert.Equal(t, want, n, sku)
			}

			require.NoError(t, closeFn(ctx))
			closed = true
			var exists bool
			require.NoError(t, pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists))
			assert.False(t, exists, "schema %s dropped", schema)
			var dbs int
			require.NoError(t, my.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", schema).Scan(&dbs))
			assert.Zero(t, dbs, "database %s dropped", schema)
			keys, err := rc.Keys(ctx, prefix+"*").Result()
			require.NoError(t, err)
			assert.Empty(t, keys, "keys under %s deleted", prefix)
			require.NoError(t, pool.Ping(ctx), "a pool given in Config stays open")
			require.NoError(t, rc.Ping(ctx).Err(), "a client given in Config stays open")
			require.NoError(t, my.PingContext(ctx), "a MySQL pool given in Config stays open")
		})
	}
}

func TestStrategiesOpenedFromURLsCloseWhatTheyOpened(t *testing.T) {
	pgURL, redisURL, myURL := testsvc.PostgresURL(t), testsvc.RedisURL(t), testsvc.MySQLURL(t)
	ctx := t.Context()
	for _, info := range strategy.All() {
		t.Run(info.Name, func(t *testing.T) {
			schema := testsvc.Schema(t)
			if slices.Contains(info.Services, strategy.MySQL) {
				schema = testsvc.MySQLDatabase(t)
			}
			prefix := testsvc.RedisPrefix(t)
			s, closeFn, err := strategy.Open(ctx, info.Name, &strategy.Config{PostgresURL: pgURL, RedisURL: redisURL, MySQLURL: myURL, Schema: schema, KeyPrefix: prefix})
			require.NoError(t, err)
			require.NoError(t, s.SetStock(ctx, "a", 1))
			require.NoError(t, closeFn(ctx))
			if len(info.Services) > 0 {
				_, err = s.Available(ctx, "a")
				assert.Error(t, err, "the clients Open made are closed")
			}
		})
	}
}

func TestDeleteKeysKeepsOtherPrefixes(t *testing.T) {
	_, rc := services(t)
	ctx := t.Context()
	keep := testsvc.RedisPrefix(t)
	require.NoError(t, rc.Set(ctx, keep+"x", 1, 0).Err())
	drop := keep[:len(keep)-1] + "-sub:"
	require.NoError(t, rc.Set(ctx, drop+"x", 1, 0).Err())
	for i := range 1200 { // more than one SCAN batch
		require.NoError(t, rc.Set(ctx, fmt.Sprintf("%s[*?]%d", drop, i), 1, 0).Err())
	}
	require.NoError(t, strategy.DeleteKeys(ctx, rc, drop))
	n, err := rc.Exists(ctx, keep+"x").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "keys of another prefix survive")
	left, err := rc.Keys(ctx, drop+"*").Result()
	require.NoError(t, err)
	assert.Empty(t, left)

	require.Error(t, strategy.DeleteKeys(ctx, rc, ""), "an empty prefix would delete everything")
}

// TestRedisstockWriterLogsOnlyToTheConfiguredLogger opens redisstock twice:
// without a Logger nothing reaches the process's default logger, and with
// one the writer's stop (its lag and drain time) reaches that one.
func TestRedisstockWriterLogsOnlyToTheConfiguredLogger(t *testing.T) {
	ctx := t.Context()
	pool, rdb := testsvc.Postgres(t), testsvc.Redis(t)
	var global syncBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&global, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	open := func(log *slog.Logger) {
		s, closeFn, err := strategy.Open(ctx, "redisstock", &strategy.Config{
			Postgres: pool, Redis: rdb, Schema: testsvc.Schema(t), KeyPrefix: testsvc.RedisPrefix(t), Logger: log,
		})
		require.NoError(t, err)
		require.NoError(t, s.SetStock(ctx, "tee", 2))
		_, err = s.Reserve(ctx, inventory.Request{ID: "a", Lines: []inventory.Line{{SKU: "tee", Qty: 1}}})
		require.NoError(t, err)
		require.NoError(t, closeFn(ctx))
	}
	open(nil)
	var mine syncBuffer
	open(slog.New(slog.NewTextHandler(&mine, nil)))
	assert.NotContains(t, global.String(), "redisstock", "nothing on the default logger")
	assert.Contains(t, mine.String(), "redisstock writer stopped")
}

// syncBuffer is a bytes.Buffer safe for the writer's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOneStockBucketIsTheDefaultForEveryStrategy opens every strategy with
// StockOptions{Buckets: 1}, which is what every SKU has anyway: none may
// refuse it as a per-SKU setting it lacks, while eight buckets open or are
// refused as unsupported.
func TestOneStockBucketIsTheDefaultForEveryStrategy(t *testing.T) {
	pool, rc := services(t)
	my := testsvc.MySQL(t)
	for _, name := range strategy.Names() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			cfg := func(k int) *strategy.Config {
				return &strategy.Config{Postgres: pool, Redis: rc, MySQL: my, Drop: true,
					Schema:       "invtest_one_" + strategytest.RandomID()[:12],
					KeyPrefix:    "invtest:one:" + strategytest.RandomID()[:12] + ":",
					StockOptions: inventory.StockOptions{Buckets: k}}
			}
			s, closeFn, err := strategy.Open(ctx, name, cfg(1))
			require.NoError(t, err)
			require.NoError(t, s.SetStock(ctx, "a", 3))
			require.NoError(t, closeFn(ctx))
			s, closeFn, err = strategy.Open(ctx, name, cfg(8))
			if err != nil {
				require.ErrorIs(t, err, inventory.ErrUnsupported)
				return
			}
			require.NoError(t, s.SetStock(ctx, "a", 3))
			require.NoError(t, closeFn(ctx))
		})
	}
}
