// Command invservices starts the servers the tests and the benchmark need
// (PostgreSQL 15, Redis 7 and MariaDB 11) in containers through testcontainers-go, on a
// machine with a Docker engine and no servers of its own, prints the
// environment variables that point the tests and invbench at them, and keeps
// them until it is interrupted.
//
//	go run ./cmd/invservices > services.env   # in one terminal; Ctrl-C removes them
//	. ./services.env && go test -race ./... ./cmd/... ./examples/...
//
// The variables are printed as shell export lines on stdout, progress on
// stderr. The containers are removed when the command exits, and by
// testcontainers' reaper should it be killed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oversell/inventory/cmd/internal/containers"
)

// startTimeout bounds the start of the containers, image pulls included.
const startTimeout = 5 * time.Minute

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: invservices\n\n"+
			"Starts PostgreSQL, Redis and MariaDB in containers (needs Docker), prints the INVENTORY_* variables\n"+
			"the tests and invbench read as shell export lines, and removes the containers on Ctrl-C.\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "invservices:", err)
		os.Exit(1)
	}
}

// run starts the containers, writes the variables to out, and waits for ctx
// to end before removing them.
func run(ctx context.Context, out, progress io.Writer) error {
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	fmt.Fprintln(progress, "invservices: starting", containers.PostgresImage, containers.RedisImage, "and", containers.MariaDBImage)
	pg, stopPG, err := containers.Postgres(startCtx)
	if err != nil {
		return err
	}
	defer stopPG()
	rd, stopRedis, err := containers.Redis(startCtx)
	if err != nil {
		return err
	}
	defer stopRedis()
	my, stopMariaDB, err := containers.MariaDB(startCtx)
	if err != nil {
		return err
	}
	defer stopMariaDB()
	fmt.Fprint(out, exports(map[string]string{"POSTGRES": pg, "REDIS": rd, "MYSQL": my}))
	fmt.Fprintln(progress, "invservices: ready; Ctrl-C removes the containers")
	<-ctx.Done()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// exports returns the export lines for the tests' variables
// (INVENTORY_TEST_<NAME>_URL) and the benchmark's (INVENTORY_<NAME>_URL).
func exports(urls map[string]string) string {
	var s string
	for _, name := range []string{"POSTGRES", "REDIS", "MYSQL"} {
		url, ok := urls[name]
		if !ok {
			continue
		}
		s += fmt.Sprintf("export INVENTORY_TEST_%s_URL=%q\nexport INVENTORY_%s_URL=%q\n", name, url, name, url)
	}
	return s
}
