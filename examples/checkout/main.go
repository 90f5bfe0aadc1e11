// Command checkout is a small HTTP JSON checkout service: it issues a token
// when the checkout page opens, holds the cart under that token, and sells
// or returns the units when the buyer pays or gives up. A Sweeper returns
// the units of abandoned holds; SIGINT or SIGTERM shuts it down gracefully.
//
//	go run ./examples/checkout -stock tee-red-m=3,mug=10
//	go run ./examples/checkout -strategy sqlcond -postgres postgres://postgres@127.0.0.1:5432/test -stock tee-red-m=3
//
// The strategy is chosen by -strategy and wrapped in token.Reserver, so a
// double click, a client retry or a replayed request never takes stock
// twice. The token secret comes from the environment (CHECKOUT_SECRET, at
// least 32 bytes; CHECKOUT_SECRET_PREVIOUS while rotating), never from the
// command line, where other users of the machine could read it. See
// README.md for the API and the metrics it serves at /metrics.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/token"
)

// The environment variables the service reads.
const (
	secretEnv         = "CHECKOUT_SECRET"
	previousSecretEnv = "CHECKOUT_SECRET_PREVIOUS"
	postgresEnv       = "INVENTORY_POSTGRES_URL"
	mysqlEnv          = "INVENTORY_MYSQL_URL"
	redisEnv          = "INVENTORY_REDIS_URL"
	pgConnsEnv        = "CHECKOUT_PG_CONNS"
)

// defaultPGConns is the size of the PostgreSQL pool unless -pg-conns or
// CHECKOUT_PG_CONNS says otherwise: as many requests at once may work on the
// database, each holding one connection at a time; the others wait in the
// pool. pgxpool's own default, one per CPU and at least 4, is sized for
// work that keeps a CPU busy, not for requests that wait on round trips and
// row locks. README.md says how to size it.
const defaultPGConns = 32

// cancelRequest makes a query whose context ends (a client gone, a
// deadline) end by a cancel request to the server, keeping its connection,
// instead of by closing the connection, pgx's default. Under random
// cancellations (8 buyers, deadlines of 0-5 ms, 8 connections:
// BenchmarkRandomCancellations in sqlcond) closing left no call succeeding,
// the pool dialling 18 connections per 1000 calls; the cancel request kept
// 68-81% succeeding and dialled 5-8. The price: a cancelled call returns
// once the server has answered the cancel, up to DeadlineDelay after its
// deadline. Either way the outcome is classified as before: a statement the
// server cancelled changed nothing; a reply that never came is unknown.
func cancelRequest(c *pgconn.PgConn) ctxwatch.Handler {
	return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
}

// shutdownTimeout bounds the wait for requests in flight at shutdown.
const shutdownTimeout = 15 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal ends the process at once
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkout:", err)
		os.Exit(1)
	}
}

// config is what the service is started with.
type config struct {
	addr        string
	strategy    string
	postgresURL string
	redisURL    string
	mysqlURL    string
	schema      string
	pgConns     int // size of the PostgreSQL pool; 0 means defaultPGConns
	stock       map[string]int64
	sweep       time.Duration
	keys        [][]byte // token secrets, the signing one first
}

// run parses args, opens the strategy, and serves until ctx ends. ready, if
// set, is told the address the service listens on.
func run(ctx context.Context, args []string, getenv func(string) string, logw io.Writer, ready func(addr string)) error {
	log := slog.New(slog.NewTextHandler(logw, nil))
	cfg, err := parseConfig(args, getenv, logw)
	if err != nil {
		return err
	}
	if len(cfg.keys) == 0 {
		log.Warn("checkout: " + secretEnv + " is not set: using a random secret, so tokens die with this process and other servers refuse them")
		k := make([]byte, token.MinKeyLen)
		_, _ = rand.Read(k)
		cfg.keys = [][]byte{k}
	}

	// Listen first: a port that cannot be had must fail the start before
	// -stock changes anything.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	for sku, n := range cfg.stock {
		if err := a.inv.SetStock(ctx, sku, n); err != nil {
			return fmt.Errorf("-stock %s=%d: %w", sku, n, err)
		}
	}

	tel, err := newTelemetry()
	if err != nil {
		return err
	}
	defer tel.close()
	inv := tel.instrument(a.inv, cfg.strategy)

	log.Info("checkout: listening", slog.String("addr", ln.Addr().String()), slog.String("strategy", cfg.strategy))
	if ready != nil {
		ready(ln.Addr().String())
	}
	srv := &http.Server{
		Handler:           tel.routes(newServer(inv, a.issuer.Issue, &serverOptions{Logger: log})),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       time.Minute,
	}
	sweeper := inventory.NewSweeper(inv, &inventory.SweeperOptions{Interval: cfg.sweep, Logger: log})
	return serve(ctx, srv, ln, log, sweeper.Run, a.purge)
}

