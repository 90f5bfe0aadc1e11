package redisstock_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redisstock"
)

// heldInRecord reserves 2 units of "a" under a new ID, which keeps its hold
// in its record, settles it as asked (Commit or Release, in one call or,
// without the lines at hand, in two), and returns the levels of "a". With
// wrong set the script looks for holds in hold keys alone.
func heldInRecord(t *testing.T, commit, oneCall, wrong bool) inventory.Levels {
	ctx := t.Context()
	var in *instance
	if wrong {
		in = setupBare(ctx, t, nil, nil)
		src := strings.Replace(redisstock.ScriptSource, "if rk and r == nil then", "if false then", 1)
		src = strings.Replace(src, "elseif r and r.hs then", "elseif false then", 1)
		require.NotEqual(t, redisstock.ScriptSource, src, "the wrong script differs")
		in.SetScriptSource(src)
	} else {
		in = setup(ctx, t, nil, nil)
	}
	in.SetNoHints(!oneCall)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	res, err := in.Reserve(ctx, req("in-record", line("a", 2)))
	require.NoError(t, err)
	if commit {
		require.NoError(t, in.Commit(ctx, res.ID))
	} else {
		require.NoError(t, in.Release(ctx, res.ID))
	}
	lv, err := in.Levels(ctx, "a")
	require.NoError(t, err)
	return lv
}

// TestHoldInRecordMovesOnce: a hold kept in its reservation's record is
// sold or given back, in one call or in two.
func TestHoldInRecordMovesOnce(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		for _, oneCall := range []bool{true, false} {
			t.Run(map[bool]string{true: "Commit", false: "Release"}[commit]+map[bool]string{true: "/OneCall", false: "/TwoCalls"}[oneCall], func(t *testing.T) {
				t.Parallel()
				want := inventory.Levels{Available: 10}
				if commit {
					want = inventory.Levels{Available: 8, Sold: 2}
				}
				assert.Equal(t, want, heldInRecord(t, commit, oneCall, false))
			})
		}
	}
}

// TestHoldInRecordCheckCatchesAScriptThatLooksInHoldKeysAlone: its twin,
// whose script finds no hold: the units stay held.
func TestHoldInRecordCheckCatchesAScriptThatLooksInHoldKeysAlone(t *testing.T) {
	t.Parallel()
	for _, oneCall := range []bool{true, false} {
		t.Run(map[bool]string{true: "OneCall", false: "TwoCalls"}[oneCall], func(t *testing.T) {
			t.Parallel()
			lv := heldInRecord(t, false, oneCall, true)
			assert.Equal(t, int64(2), lv.Held, "the units stayed held: the check above would have caught it")
		})
	}
}

// TestHoldKeysStillMove: holds in hold keys, as Load writes them (and as
// the store kept every hold before), are sold and given back as before.
func TestHoldKeysStillMove(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	in := setup(ctx, t, nil, nil)
	require.NoError(t, in.SetStock(ctx, "a", 10))
	for _, id := range []string{"sold", "released", "released-two-calls"} {
		_, err := in.Reserve(ctx, req(id, line("a", 2)))
		require.NoError(t, err)
	}
	require.NoError(t, in.Writer.Drain(ctx))
	require.NoError(t, in.Wipe(ctx))
	require.NoError(t, in.Load(ctx))
	require.NoError(t, in.Commit(ctx, "sold"))
	require.NoError(t, in.Release(ctx, "released"))
	in.SetNoHints(true)
	require.NoError(t, in.Release(ctx, "released-two-calls"))
	lv, err := in.Levels(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, inventory.Levels{Available: 8, Sold: 2}, lv)
}
