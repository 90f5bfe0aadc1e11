package redisstock_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/redisstock"
)

// hintedSettle reserves 2 units of "a", plants a wrong guess of the
// reservation's lines (5 units of "b") where Commit and Release look for
// them, settles it (Commit, or Release), and returns the levels of both
// SKUs. With wrong set the script trusts the guess instead of comparing it
// with the record.
func hintedSettle(t *testing.T, commit, wrong bool) map[string]inventory.Levels {
	ctx := t.Context()
	var in *instance
	if wrong {
		in = setupBare(ctx, t, nil, nil)
		src := strings.Replace(redisstock.ScriptSource, "and same(r.ls, ls) then", "then", 1)
		require.NotEqual(t, redisstock.ScriptSource, src, "the wrong script differs")
		in.SetScriptSource(src)
	} else {
		in = setup(ctx, t, nil, nil)
	}
	require.NoError(t, in.SetStock(ctx, "a", 10))
	require.NoError(t, in.SetStock(ctx, "b", 10))
	res, err := in.Reserve(ctx, req("hinted", line("a", 2)))
	require.NoError(t, err)
	in.PutHint(res.ID, []inventory.Line{line("b", 5)})
	if commit {
		require.NoError(t, in.Commit(ctx, res.ID))
	} else {
		require.NoError(t, in.Release(ctx, res.ID))
	}
	out := map[string]inventory.Levels{}
	for _, sku := range []string{"a", "b"} {
		lv, err := in.Levels(ctx, sku)
		require.NoError(t, err)
		out[sku] = lv
	}
	return out
}

// TestSettleInOneCallChecksItsLines: a Commit or Release of a reservation
// reserved in this process settles and finishes in one call with the lines
// it remembers; a guess that is not the record's lines (gone stale) is
// refused by the script, and the reservation's own units are sold or given
// back.
func TestSettleInOneCallChecksItsLines(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(map[bool]string{true: "Commit", false: "Release"}[commit], func(t *testing.T) {
			t.Parallel()
			want := map[string]inventory.Levels{"a": {Available: 10}, "b": {Available: 10}}
			if commit {
				want["a"] = inventory.Levels{Available: 8, Sold: 2}
			}
			assert.Equal(t, want, hintedSettle(t, commit, false))
		})
	}
}

// TestSettleInOneCallCheckCatchesAScriptThatTrustsTheGuess: the twin, whose
// script finishes with the guessed lines: the wrong SKU's units move, and
// the reservation's stay held.
func TestSettleInOneCallCheckCatchesAScriptThatTrustsTheGuess(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(map[bool]string{true: "Commit", false: "Release"}[commit], func(t *testing.T) {
			t.Parallel()
			got := hintedSettle(t, commit, true)
			assert.Equal(t, int64(2), got["a"].Held, "a's units stay held: the check above would have caught it")
		})
	}
}
