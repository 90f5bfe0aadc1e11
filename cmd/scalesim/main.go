// Command scalesim simulates a flash sale of one hot SKU spread over the
// buckets of a Redis Cluster and written behind to PostgreSQL, to size the
// plan of docs/SCALE.md: how many masters, buckets and PostgreSQL nodes it
// takes to decide a given rate of buyers, what the latency and the writers'
// lag are, and what saturates first.
//
// It is a discrete-event model, not a benchmark: the per-shard costs it
// starts from (a script call's fixed and per-request cost in Redis, a
// PostgreSQL flush's fixed and per-event cost) are the numbers measured on
// this repository's machine, and every flag can replace them.
//
//	go run ./cmd/scalesim                       # the table of docs/SCALE.md
//	go run ./cmd/scalesim -shards 8 -rate 2e6   # one more point
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scalesim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		c         Config
		shards    = fs.String("shards", "1,2,4,8,16", "comma-separated numbers of Redis masters to simulate")
		perShard  = fs.Int("buckets-per-shard", 2, "buckets of the SKU per master")
		pgNodes   = fs.String("pgnodes", "1,0", "comma-separated numbers of PostgreSQL nodes; 0: one per two masters")
		duration  = fs.Duration("duration", time.Second, "how long buyers arrive")
		noCache   = fs.Bool("no-empty-cache", false, "processes do not remember the buckets that answered short")
		unbatched = fs.Bool("unbatched", false, "one request per script call (MaxBatch 1): the bare Lua decrement")
	)
	fs.Float64Var(&c.Rate, "rate", 1e6, "buyers per second")
	fs.Int64Var(&c.Stock, "stock", 200000, "units of the SKU in the sell-out table (the capacity table never runs out)")
	fs.IntVar(&c.Procs, "procs", 32, "application processes")
	fs.IntVar(&c.MaxBatch, "max-batch", 64, "most requests one script call carries")
	fs.Float64Var(&c.RTT, "rtt", 100, "round trip between a process and a server, µs")
	fs.Float64Var(&c.ScriptBase, "script-base", 19, "a master's cost of one script call, µs")
	fs.Float64Var(&c.ScriptPer, "script-per", 2.4, "a master's cost per request in a call, µs")
	fs.IntVar(&c.WriterBatch, "writer-batch", 512, "most events one writer flush carries")
	fs.Float64Var(&c.FlushBase, "flush-base", 760, "a PostgreSQL node's cost of one flush, µs")
	fs.Float64Var(&c.FlushPer, "flush-per", 3.7, "a PostgreSQL node's cost per event in a flush, µs")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the arrivals")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.Duration, c.EmptyCache = *duration, !*noCache
	if *unbatched {
		c.MaxBatch = 1
	}
	ns, err := ints(*shards)
	if err != nil {
		fmt.Fprintln(stderr, "scalesim: -shards:", err)
		return 2
	}
	pgs, err := ints(*pgNodes)
	if err != nil {
		fmt.Fprintln(stderr, "scalesim: -pgnodes:", err)
		return 2
	}
	if *perShard <= 0 {
		fmt.Fprintln(stderr, "scalesim: -buckets-per-shard must be positive")
		return 2
	}
	fmt.Fprintf(stdout, "%.0f buyers/s for %s, %d units, %d processes, calls of up to %d requests, RTT %.0fµs, empty cache %v\n",
		c.Rate, c.Duration, c.Stock, c.Procs, c.MaxBatch, c.RTT, c.EmptyCache)
	fmt.Fprintf(stdout, "costs: script %.0fµs + %.1fµs/request; flush %.0fµs + %.1fµs/event, %d events at most\n\n",
		c.ScriptBase, c.ScriptPer, c.FlushBase, c.FlushPer, c.WriterBatch)
	type row struct {
		c Config
		r *Result
	}
	var rows []row
	for _, n := range ns {
		for _, pg := range pgs {
			cc := c
			cc.Shards, cc.Buckets, cc.PGNodes = n, n**perShard, pg
			if pg == 0 {
				cc.PGNodes = max(1, n/2)
			}
			if pg == 0 && cc.PGNodes == 1 && slicesContain(pgs, 1) {
				continue // the same row as -pgnodes 1
			}
			rows = append(rows, row{c: cc})
		}
	}
	for _, table := range []struct {
		title, header string
		plenty        bool
		line          func(*Result) string
	}{
		{"capacity: the stock never runs out", capacityHeader, true, (*Result).capacityRow},
		{fmt.Sprintf("sell-out: %d units", c.Stock), sellOutHeader, false, (*Result).sellOutRow},
	} {
		fmt.Fprintf(stdout, "== %s\n%s\n", table.title, table.header)
		for _, rw := range rows {
			cc := rw.c
			if table.plenty {
				cc.Stock = int64(cc.Rate*cc.Duration.Seconds()) * 2
			}
			r, err := Simulate(cc)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
			fmt.Fprintln(stdout, table.line(r))
			if r.Oversold != 0 || r.Granted+r.Left != cc.Stock {
				fmt.Fprintf(stderr, "scalesim: the model broke its own invariant: granted %d, left %d, stock %d\n", r.Granted, r.Left, cc.Stock)
				return 1
			}
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprint(stdout, footer)
	return 0
}

const footer = `decided/s  buyers answered per second while they arrive; below the rate, a backlog grows
p50, p99   from a buyer's arrival to the answer; shard: the busiest master's busy fraction
batch      requests per script call (coalesced per process and master)
maxlag     most events appended and not yet written to PostgreSQL; drain: after the last buyer, until
           written; flush: events per writer flush (at -writer-batch, the writers fall behind)
sold-out   when the last unit was sold; sold-p99: latency of the buyers who got one
tries      bucket attempts per buyer that reached Redis (1: no fallover); local-no: buyers refused
           by their process without a call, once every bucket answered short (the empty cache)
`

func slicesContain(v []int, x int) bool {
	for _, y := range v {
		if y == x {
			return true
		}
	}
	return false
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}
