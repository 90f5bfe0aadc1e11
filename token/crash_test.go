package token_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/token"
)

// Environment of the child process of TestCrashBetweenClaimAndReserve.
const (
	crashStoreEnv  = "INVENTORY_TOKEN_CRASH_STORE"  // "redis" or "postgres": be the child
	crashNSEnv     = "INVENTORY_TOKEN_CRASH_NS"     // the key prefix or schema of the flags
	crashTokensEnv = "INVENTORY_TOKEN_CRASH_TOKENS" // the tokens to claim, comma-separated
)

// crashLease is the claim lease of the Reservers after the crash.
const crashLease = 2 * time.Second

// openCrashStore opens the flag store kind in namespace ns.
func openCrashStore(t *testing.T, kind, ns string) token.Store {
	t.Helper()
	switch kind {
	case "redis":
		return token.NewRedisStore(testsvc.Redis(t), &token.RedisOptions{Prefix: ns})
	case "postgres":
		st, err := token.NewPostgresStore(testsvc.Postgres(t), &token.PostgresOptions{Schema: ns})
		require.NoError(t, err)
		return st
	}
	t.Fatalf("unknown store %q", kind)
	return nil
}

// stalled is an inner strategy whose Reserve says on stdout that it was
// reached, its token's flag claimed, and then never returns.
type stalled struct{ inventory.Strategy }

func (stalled) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	fmt.Printf("claimed %s\n", req.ID)
	<-ctx.Done()
	return inventory.Reservation{}, ctx.Err()
}

// TestCrashBetweenClaimAndReserve kills a process (SIGKILL) that claimed the
// flags of some tokens and had not reserved yet, for every flag store on a
// server. Right after, a retry of each token finds its flag held and gets
// ErrInProgress; once the claim lease has passed, a retry takes the flag
// over and is granted, once per token. A Reserver whose lease never ends,
// the behaviour before the lease, is caught still refusing.
func TestCrashBetweenClaimAndReserve(t *testing.T) {
	if kind := os.Getenv(crashStoreEnv); kind != "" {
		crashChild(t, kind)
		return
	}
	for _, kind := range []string{"redis", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var ns string
			if kind == "redis" {
				ns = testsvc.RedisPrefix(t)
			} else {
				ns = testsvc.Schema(t)
				st, err := token.NewPostgresStore(testsvc.Postgres(t), &token.PostgresOptions{Schema: ns})
				require.NoError(t, err)
				require.NoError(t, st.Migrate(ctx))
			}
			issuer := newIssuer(t, nil)
			toks := make([]string, 5)
			for i := range toks {
				var err error
				toks[i], err = issuer.Issue(ctx)
				require.NoError(t, err)
			}

			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashBetweenClaimAndReserve$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashStoreEnv+"="+kind, crashNSEnv+"="+ns, crashTokensEnv+"="+strings.Join(toks, ","))
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			claimed := map[string]bool{}
			sc := bufio.NewScanner(out)
			for len(claimed) < len(toks) && sc.Scan() {
				if tok, ok := strings.CutPrefix(sc.Text(), "claimed "); ok {
					claimed[tok] = true
				}
			}
			require.Len(t, claimed, len(toks), "the child claimed every token")
			require.NoError(t, cmd.Process.Kill()) // SIGKILL, between claim and reserve
			_ = cmd.Wait()
			killed := time.Now()

			store := openCrashStore(t, kind, ns)
			inner := memory.New(nil) // no reservation: the child never made one
			require.NoError(t, inner.SetStock(ctx, "a", 10))
			req := func(tok string) inventory.Request {
				return inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "a", Qty: 1}}}
			}
			right := token.Wrap(inner, issuer, store, &token.Options{WaitTimeout: 20 * time.Millisecond, ClaimLease: crashLease})
			wrong := token.Wrap(inner, issuer, store, &token.Options{WaitTimeout: 20 * time.Millisecond, ClaimLease: time.Hour})

			_, err = right.Reserve(ctx, req(toks[0]))
			if time.Since(killed) < crashLease/2 {
				assert.ErrorIs(t, err, token.ErrInProgress, "right after the crash the flag is held")
			}
			time.Sleep(time.Until(killed.Add(crashLease + 100*time.Millisecond)))
			for _, tok := range toks {
				_, err := wrong.Reserve(ctx, req(tok))
				assert.ErrorIs(t, err, token.ErrInProgress, "a Reserver that never takes a flag over is still refused (the check catches it)")
			}
			for _, tok := range toks {
				res, err := right.Reserve(ctx, req(tok))
				if assert.NoError(t, err, "a retry after the lease takes the flag over") {
					assert.Equal(t, inventory.Held, res.State)
				}
				again, err := right.Reserve(ctx, req(tok))
				if assert.NoError(t, err, "and a duplicate then gets its reservation") {
					assert.Equal(t, res.ExpiresAt, again.ExpiresAt)
				}
			}
			n, err := inner.Available(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, int64(10-len(toks)), n, "one unit per token, once")
			t.Logf("%s flags: %d tokens claimed by a killed process were refused with ErrInProgress until the %s lease passed, then granted once each", kind, len(toks), crashLease)
		})
	}
}

// crashChild claims the flags of the tokens it is given and stalls before
// reserving, until it is killed.
func crashChild(t *testing.T, kind string) {
	store := openCrashStore(t, kind, os.Getenv(crashNSEnv))
	r := token.Wrap(stalled{memory.New(nil)}, newIssuer(t, nil), store, nil)
	ctx := context.Background()
	toks := strings.Split(os.Getenv(crashTokensEnv), ",")
	for _, tok := range toks {
		go func() {
			_, err := r.Reserve(ctx, inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
			if err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "child: reserve %s: %v\n", tok, err)
			}
		}()
	}
	select {} // until killed
}
