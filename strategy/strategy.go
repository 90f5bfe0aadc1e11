package strategy

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" driver of Config.MySQLURL
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// Sentinel errors of Open.
var (
	// ErrUnknownStrategy reports a name that is not registered. The error
	// Open returns lists the names that are.
	ErrUnknownStrategy = errors.New("strategy: unknown strategy")

	// ErrServiceNotConfigured reports a strategy whose service (PostgreSQL or
	// Redis) is missing from the Config: neither a client nor a URL.
	ErrServiceNotConfigured = errors.New("strategy: service not configured")
)

// Service names a server a strategy keeps its state in.
type Service string

// The services strategies use.
const (
	Postgres  Service = "postgres"
	Redis     Service = "redis"
	MySQL     Service = "mysql"
	InProcess Service = "memory" // no server: state lives in the process
)

// Info describes a registered strategy.
type Info struct {
	// Name is what Open takes.
	Name string
	// Summary says in a few words how the strategy keeps the contract.
	Summary string
	// Services lists the servers the strategy needs, the one that holds the
	// stock first. Empty for strategies that keep everything in process.
	Services []Service
}

// Config is what Open needs to open any strategy. A nil *Config takes every
// default, which suffices for strategies that need no service. Fields a
// strategy does not use are ignored.
type Config struct {
	// Postgres is the pool PostgreSQL strategies use. It is not closed by the
	// close function. Default: a pool opened from PostgresURL.
	Postgres *pgxpool.Pool
	// PostgresURL is used when Postgres is nil; the pool opened from it is
	// closed by the close function. Default: none (PostgreSQL strategies fail
	// with ErrServiceNotConfigured).
	PostgresURL string

	// Redis is the client Redis strategies use; single, Sentinel and Cluster
	// clients all work. It is not closed by the close function.
	// Default: a client opened from RedisURL.
	Redis redis.UniversalClient
	// RedisURL is used when Redis is nil; the client opened from it is closed
	// by the close function. Default: none (Redis strategies fail with
	// ErrServiceNotConfigured).
	RedisURL string

	// MySQL is the pool (github.com/go-sql-driver/mysql) MySQL strategies
	// use. It is not closed by the close function. Default: a pool opened
	// from MySQLURL.
	MySQL *sql.DB
	// MySQLURL is the go-sql-driver DSN used when MySQL is nil
	// ("root@tcp(127.0.0.1:3306)/test"); the pool opened from it holds at
	// most 32 connections (database/sql's default has no bound, and a busy
	// server refuses connections past max_connections) and is closed by the
	// close function. Default: none (MySQL strategies fail with
	// ErrServiceNotConfigured).
	MySQLURL string

	// Schema is the PostgreSQL schema (MySQL: the database) the strategy's
	// tables live in. It is quoted, so any name is safe. Default: "inventory".
	Schema string
	// KeyPrefix starts every Redis key the strategy writes.
	// Default: "inventory:".
	KeyPrefix string

	// DefaultTTL is the hold lifetime of requests whose TTL is 0.
	// Default: the strategy's own (15m).
	DefaultTTL time.Duration
	// Now is the clock holds expire by. Default: time.Now.
	Now func() time.Time
	// Retention is how long a settled reservation is kept before it and its
	// ID are forgotten: memory forgets it lazily (memory.Options.Retention);
	// sqlcond, pessimistic, groupcommit and redislock delete it from their
	// PostgreSQL ledger when Purge runs, which a Sweeper does (their
	// Options.Retention); redisstock lets Redis expire its record once it
	// settled and deletes it from its ledger when Purge runs
	// (redisstock.Options.Retention). The MySQL strategies keep their
	// ledger and ignore it. Default: 0, keep for ever.
	Retention time.Duration

	// StockOptions are the settings every SKU gets that SetStock creates,
	// for the strategies that take them: sqlcond, groupcommit and
	// redisstock split each into StockOptions.Buckets stock buckets
	// (redisstock refuses them with a limit or a backorder); memory accepts
	// them and keeps each SKU whole, which behaves the same. Open fails
	// with an error that errors.Is inventory.ErrUnsupported for any other
	// strategy unless StockOptions is the zero value. Default: the zero
	// value, every SKU kept whole.
	StockOptions inventory.StockOptions
	// Home is the home bucket of groupcommit (groupcommit.Options.Home):
	// give the processes that share a schema different values 1..K to keep
	// their flushes on different stock buckets. The other strategies ignore
	// it. Default: 0, one picked at random.
	Home int

	// Logger receives the state changes and errors of the background work
	// Open starts (redisstock's Writer: its dead letters and failures, and
	// when it stops, its largest lag and drain time), never a record per
	// reservation. Default: nil, which logs nothing.
	Logger *slog.Logger

	// LockWait bounds how long a Reserve waits for locks that other requests
	// hold before it fails with inventory.ErrContended, changing nothing:
	// the lock timeout of pessimistic, the lock wait of redislock.
	// Default: each strategy's own (pessimistic waits as long as it takes,
	// redislock 5s).
	LockWait time.Duration

	// TokenKeys are the secret keys of the token strategy's Issuer, the
	// signing key first; each at least 32 bytes. Default: one random key made
	// by Open, so tokens are valid only for the strategy Open returned.
	TokenKeys [][]byte

	// TokenInner names the strategy the token strategy wraps.
	// Default: "sqlcond".
	TokenInner string
	// TokenStore is where the token strategy keeps the flags of used tokens:
	// Postgres (a table in Schema), Redis (keys under KeyPrefix) or
	// InProcess. Default: the service that holds the inner strategy's stock,
	// InProcess for an in-process one.
	TokenStore Service

	// Drop makes the close function also drop Schema with everything in it
	// and delete every Redis key under KeyPrefix. Use it for benchmarks and
	// tests, never on a schema or prefix that holds data to keep.
	// Default: false.
	Drop bool
}

