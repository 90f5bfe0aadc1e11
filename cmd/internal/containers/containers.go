// Package containers starts PostgreSQL, Redis and MariaDB through
// testcontainers-go,
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
	"github.com/testcontainers/testcontainers-go/wait"
)

// Images of the servers the project is tested and measured against.
const (
	PostgresImage = "postgres:15-alpine"
	RedisImage    = "redis:7-alpine"
	MariaDBImage  = "mariadb:11"
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

// MariaDB starts a MariaDB container with a database "test" for root, without
// a password, and returns its URL (a go-sql-driver/mysql DSN) and the
// function that removes it.
func MariaDB(ctx context.Context) (url string, stop func(), err error) {
	c, err := testcontainers.Run(ctx, MariaDBImage,
		testcontainers.WithEnv(map[string]string{"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1", "MARIADB_DATABASE": "test"}),
		testcontainers.WithExposedPorts("3306/tcp"),
		// The image's entrypoint starts a server to initialise the data
		// directory, stops it, and starts the real one: ready the second time.
		testcontainers.WithWaitStrategy(wait.ForLog("ready for connections").WithOccurrence(2), wait.ForListeningPort("3306/tcp")))
	if err != nil {
		return "", nil, fmt.Errorf("start MariaDB container: %w", err)
	}
	stop = func() { _ = testcontainers.TerminateContainer(c) }
	host, err := c.Host(ctx)
	if err != nil {
		stop()
		return "", nil, err
	}
	port, err := c.MappedPort(ctx, "3306/tcp")
	if err != nil {
		stop()
		return "", nil, err
	}
	return fmt.Sprintf("root@tcp(%s:%s)/test", host, port.Port()), stop, nil
}
