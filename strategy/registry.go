package strategy

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/groupcommit"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/pessimistic"
	"github.com/oversell/inventory/redislock"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/sqlcond"
	"github.com/oversell/inventory/token"
)

// defaultTokenInner is the strategy token wraps unless Config.TokenInner
// names another.
const defaultTokenInner = "sqlcond"

// registry lists every strategy Open knows, in the order Names returns them.
// It is filled in init, because token's entry opens the others.
var registry []entry

func init() {
	registry = []entry{
		{
			info: Info{Name: "memory", Summary: "in process: a mutex per SKU, sharded reservations"},
			open: func(_ context.Context, e *env) (inventory.Strategy, error) {
				return memory.New(&memory.Options{DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, Retention: e.cfg.Retention}), nil
			},
			stockOptions: true, // a SKU kept whole behaves as its buckets would
		},
		{
			info: Info{Name: "sqlcond", Summary: "PostgreSQL: one conditional UPDATE per line", Services: []Service{Postgres}},
			open: func(ctx context.Context, e *env) (inventory.Strategy, error) {
				r, err := sqlcond.New(e.pool, &sqlcond.Options{
					Schema: e.cfg.Schema, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, Retention: e.cfg.Retention, SKUDefaults: e.cfg.StockOptions,
				})
				if err != nil {
					return nil, err
				}
				return r, r.Migrate(ctx)
			},
			stockOptions: true,
		},
		{
			info: Info{Name: "pessimistic", Summary: "PostgreSQL: SELECT ... FOR UPDATE in SKU order, then UPDATE", Services: []Service{Postgres}},
			open: func(ctx context.Context, e *env) (inventory.Strategy, error) {
				r, err := pessimistic.New(e.pool, &pessimistic.Options{
					Schema: e.cfg.Schema, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, LockTimeout: e.cfg.LockWait, Retention: e.cfg.Retention,
				})
				if err != nil {
					return nil, err
				}
				return r, r.Migrate(ctx)
			},
		},
		{
			info: Info{Name: "sqlcond-mysql", Summary: "MySQL/MariaDB: one procedure call per cart, a conditional UPDATE per line", Services: []Service{MySQL}},
			open: func(ctx context.Context, e *env) (inventory.Strategy, error) {
				r, err := sqlcond.NewMySQL(e.mysql, &sqlcond.Options{Schema: e.cfg.Schema, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now})
				if err != nil {
					return nil, err
				}
				return r, r.Migrate(ctx)
			},
		},
		{
			info: Info{Name: "pessimistic-mysql", Summary: "MySQL/MariaDB: SELECT ... FOR UPDATE in SKU order, then UPDATE", Services: []Service{MySQL}},
			open: func(ctx context.Context, e *env) (inventory.Strategy, error) {
				r, err := pessimistic.NewMySQL(e.mysql, &pessimistic.Options{
					Schema: e.cfg.Schema, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, LockTimeout: e.cfg.LockWait,
				})
				if err != nil {
					return nil, err
				}
				return r, r.Migrate(ctx)
			},
		},
		{
			info: Info{Name: "groupcommit", Summary: "PostgreSQL: concurrent calls coalesced into one transaction per flush", Services: []Service{Postgres}},
			open: func(ctx context.Context, e *env) (inventory.Strategy, error) {
				r, err := groupcommit.New(e.pool, &groupcommit.Options{
					Schema: e.cfg.Schema, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, Retention: e.cfg.Retention, SKUDefaults: e.cfg.StockOptions,
					Home: e.cfg.Home,
				})
				if err != nil {
					return nil, err
				}
				return r, r.Migrate(ctx)
			},
			stockOptions: true,
		},
		{
			info: Info{Name: "redislock", Summary: "a Redis lock per SKU, fencing tokens checked by PostgreSQL", Services: []Service{Postgres, Redis}},
			open: func(ctx context.Context, e *env) (inventory.Strategy, error) {
				r, err := redislock.New(e.pool, e.redis, &redislock.Options{
					Schema: e.cfg.Schema, KeyPrefix: e.cfg.KeyPrefix, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, WaitTimeout: e.cfg.LockWait,
					Retention: e.cfg.Retention,
				})
				if err != nil {
					return nil, err
				}
				return r, r.Migrate(ctx)
			},
		},
		{
			info:         Info{Name: "redisstock", Summary: "stock in Redis (Lua), every change streamed and written behind to PostgreSQL", Services: []Service{Redis, Postgres}},
			open:         openRedisstock,
			stockOptions: true,
		},
		{
			info:     Info{Name: "token", Summary: "idempotency tokens in front of " + defaultTokenInner},
			services: tokenServices,
			open:     openToken,
		},
	}
	for i := range registry {
		if registry[i].info.Name == "token" {
			registry[i].info.Services = tokenServices(&Config{})
		}
	}
}

