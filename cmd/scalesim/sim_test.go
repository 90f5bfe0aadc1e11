package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryUnitIsSoldAndNoneTwice runs sell-outs over several layouts: the
// model grants exactly the stock (or every buyer, when they are fewer),
// never sells a unit twice, and never refuses a buyer while a unit is left
// in another bucket.
func TestEveryUnitIsSoldAndNoneTwice(t *testing.T) {
	for _, c := range []Config{
		{Rate: 200e3, Stock: 5000, Shards: 1, Buckets: 1},
		{Rate: 200e3, Stock: 5000, Shards: 3, Buckets: 8, Procs: 5},
		{Rate: 200e3, Stock: 7, Shards: 4, Buckets: 8, Procs: 16, EmptyCache: true},
		{Rate: 50e3, Stock: 1e6, Shards: 2, Buckets: 4},
		{Rate: 400e3, Stock: 1, Shards: 8, Buckets: 8, MaxBatch: 1},
	} {
		c.Duration, c.Seed = 50*time.Millisecond, 7
		r, err := Simulate(c)
		require.NoError(t, err)
		assert.Zero(t, r.Oversold, "%+v", c)
		assert.Equal(t, c.Stock, r.Granted+r.Left, "units sold plus left: %+v", c)
		assert.Equal(t, min(c.Stock, r.Buyers), r.Granted, "every unit sold while buyers remain: %+v", c)
		assert.Equal(t, r.Buyers, r.Granted+r.Refused, "every buyer answered: %+v", c)
	}
}

// TestTheCheckCatchesAStoreThatTakesWithoutChecking runs the deliberately
// wrong store, which takes a unit whether or not one is left.
func TestTheCheckCatchesAStoreThatTakesWithoutChecking(t *testing.T) {
	r, err := Simulate(Config{Rate: 200e3, Stock: 100, Shards: 2, Buckets: 4, Duration: 20 * time.Millisecond, unchecked: true})
	require.NoError(t, err)
	assert.Positive(t, r.Oversold)
	assert.Greater(t, r.Granted, int64(100))
}

// TestOneMasterSaturatesAtItsMeasuredCost checks the model against the
// per-call costs it is calibrated with: one request a call, a master serves
// 1/(base+per) calls a second; with calls of up to 64, about 1/per.
func TestOneMasterSaturatesAtItsMeasuredCost(t *testing.T) {
	run := func(rate float64, batch int) *Result {
		r, err := Simulate(Config{Rate: rate, Stock: 1 << 40, Shards: 1, MaxBatch: batch, Duration: 50 * time.Millisecond, Seed: 3})
		require.NoError(t, err)
		return r
	}
	capacity := 1e6 / (19 + 2.4)
	assert.InEpsilon(t, 30e3, run(30e3, 1).Decided, 0.05, "below capacity every buyer is answered in time")
	assert.InEpsilon(t, capacity, run(150e3, 1).Decided, 0.05, "above it, the master's rate")
	assert.Greater(t, run(150e3, 64).Decided, 145e3, "coalesced calls lift the ceiling")
	assert.InEpsilon(t, 1e6/(19.0/64+2.4), run(1e6, 64).Decided, 0.05, "to about one request per 2.4µs")
}

func TestBadConfigIsRefused(t *testing.T) {
	for _, c := range []Config{{}, {Rate: -1}, {Rate: 1, Stock: -1}, {Rate: 1, Shards: -1}, {Rate: 1, RTT: -1}, {Rate: 1e9, Duration: time.Second}} {
		_, err := Simulate(c)
		assert.Error(t, err, "%+v", c)
	}
}

func TestCommandPrintsBothTables(t *testing.T) {
	var out, errOut bytes.Buffer
	code := mainErr([]string{"-duration", "20ms", "-shards", "1,4", "-stock", "2000"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	assert.Contains(t, out.String(), "== capacity")
	assert.Contains(t, out.String(), "== sell-out: 2000 units")
	assert.Equal(t, 2, mainErr([]string{"-shards", "x"}, &out, &errOut))
}
