// Command flashsale simulates a flash sale on every strategy in turn:
// thousands of buyers rush for a few units of one SKU at the same instant,
// each wanting one. Each buyer is a client as a shop's would be: a call that
// met contention, could not reach the store or has an unknown outcome is
// sent again with the same ID, after a capped, jittered backoff, until the
// buyer's patience runs out. It prints per strategy how many units were
// sold, how many buyers were refused, how many gave up, how many calls were
// retried, how many units were oversold (read back from the ledger and the
// stock, not assumed) and how long the sale took. Strategies that cannot run
// here are listed with the reason.
//
//	go run ./examples/flashsale
//	go run ./examples/flashsale -buyers 5000 -stock 50 -strategies memory,sqlcond
//
// PostgreSQL and Redis come from -postgres and -redis, by default
// INVENTORY_POSTGRES_URL, INVENTORY_REDIS_URL and INVENTORY_MYSQL_URL, else
// the local servers.
// Each strategy runs in a schema and a key prefix of its own, dropped at the
// end. The command exits with status 1 if any strategy oversold, lost units
// or sold other than it told its buyers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s := sale{}
	var names string
	flag.IntVar(&s.Buyers, "buyers", 2000, "buyers rushing at once, each for one unit")
	flag.Int64Var(&s.Stock, "stock", 100, "units on sale")
	flag.StringVar(&names, "strategies", "all", "comma-separated strategies to run: "+strings.Join(strategy.Names(), ", "))
	flag.StringVar(&s.Services.PostgresURL, "postgres", or(os.Getenv("INVENTORY_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL; empty to skip the strategies that need it")
	flag.StringVar(&s.Services.MySQLURL, "mysql", or(os.Getenv("INVENTORY_MYSQL_URL"), "root@tcp(127.0.0.1:3306)/test"), "MySQL DSN (go-sql-driver); empty to skip the strategies that need it")
	flag.StringVar(&s.Services.RedisURL, "redis", or(os.Getenv("INVENTORY_REDIS_URL"), "redis://127.0.0.1:6379/0"), "Redis URL; empty to skip the strategies that need it")
	flag.DurationVar(&s.Services.LockWait, "lock-wait", 0, "how long a Reserve waits for a lock before it fails as contended (pessimistic, redislock); 0 for each strategy's default")
	flag.DurationVar(&s.Patience, "patience", defaultPatience, "how long a buyer keeps retrying before giving up")
	flag.Parse()
	if names != "all" {
		for n := range strings.SplitSeq(names, ",") {
			s.Strategies = append(s.Strategies, strings.TrimSpace(n))
		}
	}

	results, err := s.run(ctx, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashsale:", err)
		os.Exit(2)
	}
	for _, r := range results {
		if !r.ok() {
			os.Exit(1)
		}
	}
}

// sku is the SKU on sale.
const sku = "limited-edition"

// sale describes a flash sale.
type sale struct {
	// Buyers is how many buyers rush at once, each for one unit.
	Buyers int
	// Stock is how many units are on sale.
	Stock int64
	// Strategies are the names of the strategies to run, in order.
	// Default: every registered strategy.
	Strategies []string
	// Services says where PostgreSQL, Redis and MySQL are: clients or URLs. Schema,
	// KeyPrefix and Drop are set per strategy.
	Services strategy.Config
	// Patience is how long a buyer keeps retrying a call before giving up.
	// Default: 30s.
	Patience time.Duration
}

// defaultPatience is how long a buyer keeps retrying: about what a person
// waits on a checkout page that says "one moment".
const defaultPatience = 30 * time.Second

// result is what one strategy did in the sale.
type result struct {
	Strategy string
	// Skipped is why the strategy could not run; the rest is then empty.
	Skipped error

	Sold     int64            // units the ledger records as sold
	Held     int64            // units the ledger records as still held (0 when every buyer paid)
	Left     int64            // units still available
	Refused  int64            // buyers told the stock was gone
	Failed   int64            // buyers who gave up, or whose call failed for good
	Bought   int64            // buyers told their unit was sold
	Retries  map[string]int64 // calls sent again, by the kind of error that made them retry
	Oversold int64            // units sold or held beyond the stock: sold + held + left - stock, if positive
	Lost     int64            // units that vanished: stock - (sold + held + left), if positive
	Errors   map[string]int64 // failed buyers by kind of error
	Examples map[string]error // the first error of each kind
	Elapsed  time.Duration
	Mismatch bool // the buyers' count of sold units differs from the ledger's
}

// ok reports whether the strategy, if it ran, kept its units straight.
func (r *result) ok() bool {
	return r.Skipped != nil || (r.Oversold == 0 && r.Lost == 0 && !r.Mismatch)
}

// run holds the sale on each strategy in turn and prints a table of the
// results to out.
func (s sale) run(ctx context.Context, out io.Writer) ([]result, error) {
	if s.Buyers < 1 || s.Stock < 1 {
		return nil, errors.New("buyers and stock must be positive")
	}
	names := s.Strategies
	if len(names) == 0 {
		names = strategy.Names()
	}
	for _, n := range names {
		if _, err := strategy.Lookup(n); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "flash sale: %d buyers, %d units, one unit each; a buyer retries for up to %s\n\n", s.Buyers, s.Stock, s.patience())
	const row = "%-12s %6v %8v %7v %8v %9v %5v %9v%s\n"
	fmt.Fprintf(out, row, "strategy", "sold", "refused", "gave up", "retries", "oversold", "left", "time", "")
	var results []result
	for _, name := range names {
		r, err := s.runOne(ctx, name)
		if err != nil {
			return results, err
		}
		results = append(results, r)
		if r.Skipped != nil {
			continue
		}
		mark := ""
		if !r.ok() {
			mark = "  !! oversold, lost or miscounted units"
		}
		fmt.Fprintf(out, row, name, r.Sold, r.Refused, r.Failed, sum(r.Retries), r.Oversold, r.Left, r.Elapsed.Round(time.Millisecond), mark)
	}

	for _, r := range results {
		if len(r.Retries) > 0 {
			fmt.Fprintf(out, "\nretries of %s, by what the call met:", r.Strategy)
			for _, k := range slices.Sorted(maps.Keys(r.Retries)) {
				fmt.Fprintf(out, " %s=%d", k, r.Retries[k])
			}
			fmt.Fprintln(out)
		}
		if len(r.Errors) > 0 {
			fmt.Fprintf(out, "\nbuyers of %s who gave up or failed, by their last error:\n", r.Strategy)
			for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
				fmt.Fprintf(out, "  %s: %d, the first: %v\n", k, r.Errors[k], r.Examples[k])
			}
		}
	}
	first := true
	for _, r := range results {
		if r.Skipped != nil {
			if first {
				fmt.Fprintln(out, "\nnot run:")
				first = false
			}
			fmt.Fprintf(out, "  %s: %v\n", r.Strategy, r.Skipped)
		}
	}
	return results, nil
}

