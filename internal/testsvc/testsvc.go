// Package testsvc gives tests the real services they need: a PostgreSQL
// schema and a Redis key prefix of their own, dropped when the test ends.
//
// Services come from INVENTORY_TEST_POSTGRES_URL and INVENTORY_TEST_REDIS_URL,
// else the local defaults. On a machine with Docker and no servers of its
// own, `go run ./cmd/invservices` starts them in containers and prints the
// variables to set. When none answers the test is skipped with a message
// naming the variable, unless INVENTORY_TEST_REQUIRE_SERVICES=1, which turns
// the skip into a failure.
//
// INVENTORY_TEST_SOAK=1 (CI sets it) asks for the long versions of the
// hammers and fault tests: Soak reports it, so that every test reads the
// variable in one place.
package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory/internal/soak"
)

// Environment variables read by this package.
const (
	PostgresEnv = "INVENTORY_TEST_POSTGRES_URL"
	RedisEnv    = "INVENTORY_TEST_REDIS_URL"
	RequireEnv  = "INVENTORY_TEST_REQUIRE_SERVICES"
	SoakEnv     = soak.Env

	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// MaxConns is the size of the pool shared by the tests of one test binary.
const MaxConns = 16

var (
	pgOnce sync.Once
	pgPool *pgxpool.Pool
	pgURL  string
	pgErr  error

	redisOnce   sync.Once
	redisClient *redis.Client
	redisURL    string
	redisErr    error
)

// Unavailable skips the test, or fails it when INVENTORY_TEST_REQUIRE_SERVICES=1.
func Unavailable(t testing.TB, env string, err error) {
	t.Helper()
	msg := fmt.Sprintf("service unavailable (set %s to one that answers): %v", env, err)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s; %s=1 makes this a failure", msg, RequireEnv)
	}
	t.Skip(msg)
}

// Soak reports whether INVENTORY_TEST_SOAK=1: the tests then run their long
// versions (more iterations, longer durations) on top of the short ones every
// run does. Without it a test does what its check needs to be able to fail,
// and no more.
func Soak() bool { return soak.On() }

// PostgresURL returns the URL of a PostgreSQL server that answers, or skips
// (or fails) the test.
func PostgresURL(t testing.TB) string {
	t.Helper()
	Postgres(t)
	return pgURL
}

// PostgresAddr returns the host:port of the PostgreSQL server PostgresURL
// names, for a faultproxy to forward to, or skips (or fails) the test.
func PostgresAddr(t testing.TB) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(PostgresURL(t))
	if err != nil {
		t.Fatalf("testsvc: %s: %v", PostgresEnv, err)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// Postgres returns a pool shared by every test in the binary, or skips (or
// fails) the test. Tests isolate themselves with Schema.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pgOnce.Do(func() { pgPool, pgURL, pgErr = openPostgres() })
	if pgErr != nil {
		Unavailable(t, PostgresEnv, pgErr)
	}
	return pgPool
}

func openPostgres() (*pgxpool.Pool, string, error) {
	url := os.Getenv(PostgresEnv)
	if url == "" {
		url = DefaultPostgresURL
	}
	pool, err := connectPostgres(url)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w (on a machine with Docker, go run ./cmd/invservices starts one)", url, err)
	}
	return pool, url, nil
}

func connectPostgres(url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = MaxConns
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Schema returns the name of a new, empty PostgreSQL schema for this test
// alone, dropped with everything in it when the test ends.
func Schema(t testing.TB) string {
	t.Helper()
	pool := Postgres(t)
	name := "invtest_" + randomHex(8)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// RedisURL returns the URL of a Redis server that answers, or skips (or
// fails) the test.
func RedisURL(t testing.TB) string {
	t.Helper()
	Redis(t)
	return redisURL
}

// Redis returns a client shared by every test in the binary, or skips (or
// fails) the test. Tests isolate themselves with RedisPrefix.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	redisOnce.Do(func() { redisClient, redisURL, redisErr = openRedis() })
	if redisErr != nil {
		Unavailable(t, RedisEnv, redisErr)
	}
	return redisClient
}

func openRedis() (*redis.Client, string, error) {
	url := os.Getenv(RedisEnv)
	if url == "" {
		url = DefaultRedisURL
	}
	c, err := connectRedis(url)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w (on a machine with Docker, go run ./cmd/invservices starts one)", url, err)
	}
	return c, url, nil
}

func connectRedis(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.PoolSize = MaxConns * 4
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// RedisPrefix returns a key prefix for this test alone; every key under it is
// deleted when the test ends.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	prefix := "invtest:" + randomHex(8) + ":"
	CleanRedisPrefix(t, prefix)
	return prefix
}

// CleanRedisPrefix deletes every key under prefix when the test ends.
func CleanRedisPrefix(t testing.TB, prefix string) {
	t.Helper()
	c := Redis(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("clean redis prefix %s: %v", prefix, err)
		}
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ClosedAddr returns a loopback host:port on which nothing listens, so that
// a dial to it is refused at once: a server that cannot be reached.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testsvc: listen: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("testsvc: close: %v", err)
	}
	return addr
}
