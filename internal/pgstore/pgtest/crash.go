package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy/strategytest"
)

// Environment of the child process of RunCrash.
const (
	crashSchemaEnv = "INVENTORY_TEST_CRASH_SCHEMA"
	crashURLEnv    = "INVENTORY_TEST_CRASH_URL"
	crashAppEnv    = "INVENTORY_TEST_CRASH_APP"
)

const (
	crashSKUs  = 5
	crashStock = 100_000
	crashTTL   = 2 * time.Second
)

// RunCrash checks that a process killed with SIGKILL in the middle of its
// work loses no units: a child process (the test binary, run again) reserves,
// commits and releases on a strategy made by mk, and is killed after a while,
// with reservations held and others in flight. The ledger and the stock must
// agree at once; after the holds' TTL, sweepers return every unit not sold.
//
// The test that calls RunCrash must be a top-level test that does nothing
// before the call: the child runs that test alone.
func RunCrash(t *testing.T, mk Maker) {
	if schema := os.Getenv(crashSchemaEnv); schema != "" {
		crashChild(mk, os.Getenv(crashURLEnv), os.Getenv(crashAppEnv), schema) // never returns
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	url := testsvc.PostgresURL(t)
	pool := Pool(t, PoolConfig{MaxConns: 4})
	schema := testsvc.Schema(t)
	s, err := mk(pool, schema, time.Now)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	for i := range crashSKUs {
		require.NoError(t, s.SetStock(ctx, strategytest.SKUName(i), crashStock))
	}

	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1")
	app := AppName()
	cmd.Env = append(os.Environ(), crashSchemaEnv+"="+schema, crashURLEnv+"="+url, crashAppEnv+"="+app)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Kill it once it has made 300 reservations, in the thick of its work.
	sc := bufio.NewScanner(out)
	made := 0
	for made < 300 && sc.Scan() {
		if sc.Text() == "reserved" {
			made++
		}
	}
	require.Equal(t, 300, made, "the child made its reservations before it died")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.Empty(t, stderr.String(), "the child reported a problem before it was killed")
	// The server finishes what the dead client had sent (a COMMIT, say)
	// before its backends go: wait for them.
	for len(Backends(ctx, t, app)) > 0 {
		time.Sleep(10 * time.Millisecond)
	}

	// Right after the crash: the stock and the ledger agree, held included.
	acc := crashAccount(ctx, t, pool, schema)
	t.Logf("after the kill: %+v", acc)
	require.Positive(t, acc.held, "the child died holding units")
	for sku, avail := range acc.available {
		assert.Equal(t, int64(crashStock), avail+acc.heldBySKU[sku]+acc.soldBySKU[sku], "%s: available + held + sold", sku)
	}

	// After the TTL, two sweepers return every held unit, once.
	time.Sleep(time.Until(acc.lastExpiry.Add(50 * time.Millisecond)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	expired := 0
	for range 2 {
		sw := inventory.NewSweeper(s, &inventory.SweeperOptions{BatchSize: 7})
		wg.Go(func() {
			n, err := sw.Sweep(ctx)
			assert.NoError(t, err)
			mu.Lock()
			expired += n
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, acc.held, int64(expired), "every hold the child left is expired once")
	end := crashAccount(ctx, t, pool, schema)
	t.Logf("after the sweep: %+v", end)
	assert.Zero(t, end.held, "no unit is held after the TTL")
	for sku, avail := range end.available {
		assert.Equal(t, int64(crashStock), avail+end.soldBySKU[sku], "%s: every unit not sold is back", sku)
		assert.Equal(t, acc.soldBySKU[sku], end.soldBySKU[sku], "%s: sold units stay sold", sku)
	}
}

type crashAccounting struct {
	held                 int64 // held reservations
	available            map[string]int64
	heldBySKU, soldBySKU map[string]int64
	lastExpiry           time.Time
}

// crashAccount reads the stock and the ledger straight from the tables.
func crashAccount(ctx context.Context, t *testing.T, db *pgxpool.Pool, schema string) crashAccounting {
	t.Helper()
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	acc := crashAccounting{available: map[string]int64{}, heldBySKU: map[string]int64{}, soldBySKU: map[string]int64{}}
	rows, err := db.Query(ctx, "SELECT sku, available FROM "+table("stock"))
	require.NoError(t, err)
	for rows.Next() {
		var sku string
		var n int64
		require.NoError(t, rows.Scan(&sku, &n))
		acc.available[sku] = n
	}
	require.NoError(t, rows.Err())
	rows, err = db.Query(ctx, "SELECT l.sku, r.state, sum(l.qty) FROM "+table("reservation")+" r JOIN "+
		table("reservation_line")+" l ON l.reservation_id = r.id WHERE r.state IN (1, 2) GROUP BY 1, 2")
	require.NoError(t, err)
	for rows.Next() {
		var sku string
		var state int
		var n int64
		require.NoError(t, rows.Scan(&sku, &state, &n))
		if inventory.State(state) == inventory.Held {
			acc.heldBySKU[sku] = n
		} else {
			acc.soldBySKU[sku] = n
		}
	}
	require.NoError(t, rows.Err())
	var last *time.Time
	require.NoError(t, db.QueryRow(ctx, "SELECT count(*), max(expires_at) FROM "+table("reservation")+" WHERE state = 1").Scan(&acc.held, &last))
	if last != nil {
		acc.lastExpiry = *last
	}
	return acc
}

// crashChild is the child process of RunCrash: buyers reserve, commit and
// release until the process is killed, printing "reserved" per reservation.
func crashChild(mk Maker, url, app, schema string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		fail(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fail(err)
	}
	s, err := mk(pool, schema, time.Now)
	if err != nil {
		fail(err)
	}
	var mu sync.Mutex
	for w := range 8 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				n := 1 + rng.IntN(3)
				req := inventory.Request{ID: strategytest.RandomID(), TTL: crashTTL}
				for _, i := range rng.Perm(crashSKUs)[:n] {
					req.Lines = append(req.Lines, inventory.Line{SKU: strategytest.SKUName(i), Qty: 1 + rng.Int64N(3)})
				}
				if _, err := s.Reserve(ctx, req); err != nil {
					fail(err)
				}
				mu.Lock()
				fmt.Println("reserved")
				mu.Unlock()
				var err error
				switch rng.IntN(3) {
				case 0:
					err = s.Commit(ctx, req.ID)
				case 1:
					err = s.Release(ctx, req.ID)
				}
				if err != nil {
					fail(err)
				}
			}
		}()
	}
	select {}
}