// serve answers on ln, with the background jobs running beside it, until ctx
// ends; then it stops taking requests, waits for those in flight (up to
// shutdownTimeout), and stops the jobs.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, jobs ...func(context.Context) error) error {
	jobCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, job := range jobs {
		if job != nil {
			wg.Go(func() { _ = job(jobCtx) })
		}
	}
	defer func() {
		stopJobs()
		wg.Wait()
	}()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("checkout: shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var (
		cfg   config
		stock string
	)
	names := slices.DeleteFunc(strategy.Names(), func(n string) bool { return n == "token" })
	fs := flag.NewFlagSet("checkout", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&cfg.strategy, "strategy", "memory", "strategy that holds the stock: "+strings.Join(names, ", ")+" (tokens are always checked in front of it)")
	fs.StringVar(&cfg.postgresURL, "postgres", or(getenv(postgresEnv), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL, for the strategies that need it (default from "+postgresEnv+")")
	fs.StringVar(&cfg.mysqlURL, "mysql", or(getenv(mysqlEnv), "root@tcp(127.0.0.1:3306)/test"), "MySQL DSN (go-sql-driver), for the MySQL strategies (default from "+mysqlEnv+")")
	fs.StringVar(&cfg.redisURL, "redis", or(getenv(redisEnv), "redis://127.0.0.1:6379/0"), "Redis URL, for the strategies that need it (default from "+redisEnv+")")
	pgConns := defaultPGConns
	if v := getenv(pgConnsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("%s=%q: want a positive number of connections", pgConnsEnv, v)
		}
		pgConns = n
	}
	fs.IntVar(&cfg.pgConns, "pg-conns", pgConns, "size of the PostgreSQL pool: requests working on the database at once, one connection each (default from "+pgConnsEnv+")")
	fs.StringVar(&cfg.schema, "schema", "inventory", "PostgreSQL schema of the stock, the reservations and the token flags")
	fs.StringVar(&stock, "stock", "", "set the stock at start, for demos: `sku=n,...` (overwrites what is available)")
	fs.DurationVar(&cfg.sweep, "sweep", 10*time.Second, "how often expired holds are returned to stock")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: checkout [flags]\n\nA checkout HTTP service; see examples/checkout/README.md.\nThe token secret is read from %s (at least %d bytes; the previous one from %s while rotating).\n\n",
			secretEnv, token.MinKeyLen, previousSecretEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case !slices.Contains(names, cfg.strategy):
		return cfg, fmt.Errorf("-strategy %q: want one of %s", cfg.strategy, strings.Join(names, ", "))
	case cfg.sweep <= 0:
		return cfg, errors.New("-sweep must be positive")
	case cfg.pgConns <= 0 || cfg.pgConns > math.MaxInt32:
		return cfg, fmt.Errorf("-pg-conns %d: want a positive number of connections", cfg.pgConns)
	}
	var err error
	if cfg.stock, err = parseStock(stock); err != nil {
		return cfg, err
	}
	for _, env := range []string{secretEnv, previousSecretEnv} {
		k := getenv(env)
		if k == "" {
			continue
		}
		if len(k) < token.MinKeyLen {
			return cfg, fmt.Errorf("%s is %d bytes: at least %d are needed", env, len(k), token.MinKeyLen)
		}
		cfg.keys = append(cfg.keys, []byte(k))
	}
	if len(cfg.keys) == 1 && getenv(secretEnv) == "" {
		return cfg, fmt.Errorf("%s is set but %s is not: the signing secret goes in %s", previousSecretEnv, secretEnv, secretEnv)
	}
	return cfg, nil
}

