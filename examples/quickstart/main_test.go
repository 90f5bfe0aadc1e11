package main

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/strategy"
	"github.com/oversell/inventory/strategy/strategytest"
)

// quickstartOutput is what the quickstart prints on a clock reading now.
func quickstartOutput(now time.Time) string {
	return "held 2 until " + now.Add(15*time.Minute).Format("15:04") + "\n" +
		"refused: tee-red-m has 1 left\n" +
		"available: 1\n"
}

func TestQuickstartPrintsTheSameInProcess(t *testing.T) {
	clk := strategytest.NewClock()
	var out bytes.Buffer
	require.NoError(t, open(t.Context(), &out, "memory", &strategy.Config{Now: clk.Now}))
	assert.Equal(t, quickstartOutput(clk.Now()), out.String())
}

func TestQuickstartPrintsTheSameOnEveryStrategy(t *testing.T) {
	for _, info := range strategy.All() {
		t.Run(info.Name, func(t *testing.T) {
			clk := strategytest.NewClock()
			cfg := &strategy.Config{Now: clk.Now}
			if slices.Contains(info.Services, strategy.Postgres) {
				cfg.Postgres = testsvc.Postgres(t)
				cfg.Schema = testsvc.Schema(t)
			}
			if slices.Contains(info.Services, strategy.MySQL) {
				cfg.MySQL = testsvc.MySQL(t)
				cfg.Schema = testsvc.MySQLDatabase(t)
			}
			if slices.Contains(info.Services, strategy.Redis) {
				cfg.Redis = testsvc.Redis(t)
				cfg.KeyPrefix = testsvc.RedisPrefix(t)
			}
			var out bytes.Buffer
			require.NoError(t, open(t.Context(), &out, info.Name, cfg))
			assert.Equal(t, quickstartOutput(clk.Now()), out.String())

			// Fresh IDs each run: a second run against the same store prints
			// the same.
			out.Reset()
			require.NoError(t, open(t.Context(), &out, info.Name, cfg))
			assert.Equal(t, quickstartOutput(clk.Now()), out.String())
		})
	}
}

func TestQuickstartNeedsTheServiceOfItsStrategy(t *testing.T) {
	var out bytes.Buffer
	err := open(t.Context(), &out, "sqlcond", &strategy.Config{})
	require.ErrorIs(t, err, strategy.ErrServiceNotConfigured)
	assert.Empty(t, out.String())

	err = open(t.Context(), &out, "no-such-strategy", nil)
	require.ErrorIs(t, err, strategy.ErrUnknownStrategy)
}
