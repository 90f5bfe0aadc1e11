package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory/cmd/internal/containers"
)

// Where the servers are, unless -containers.
const (
	PostgresEnv        = "INVENTORY_POSTGRES_URL"
	RedisEnv           = "INVENTORY_REDIS_URL"
	MySQLEnv           = "INVENTORY_MYSQL_URL"
	DefaultMySQLURL    = "root@tcp(127.0.0.1:3306)/test"
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// connectTimeout bounds the wait for a server that does not answer.
const connectTimeout = 3 * time.Second

// poolConnectTimeout bounds each connection a PostgreSQL pool opens once the
// server has answered: on a loaded machine a new backend can take longer
// than connectTimeout to start, and a run that needs one more connection
// should wait for it rather than fail.
const poolConnectTimeout = 30 * time.Second

// serverURLs returns the URLs from the environment, else the defaults.
func serverURLs() (pg, rd string) {
	pg, rd = os.Getenv(PostgresEnv), os.Getenv(RedisEnv)
	if pg == "" {
		pg = DefaultPostgresURL
	}
	if rd == "" {
		rd = DefaultRedisURL
	}
	return pg, rd
}

// mysqlURL returns the MySQL DSN from the environment, else the default.
func mysqlURL() string {
	if u := os.Getenv(MySQLEnv); u != "" {
		return u
	}
	return DefaultMySQLURL
}

func connectMySQL(ctx context.Context, dsn string, conns int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql DSN: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = connectTimeout
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%s@%s: %w", cfg.User, cfg.Addr, err)
	}
	return db, nil
}

// startContainers starts PostgreSQL 15 and Redis 7 through testcontainers-go
// and returns their URLs and the function that stops them.
func startContainers(ctx context.Context) (pg, rd string, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	pg, pgStop, err := containers.Postgres(ctx)
	if err != nil {
		return "", "", stop, err
	}
	stops = append(stops, pgStop)
	rd, rdStop, err := containers.Redis(ctx)
	if err != nil {
		return "", "", stop, err
	}
	stops = append(stops, rdStop)
	return pg, rd, stop, nil
}

// connect opens a pool of conns connections to PostgreSQL and a client of
// Redis with room for redisConns, keeping the reason when one does not
// answer.
func connect(ctx context.Context, pgURL, redisURL string, conns int32, redisConns int) *services {
	svc := &services{}
	if pgURL != "" {
		svc.pg, svc.pgErr = connectPostgres(ctx, pgURL, conns)
	}
	if redisURL != "" {
		svc.redis, svc.redisErr = connectRedis(ctx, redisURL, redisConns)
	}
	return svc
}

func connectPostgres(ctx context.Context, url string, conns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact(url), err)
	}
	cfg.MaxConns = conns
	cfg.ConnConfig.ConnectTimeout = poolConnectTimeout
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact(url), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %w", redact(url), err)
	}
	return pool, nil
}

func connectRedis(ctx context.Context, url string, conns int) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact(url), err)
	}
	opt.PoolSize = conns
	opt.DialTimeout = connectTimeout
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%s: %w", redact(url), err)
	}
	return c, nil
}

// connectRedisCluster opens a client of the Redis Cluster whose nodes
// include addrs, with room for conns connections to each node.
func connectRedisCluster(ctx context.Context, addrs []string, conns int) (redis.UniversalClient, error) {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: conns, DialTimeout: connectTimeout})
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() }); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis cluster %s: %w", strings.Join(addrs, ","), err)
	}
	return c, nil
}

// versions returns the server versions for the report.
func versions(ctx context.Context, svc *services) (pg, rd string) {
	if svc.pg != nil {
		_ = svc.pg.QueryRow(ctx, "SELECT split_part(version(), ' on ', 1)").Scan(&pg)
	}
	if c, ok := svc.redis.(*redis.Client); ok {
		if info, err := c.InfoMap(ctx, "server").Result(); err == nil {
			rd = info["Server"]["redis_version"]
		}
	}
	return pg, rd
}

func (s *services) close() {
	if s.pg != nil {
		s.pg.Close()
	}
	if s.redis != nil {
		_ = s.redis.Close()
	}
	if s.mysql != nil {
		_ = s.mysql.Close()
	}
}
