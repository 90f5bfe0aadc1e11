package redisstock_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/faultlog"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/redisstock"
	"github.com/oversell/inventory/strategy/strategytest"
)

// writerChildEnv carries a writer process's orders (a JSON writerChild) to
// the test binary run again as that writer.
const writerChildEnv = "INVENTORY_REDISSTOCK_WRITER_CHILD"

type writerChild struct {
	Schema, Prefix string
	At             string // "before" or "after" the batch's COMMIT: where the writer stops
	AckFirst       bool   // acknowledge before COMMIT: deliberately wrong
}

// runWriterChild is the writer process: it opens the store, and runs a
// writer that stops at the point it was told, says so on stdout, and waits
// there to be killed.
func runWriterChild(t *testing.T, raw string) {
	var c writerChild
	require.NoError(t, json.Unmarshal([]byte(raw), &c))
	r, err := redisstock.New(testsvc.Postgres(t), testsvc.Redis(t), &redisstock.Options{Schema: c.Schema, KeyPrefix: c.Prefix})
	require.NoError(t, err)
	w := r.NewWriter(&redisstock.WriterOptions{Consumer: "doomed", Poll: 10 * time.Millisecond})
	w.SetAckFirst(c.AckFirst)
	stop := func() {
		fmt.Println("WRITER-STOPPED")
		select {} // until SIGKILL
	}
	if c.At == "before" {
		w.SetBeforeCommit(stop)
	} else {
		w.SetAfterCommit(stop)
	}
	_ = w.Run(t.Context())
}

// killedWriter runs a writer in a process of its own over the store of in,
// waits until it stops before or after a batch's COMMIT holding the entries
// it read, and SIGKILLs it there.
func killedWriter(t *testing.T, in *instance, c writerChild) {
	t.Helper()
	c.Schema, c.Prefix = in.Schema, in.Prefix
	spec, err := json.Marshal(c)
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestWriterSIGKILLedMidBatch$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerChildEnv+"="+string(spec))
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	stopped := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "WRITER-STOPPED") {
			stopped = true
			break
		}
	}
	require.True(t, stopped, "the writer process reached its stop")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}

// TestWriterSIGKILLedMidBatch SIGKILLs a writer process holding a batch of
// entries, once before the batch's COMMIT and once after it and before the
// acknowledgement. A writer of this process claims the entries: nothing is
// lost, nothing applied twice, and the ledger reconciles with Redis. A
// writer that acknowledges before its COMMIT is caught losing its batch.
func TestWriterSIGKILLedMidBatch(t *testing.T) {
	if raw := os.Getenv(writerChildEnv); raw != "" {
		runWriterChild(t, raw)
		return
	}
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    writerChild
		lose bool
	}{
		{"BeforeCommit", writerChild{At: "before"}, false},
		{"AfterCommit", writerChild{At: "after"}, false},
		{"AckBeforeCommitIsCaught", writerChild{At: "before", AckFirst: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setupBare(ctx, t, nil, nil)
			require.NoError(t, in.SetStock(ctx, "a", 100))
			const n = 20
			for range n {
				_, err := in.Reserve(ctx, req(strategytest.RandomID(), line("a", 1)))
				require.NoError(t, err)
			}
			killedWriter(t, in, tc.c)

			w := in.NewWriter(&redisstock.WriterOptions{ClaimIdle: 50 * time.Millisecond})
			time.Sleep(100 * time.Millisecond) // the killed writer's entries go idle
			require.NoError(t, w.Drain(ctx))
			rep, err := in.Reconcile(ctx, nil)
			require.NoError(t, err)
			t.Logf("%s: %d reservations, %d differences after another writer took over", tc.name, n, len(rep.Differences))
			if tc.lose {
				assert.NotEmpty(t, rep.Differences, "the batch acknowledged before its COMMIT is lost, and Reconcile sees it")
				return
			}
			faultlog.Log(t, faultlog.Cell{Strategy: "redisstock", Fault: faultlog.WriterCrash, Tried: n, Lost: int64(len(rep.Differences))})
			assert.Empty(t, rep.Differences, "the ledger agrees with Redis")
			var rows int64
			require.NoError(t, testsvc.Postgres(t).QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{in.Schema}.Sanitize()+".reservation").Scan(&rows))
			assert.Equal(t, int64(n), rows, "each reservation written once")
		})
	}
}
