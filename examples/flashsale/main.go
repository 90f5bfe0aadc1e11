// Command flashsale simulates a flash sale on every strategy in turn:
// thousands of buyers rush for a few units of one SKU at the same instant,
// each wanting one. It prints per strategy how many units were sold, how
// many buyers were refused, how many calls failed, how many units were
// oversold (read back from the ledger and the stock, not assumed) and how
// long the sale took. Strategies that cannot run here are listed with the
// reason.
//
//	go run ./examples/flashsale
//	go run ./examples/flashsale -buyers 5000 -stock 50 -strategies memory,sqlcond
//
// PostgreSQL and Redis come from -postgres and -redis, by default
// INVENTORY_POSTGRES_URL and INVENTORY_REDIS_URL, else the local servers.
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
	flag.StringVar(&s.Services.RedisURL, "redis", or(os.Getenv("INVENTORY_REDIS_URL"), "redis://127.0.0.1:6379/0"), "Redis URL; empty to skip the strategies that need it")
	flag.DurationVar(&s.Services.LockWait, "lock-wait", 0, "how long a Reserve waits for a lock before it fails as contended (pessimistic, redislock); 0 for each strategy's default")
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
	// Services says where PostgreSQL and Redis are: clients or URLs. Schema,
	// KeyPrefix and Drop are set per strategy.
	Services strategy.Config
}

// result is what one strategy did in the sale.
type result struct {
	Strategy string
	// Skipped is why the strategy could not run; the rest is then empty.
	Skipped error

	Sold     int64            // units the ledger records as sold
	Held     int64            // units the ledger records as still held (0 when every buyer paid)
	Left     int64            // units still available
	Refused  int64            // buyers told the stock was gone
	Failed   int64            // buyers whose calls failed otherwise, after retries
	Bought   int64            // buyers told their unit was sold
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
	fmt.Fprintf(out, "flash sale: %d buyers, %d units, one unit each\n\n", s.Buyers, s.Stock)
	const row = "%-12s %6v %8v %7v %9v %5v %9v%s\n"
	fmt.Fprintf(out, row, "strategy", "sold", "refused", "errors", "oversold", "left", "time", "")
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
		fmt.Fprintf(out, row, name, r.Sold, r.Refused, r.Failed, r.Oversold, r.Left, r.Elapsed.Round(time.Millisecond), mark)
	}

	for _, r := range results {
		if len(r.Errors) > 0 {
			fmt.Fprintf(out, "\nerrors of %s:\n", r.Strategy)
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
	r := result{Errors: make(map[string]int64), Examples: make(map[string]error)}
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
			err := buy(ctx, inv, id)
			mu.Lock()
			defer mu.Unlock()
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

// buy is one buyer: hold a unit, pay, and sell it. It returns nil when the
// unit is sold, an error that errors.Is inventory.ErrInsufficientStock when
// the stock is gone, or another error.
func buy(ctx context.Context, inv inventory.Strategy, id string) error {
	req := inventory.Request{ID: id, Lines: []inventory.Line{{SKU: sku, Qty: 1}}}
	if err := retry(ctx, func() error { _, err := inv.Reserve(ctx, req); return err }); err != nil {
		return err
	}
	// The payment goes through: the unit is sold.
	return retry(ctx, func() error { return inv.Commit(ctx, id) })
}

// maxAttempts bounds the calls retry makes.
const maxAttempts = 5

// retry calls f until it succeeds or fails for good. A call that met
// contention or whose outcome is unknown is made again, the same: Reserve and
// Commit are idempotent on the ID, so a retry never takes a unit twice, and
// it learns the outcome of the call before.
func retry(ctx context.Context, f func() error) error {
	pause := time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt == maxAttempts ||
			!(errors.Is(err, inventory.ErrContended) || errors.Is(err, inventory.ErrOutcomeUnknown)) {
			return err
		}
		// Wait between half and all of pause, so retries spread out.
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause *= 4
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
