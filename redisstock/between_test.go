package redisstock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redisstock"
)

// errCrash stands for a process that dies between the takes of a cart's
// buckets and its grant.
var errCrash = errors.New("the process died here")

// TestCrashBetweenACartsBucketsIsNeverSeenInPart stops a Reserve of a cart
// whose two lines live in two buckets after both takes and before the grant,
// as a crash of the caller's process would. Until the cart is decided,
// nobody sees it granted: Lookup does not show it held and Commit refuses
// it. Then either a retry with the same ID completes it, its units taken
// once, or, with no retry, ExpireDue after the pending timeout returns every
// unit.
func TestCrashBetweenACartsBucketsIsNeverSeenInPart(t *testing.T) {
	t.Parallel()
	for _, retry := range []bool{true, false} {
		name := map[bool]string{true: "RetryCompletesIt", false: "SweepReturnsItsUnits"}[retry]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			in := setup(ctx, t, nil, &redisstock.Options{Buckets: 16})
			skus := []string{"a", "b"}
			for in.Bucket(skus[0]) == in.Bucket(skus[1]) {
				skus[1] += "x"
			}
			for _, s := range skus {
				require.NoError(t, in.SetStock(ctx, s, 10))
			}
			id := findID(in.Reserver, skus[0], false)
			cart := req(id, line(skus[0], 2), line(skus[1], 3))
			crash := true
			in.SetBeforeGrant(func(got string) error {
				if got == id && crash {
					return errCrash
				}
				return nil
			})
			_, err := in.Reserve(ctx, cart)
			require.ErrorIs(t, err, errCrash)
			crash = false

			if r, err := in.Lookup(ctx, id); err == nil {
				assert.NotEqual(t, inventory.Held, r.State, "a cart not yet granted is not shown held: %+v", r)
			} else {
				assert.ErrorIs(t, err, inventory.ErrNotFound)
			}
			assert.Error(t, in.Commit(ctx, id), "a cart not yet granted cannot be sold")

			want := map[string]int64{skus[0]: 10, skus[1]: 10}
			if retry {
				got, err := in.Reserve(ctx, cart)
				require.NoError(t, err, "the retry completes the cart")
				assert.Equal(t, inventory.Held, got.State)
				assert.ElementsMatch(t, cart.Lines, got.Lines, "both lines")
				want = map[string]int64{skus[0]: 8, skus[1]: 7}
			} else {
				in.Clock.Advance(redisstock.DefaultPendingTimeout + time.Second)
				for {
					n, err := in.ExpireDue(ctx, 10)
					require.NoError(t, err)
					if n == 0 {
						break
					}
				}
			}
			for s, w := range want {
				n, err := in.Available(ctx, s)
				require.NoError(t, err)
				assert.Equal(t, w, n, "%s: units taken once, or all back", s)
			}
		})
	}
}