// mysqlConns bounds the MySQL pool Open makes from Config.MySQLURL.
const mysqlConns = 32

// CloseFunc releases what Open made. It is safe to call more than once.
type CloseFunc func(ctx context.Context) error

// IDIssuer is implemented by strategies that accept as request IDs only the
// IDs they issued (see token). Get IDs for such a strategy from NewID.
type IDIssuer interface {
	NewID(ctx context.Context) (string, error)
}

// NewIDFunc returns the source of request IDs for s: its NewID when it is an
// IDIssuer, else a function returning 32 random hex characters.
func NewIDFunc(s inventory.Strategy) func(ctx context.Context) (string, error) {
	if is, ok := s.(IDIssuer); ok {
		return is.NewID
	}
	return func(context.Context) (string, error) { return randomHex(16), nil }
}

// Names returns the names of the registered strategies, in the order they
// are documented: the in-process reference first.
func Names() []string {
	names := make([]string, len(registry))
	for i, e := range registry {
		names[i] = e.info.Name
	}
	return names
}

// All returns the descriptions of the registered strategies, in the order of
// Names.
func All() []Info {
	infos := make([]Info, len(registry))
	for i, e := range registry {
		infos[i] = e.info
		infos[i].Services = slices.Clone(e.info.Services)
	}
	return infos
}

// Lookup returns the description of the strategy called name, or an error
// that errors.Is ErrUnknownStrategy and lists the known names.
func Lookup(name string) (Info, error) {
	e, err := find(name)
	if err != nil {
		return Info{}, err
	}
	info := e.info
	info.Services = slices.Clone(info.Services)
	return info, nil
}

func find(name string) (*entry, error) {
	for i := range registry {
		if registry[i].info.Name == name {
			return &registry[i], nil
		}
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownStrategy, name, strings.Join(Names(), ", "))
}