// tokenInner returns the name of the strategy token wraps.
func tokenInner(cfg *Config) string {
	if cfg.TokenInner != "" {
		return cfg.TokenInner
	}
	return defaultTokenInner
}

// tokenStore returns where token keeps its flags.
func tokenStore(cfg *Config) (Service, error) {
	switch cfg.TokenStore {
	case Postgres, Redis, InProcess:
		return cfg.TokenStore, nil
	case "":
	default:
		return "", fmt.Errorf("strategy: unknown TokenStore %q (postgres, redis, memory)", cfg.TokenStore)
	}
	inner, err := find(tokenInner(cfg))
	if err != nil || inner.info.Name == "token" {
		return InProcess, nil
	}
	if svcs := inner.needs(cfg); len(svcs) > 0 && (svcs[0] == Postgres || svcs[0] == Redis) {
		return svcs[0], nil
	}
	return InProcess, nil // no flag store in MySQL: in process
}

// tokenServices returns the services of the inner strategy, plus the one
// that keeps the flags.
func tokenServices(cfg *Config) []Service {
	var svcs []Service
	if inner, err := find(tokenInner(cfg)); err == nil && inner.info.Name != "token" {
		svcs = inner.needs(cfg)
	}
	if st, err := tokenStore(cfg); err == nil && st != InProcess {
		svcs = appendService(svcs, st)
	}
	return svcs
}

func appendService(svcs []Service, s Service) []Service {
	for _, have := range svcs {
		if have == s {
			return svcs
		}
	}
	return append(svcs, s)
}

// tokenStrategy is a token.Reserver that also issues the tokens it accepts.
type tokenStrategy struct {
	*token.Reserver
	issuer *token.Issuer
}

var _ IDIssuer = (*tokenStrategy)(nil)

// NewID issues a token: the request ID the strategy accepts.
func (t *tokenStrategy) NewID(ctx context.Context) (string, error) { return t.issuer.Issue(ctx) }

func openToken(ctx context.Context, e *env) (inventory.Strategy, error) {
	name := tokenInner(&e.cfg)
	if name == "token" {
		return nil, fmt.Errorf("%w: token cannot wrap itself", ErrUnknownStrategy)
	}
	inner, err := find(name)
	if err != nil {
		return nil, err
	}
	in, err := inner.open(ctx, e)
	if err != nil {
		return nil, err
	}
	keys := e.cfg.TokenKeys
	if len(keys) == 0 {
		k := make([]byte, token.MinKeyLen)
		_, _ = rand.Read(k)
		keys = [][]byte{k}
	}
	issuer, err := token.NewIssuer(keys, &token.IssuerOptions{Now: e.cfg.Now})
	if err != nil {
		return nil, err
	}
	st, err := tokenStore(&e.cfg)
	if err != nil {
		return nil, err
	}
	var store token.Store
	switch st {
	case Postgres:
		ps, err := token.NewPostgresStore(e.pool, &token.PostgresOptions{Schema: e.cfg.Schema})
		if err != nil {
			return nil, err
		}
		if err := ps.Migrate(ctx); err != nil {
			return nil, err
		}
		store = ps
	case Redis:
		store = token.NewRedisStore(e.redis, &token.RedisOptions{Prefix: e.cfg.KeyPrefix + "token:"})
	default:
		store = token.NewMemoryStore()
	}
	return &tokenStrategy{Reserver: token.Wrap(in, issuer, store, nil), issuer: issuer}, nil
}

// openRedisstock opens redisstock, loads Redis from the ledger if it has
// to, and runs a Writer until the strategy is closed; closing drains the
// streams first and logs the writer's largest lag and the drain time.
func openRedisstock(ctx context.Context, e *env) (inventory.Strategy, error) {
	buckets := 1
	if _, ok := e.redis.(*redis.ClusterClient); ok {
		buckets = 16
	}
	r, err := redisstock.New(e.pool, e.redis, &redisstock.Options{
		Schema: e.cfg.Schema, KeyPrefix: e.cfg.KeyPrefix, DefaultTTL: e.cfg.DefaultTTL, Now: e.cfg.Now, Buckets: buckets,
		Retention: e.cfg.Retention, SKUDefaults: e.cfg.StockOptions,
	})
	if err != nil {
		return nil, err
	}
	if err := r.Migrate(ctx); err != nil {
		return nil, err
	}
	if err := r.Load(ctx); err != nil {
		return nil, err
	}
	log := e.cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := r.NewWriter(&redisstock.WriterOptions{Logger: log})
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	stopWriter := func(ctx context.Context) error {
		stop()
		<-done
		start := time.Now()
		err := w.Drain(ctx)
		log.InfoContext(ctx, "redisstock writer stopped", "largest_lag_events", w.MaxLag(), "drain", time.Since(start).Round(time.Millisecond), "dead_letters", w.DeadLetterCount())
		return err
	}
	e.drops = append([]func(ctx context.Context) error{stopWriter}, e.drops...)
	return r, nil
}