// parseStock parses "sku=n,sku=n".
func parseStock(s string) (map[string]int64, error) {
	stock := make(map[string]int64)
	if s == "" {
		return stock, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		sku, n, ok := strings.Cut(item, "=")
		units, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("-stock: %q is not sku=units", item)
		}
		if err := inventory.ValidateStock(sku, units); err != nil {
			return nil, fmt.Errorf("-stock %s: %w", item, err)
		}
		if _, dup := stock[sku]; dup {
			return nil, fmt.Errorf("-stock: %s given twice", sku)
		}
		stock[sku] = units
	}
	return stock, nil
}

// app is the strategy the service runs on, behind its tokens.
type app struct {
	inv    *token.Reserver
	issuer *token.Issuer
	pool   *pgxpool.Pool // nil unless the strategy needs PostgreSQL
	// purge deletes the flags of expired tokens, now and then, until ctx
	// ends; nil when the flags expire by themselves.
	purge func(ctx context.Context) error
	close func()
}

// openApp opens the strategy cfg names, connecting to the services it
// needs, and wraps it in a token.Reserver whose flags live where the stock
// does: in PostgreSQL, in Redis, or in process.
func openApp(ctx context.Context, cfg config, log *slog.Logger) (_ *app, err error) {
	info, err := strategy.Lookup(cfg.strategy)
	if err != nil {
		return nil, err
	}
	var closers []func()
	a := &app{close: func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	// Retention keeps a long-running service on memory from growing for
	// ever: settled reservations are forgotten a day after they settle,
	// far beyond any client's retries. PostgreSQL keeps its ledger.
	scfg := &strategy.Config{Schema: cfg.schema, Retention: 24 * time.Hour, Logger: log}
	if slices.Contains(info.Services, strategy.Postgres) {
		pc, err := pgxpool.ParseConfig(cfg.postgresURL)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		pc.MaxConns = int32(cmp.Or(cfg.pgConns, defaultPGConns))
		pc.ConnConfig.BuildContextWatcherHandler = cancelRequest
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		closers = append(closers, pool.Close)
		a.pool = pool
		if err := pool.Ping(ctx); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		scfg.Postgres = pool
	}
	if slices.Contains(info.Services, strategy.Redis) {
		opt, err := redis.ParseURL(cfg.redisURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		client := redis.NewClient(opt)
		closers = append(closers, func() { _ = client.Close() })
		if err := client.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		scfg.Redis = client
	}
	if slices.Contains(info.Services, strategy.MySQL) {
		scfg.MySQLURL = cfg.mysqlURL // the pool is opened and closed by strategy.Open
	}
	inner, closeInner, err := strategy.Open(ctx, cfg.strategy, scfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = closeInner(context.Background()) })

	var store token.Store
	switch {
	case scfg.Postgres != nil: // the stock is in PostgreSQL (redislock too)
		ps, err := token.NewPostgresStore(scfg.Postgres, &token.PostgresOptions{Schema: cfg.schema})
		if err != nil {
			return nil, err
		}
		if err := ps.Migrate(ctx); err != nil {
			return nil, err
		}
		store = ps
		a.purge = func(ctx context.Context) error { return purgeEvery(ctx, time.Minute, ps) }
	case scfg.Redis != nil:
		store = token.NewRedisStore(scfg.Redis, nil)
	default: // memory, or stock in MySQL: flags in process, so one process only
		store = token.NewMemoryStore()
	}
	if a.issuer, err = token.NewIssuer(cfg.keys, nil); err != nil {
		return nil, err
	}
	a.inv = token.Wrap(inner, a.issuer, store, nil)
	return a, nil
}

// purgeEvery deletes the flags of expired tokens every interval until ctx
// ends.
func purgeEvery(ctx context.Context, interval time.Duration, ps *token.PostgresStore) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		for {
			n, err := ps.Purge(ctx, 1000)
			if err != nil || n < 1000 {
				break
			}
		}
	}
}

// or returns v, or def when v is empty.
func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