// Open opens the strategy called name as cfg describes, migrating its schema
// when it has one, and returns it with the function that closes it. On error
// nothing is left open.
func Open(ctx context.Context, name string, cfg *Config) (inventory.Strategy, CloseFunc, error) {
	e, err := find(name)
	if err != nil {
		return nil, nil, err
	}
	env := newEnv(cfg)
	opts := env.cfg.StockOptions
	if opts.Buckets == 1 {
		opts.Buckets = 0 // one bucket is every strategy's default
	}
	if opts != (inventory.StockOptions{}) {
		if err := inventory.ValidateStockWith("sku", 0, opts); err != nil {
			return nil, nil, fmt.Errorf("strategy: open %s: StockOptions: %w", name, err)
		}
		if !e.stockOptions {
			return nil, nil, fmt.Errorf("strategy: open %s: %w: per-SKU settings (Config.StockOptions)", name, inventory.ErrUnsupported)
		}
	}
	for _, svc := range e.needs(&env.cfg) {
		if err := env.connect(ctx, name, svc); err != nil {
			_ = env.close(context.WithoutCancel(ctx))
			return nil, nil, err
		}
	}
	s, err := e.open(ctx, env)
	if err != nil {
		_ = env.close(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("strategy: open %s: %w", name, err)
	}
	return s, env.close, nil
}

// entry is a registered strategy.
type entry struct {
	info Info
	// services, if set, says which services the strategy needs with cfg;
	// else it needs info.Services.
	services func(cfg *Config) []Service
	open     func(ctx context.Context, env *env) (inventory.Strategy, error)
	// stockOptions: open applies Config.StockOptions to the SKUs SetStock
	// creates.
	stockOptions bool
}

// needs returns the services the strategy needs with cfg.
func (e *entry) needs(cfg *Config) []Service {
	if e.services != nil {
		return e.services(cfg)
	}
	return e.info.Services
}

// env is a Config resolved for one Open: defaults filled in, clients
// connected, and what must be closed remembered.
type env struct {
	cfg    Config
	pool   *pgxpool.Pool
	redis  redis.UniversalClient
	mysql  *sql.DB
	closed bool
	// owned are closed last, in reverse order; drops run before them.
	owned []func()
	drops []func(ctx context.Context) error
}

func newEnv(cfg *Config) *env {
	e := &env{}
	if cfg != nil {
		e.cfg = *cfg
	}
	if e.cfg.Schema == "" {
		e.cfg.Schema = "inventory"
	}
	if e.cfg.KeyPrefix == "" {
		e.cfg.KeyPrefix = "inventory:"
	}
	if e.cfg.Now == nil {
		e.cfg.Now = time.Now
	}
	e.pool = e.cfg.Postgres
	e.redis = e.cfg.Redis
	e.mysql = e.cfg.MySQL
	return e
}

// connect makes sure the client of svc is there, opening it from its URL if
// need be.
func (e *env) connect(ctx context.Context, name string, svc Service) error {
	switch svc {
	case Postgres:
		if e.pool == nil {
			if e.cfg.PostgresURL == "" {
				return fmt.Errorf("%w: %s needs PostgreSQL (Config.Postgres or Config.PostgresURL)", ErrServiceNotConfigured, name)
			}
			pool, err := pgxpool.New(ctx, e.cfg.PostgresURL)
			if err != nil {
				return fmt.Errorf("strategy: open %s: postgres: %w", name, err)
			}
			e.owned = append(e.owned, pool.Close)
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("strategy: open %s: postgres: %w", name, err)
			}
			e.pool = pool
		}
		if e.cfg.Drop {
			pool, schema := e.pool, e.cfg.Schema
			e.drops = append(e.drops, func(ctx context.Context) error {
				_, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				return err
			})
		}
	case MySQL:
		if e.mysql == nil {
			if e.cfg.MySQLURL == "" {
				return fmt.Errorf("%w: %s needs MySQL (Config.MySQL or Config.MySQLURL)", ErrServiceNotConfigured, name)
			}
			db, err := sql.Open("mysql", e.cfg.MySQLURL)
			if err != nil {
				return fmt.Errorf("strategy: open %s: mysql: %w", name, err)
			}
			db.SetMaxOpenConns(mysqlConns)
			db.SetMaxIdleConns(mysqlConns)
			e.owned = append(e.owned, func() { _ = db.Close() })
			if err := db.PingContext(ctx); err != nil {
				return fmt.Errorf("strategy: open %s: mysql: %w", name, err)
			}
			e.mysql = db
		}
		if e.cfg.Drop {
			db, quoted := e.mysql, "`"+strings.ReplaceAll(e.cfg.Schema, "`", "``")+"`"
			e.drops = append(e.drops, func(ctx context.Context) error {
				_, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoted)
				return err
			})
		}
	case Redis:
		if e.redis == nil {
			if e.cfg.RedisURL == "" {
				return fmt.Errorf("%w: %s needs Redis (Config.Redis or Config.RedisURL)", ErrServiceNotConfigured, name)
			}
			opt, err := redis.ParseURL(e.cfg.RedisURL)
			if err != nil {
				return fmt.Errorf("strategy: open %s: redis: %w", name, err)
			}
			c := redis.NewClient(opt)
			e.owned = append(e.owned, func() { _ = c.Close() })
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("strategy: open %s: redis: %w", name, err)
			}
			e.redis = c
		}
		if e.cfg.Drop {
			c, prefix := e.redis, e.cfg.KeyPrefix
			e.drops = append(e.drops, func(ctx context.Context) error { return DeleteKeys(ctx, c, prefix) })
		}
	}
	return nil
}

func (e *env) close(ctx context.Context) error {
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	for _, drop := range e.drops {
		if err := drop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("strategy: clean up: %w", err))
		}
	}
	for i := len(e.owned) - 1; i >= 0; i-- {
		e.owned[i]()
	}
	return errors.Join(errs...)
}

// DeleteKeys deletes every key that starts with prefix, on every master of
// a cluster. An empty prefix is refused: it would delete everything.
func DeleteKeys(ctx context.Context, c redis.UniversalClient, prefix string) error {
	if prefix == "" {
		return errors.New("strategy: refusing to delete keys under an empty prefix")
	}
	pattern := escapeGlob(prefix) + "*"
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := unlink(ctx, c, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return unlink(ctx, c, batch)
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return del(ctx, m) })
	}
	return del(ctx, c)
}

// unlink deletes keys one by one, so that keys of different cluster slots
// never meet in one command.
func unlink(ctx context.Context, c redis.UniversalClient, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	p := c.Pipeline()
	for _, k := range keys {
		p.Unlink(ctx, k)
	}
	_, err := p.Exec(ctx)
	return err
}

// escapeGlob escapes the characters SCAN MATCH treats as special.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