// runOne holds the sale on the strategy called name, in a schema and key
// prefix of its own that are dropped at the end. A strategy that cannot be
// opened is skipped; the error is for a sale that could not be checked.
func (s sale) runOne(ctx context.Context, name string) (result, error) {
	cfg := s.Services
	ns := fmt.Sprintf("%012x", rand.Uint64()>>16)
	cfg.Schema, cfg.KeyPrefix, cfg.Drop = "flashsale_"+ns, "flashsale:"+ns+":", true
	inv, closeInv, err := strategy.Open(ctx, name, &cfg)
	if err != nil {
		return result{Strategy: name, Skipped: err}, nil
	}
	defer closeInv(context.WithoutCancel(ctx))
	r, err := s.hold(ctx, inv)
	r.Strategy = name
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// hold holds the sale on inv and counts the result.
func (s sale) hold(ctx context.Context, inv inventory.Strategy) (result, error) {
	r := result{Errors: make(map[string]int64), Examples: make(map[string]error), Retries: make(map[string]int64)}
	if err := inv.SetStock(ctx, sku, s.Stock); err != nil {
		return r, fmt.Errorf("set stock: %w", err)
	}

	// Every buyer opens the sale page first and gets the ID of their
	// checkout attempt (a token, for the token strategy).
	newID := strategy.NewIDFunc(inv)
	ids := make([]string, s.Buyers)
	for i := range ids {
		var err error
		if ids[i], err = newID(ctx); err != nil {
			return r, fmt.Errorf("new id: %w", err)
		}
	}

	// Then the sale opens, and they all click at once.
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		gate = make(chan struct{})
	)
	for _, id := range ids {
		wg.Go(func() {
			<-gate
			c := &client{patience: s.patience()}
			err := c.buy(ctx, inv, id)
			mu.Lock()
			defer mu.Unlock()
			for k, n := range c.retries {
				r.Retries[k] += n
			}
			switch {
			case err == nil:
				r.Bought++
			case errors.Is(err, inventory.ErrInsufficientStock):
				r.Refused++
			default:
				r.Failed++
				kind := errorKind(err)
				if r.Errors[kind]++; r.Examples[kind] == nil {
					r.Examples[kind] = err
				}
			}
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	r.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return r, err
	}

	// The count: what the ledger and the stock say, not what the buyers
	// were told.
	var err error
	if r.Left, err = inv.Available(ctx, sku); err != nil {
		return r, fmt.Errorf("available: %w", err)
	}
	for _, id := range ids {
		res, err := inv.Lookup(ctx, id)
		if errors.Is(err, inventory.ErrNotFound) {
			continue
		}
		if err != nil {
			return r, fmt.Errorf("lookup: %w", err)
		}
		for _, l := range res.Lines {
			switch res.State {
			case inventory.Committed:
				r.Sold += l.Qty
			case inventory.Held:
				r.Held += l.Qty
			}
		}
	}
	switch d := r.Sold + r.Held + r.Left - s.Stock; {
	case d > 0:
		r.Oversold = d
	case d < 0:
		r.Lost = -d
	}
	r.Mismatch = r.Bought != r.Sold
	return r, nil
}

func (s sale) patience() time.Duration {
	if s.Patience > 0 {
		return s.Patience
	}
	return defaultPatience
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// The backoff between two attempts: it starts at firstPause and doubles up
// to maxPause, and each pause is drawn at random over its upper half, so that
// buyers turned away together do not come back together.
const (
	firstPause = 5 * time.Millisecond
	maxPause   = time.Second
)

// client is one buyer's side of the sale, as a shop's client would be.
type client struct {
	// patience bounds the time spent retrying one call.
	patience time.Duration
	// retries counts the calls sent again, by the kind of error that made
	// them retry.
	retries map[string]int64
}

// buy is one buyer: hold a unit, pay, and sell it. It returns nil when the
// unit is sold, an error that errors.Is inventory.ErrInsufficientStock when
// the stock is gone, or another error.
func (c *client) buy(ctx context.Context, inv inventory.Strategy, id string) error {
	req := inventory.Request{ID: id, Lines: []inventory.Line{{SKU: sku, Qty: 1}}}
	if err := c.retry(ctx, func() error { _, err := inv.Reserve(ctx, req); return err }); err != nil {
		return err
	}
	// The payment goes through: the unit is sold.
	return c.retry(ctx, func() error { return inv.Commit(ctx, id) })
}

// retryable reports whether a call that failed with err should be sent
// again, the same: it met contention (ErrContended), the store could not be
// reached and nothing changed (ErrUnavailable), or it may or may not have
// happened (ErrOutcomeUnknown). Reserve and Commit are idempotent on the ID,
// so a retry never takes a unit twice, and it learns the outcome of the call
// before.
func retryable(err error) bool {
	return errors.Is(err, inventory.ErrContended) || errors.Is(err, inventory.ErrUnavailable) ||
		errors.Is(err, inventory.ErrOutcomeUnknown)
}

// retry calls f until it succeeds, fails for good, or the next attempt
// would start after the buyer's patience ran out; then it returns f's last
// error.
func (c *client) retry(ctx context.Context, f func() error) error {
	start := time.Now()
	pause := firstPause
	for {
		err := f()
		if err == nil || !retryable(err) {
			return err
		}
		wait := pause/2 + rand.N(pause/2+1)
		if time.Since(start)+wait > c.patience {
			return err
		}
		if c.retries == nil {
			c.retries = make(map[string]int64)
		}
		c.retries[errorKind(err)]++
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}

// errorKind names the kind of a failed call, for the error counts.
func errorKind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{inventory.ErrOutcomeUnknown, "outcome_unknown"},
		{inventory.ErrContended, "contended"},
		{inventory.ErrUnavailable, "unavailable"},
		{inventory.ErrNotHeld, "not_held"},
		{inventory.ErrNotFound, "not_found"},
		{inventory.ErrConflict, "conflict"},
		{inventory.ErrUnknownSKU, "unknown_sku"},
		{inventory.ErrInvalidRequest, "invalid"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// or returns v, or def when v is empty.
func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
