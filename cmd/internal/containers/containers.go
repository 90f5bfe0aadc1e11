// Package containers starts PostgreSQL and Redis through testcontainers-go,
// for machines with a Docker engine and no servers of their own: the
// benchmark (cmd/invbench -containers) and cmd/invservices, which starts them
// for the tests, both start their servers here.
package containers

import (
	"context"
	"fmt"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// Images of the servers the project is tested and measured against.
const (
	PostgresImage = "postgres:15-alpine"
	RedisImage    = "redis:7-alpine"
)

// Postgres starts a PostgreSQL container with a database "test" for the user
// postgres, and returns its URL and the function that removes it.
func Postgres(ctx context.Context) (url string, stop func(), err error) {
	c, err := tcpostgres.Run(ctx, PostgresImage,
		tcpostgres.WithDatabase("test"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		return "", nil, fmt.Errorf("start PostgreSQL container: %w", err)
	}
	stop = func() { _ = testcontainers.TerminateContainer(c) }
	if url, err = c.ConnectionString(ctx, "sslmode=disable"); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

// Redis starts a Redis container and returns its URL and the function that
// removes it.
func Redis(ctx context.Context) (url string, stop func(), err error) {
	c, err := tcredis.Run(ctx, RedisImage)
	if err != nil {
		return "", nil, fmt.Errorf("start Redis container: %w", err)
	}
	stop = func() { _ = testcontainers.TerminateContainer(c) }
	if url, err = c.ConnectionString(ctx); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}
