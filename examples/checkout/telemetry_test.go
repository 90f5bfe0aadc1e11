package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape reads GET /metrics and returns every sample whose name starts with
// inventory_, keyed by its name and its strategy and outcome labels
// (`inventory_reservations_total{outcome="granted",strategy="memory"}`),
// summed over any other label.
func (c *api) scrape() map[string]float64 {
	c.t.Helper()
	resp, err := c.http.Get(c.base + "/metrics")
	require.NoError(c.t, err)
	defer resp.Body.Close()
	require.Equal(c.t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	out := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		ln := sc.Text()
		if !strings.HasPrefix(ln, "inventory_") {
			continue
		}
		sp := strings.LastIndexByte(ln, ' ')
		require.Positive(c.t, sp, "sample line %q", ln)
		v, err := strconv.ParseFloat(ln[sp+1:], 64)
		require.NoError(c.t, err, "sample line %q", ln)
		name, labels, _ := strings.Cut(ln[:sp], "{")
		var keep []string
		for l := range strings.SplitSeq(strings.TrimSuffix(labels, "}"), ",") {
			if strings.HasPrefix(l, "outcome=") || strings.HasPrefix(l, "strategy=") {
				keep = append(keep, l)
			}
		}
		sort.Strings(keep)
		out[name+"{"+strings.Join(keep, ",")+"}"] += v
	}
	return out
}

// postCart sends a cart from any goroutine and returns the status.
func (c *api) postCart(body map[string]any) (int, error) {
	buf, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Post(c.base+"/reservations", "application/json", bytes.NewReader(buf))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func TestMetricsCountTheLoadExactly(t *testing.T) {
	const (
		stock  = 5
		buyers = 12
	)
	ctx := t.Context()
	c, _ := startRun(t, ctx, []string{"-stock", "tee=" + strconv.Itoa(stock) + ",mug=1", "-sweep", "10ms"},
		map[string]string{secretEnv: string(testKey)}, io.Discard)
	before := c.scrape()

	// Twelve buyers race for five tees, one unit each.
	tokens := make([]string, buyers)
	for i := range tokens {
		tokens[i] = c.token()
	}
	statuses := make([]int, buyers)
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Go(func() {
			var err error
			statuses[i], err = c.postCart(cart(tok, "tee", 1))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	var won []string
	for i, st := range statuses {
		switch st {
		case http.StatusCreated:
			won = append(won, tokens[i])
		case http.StatusConflict:
		default:
			t.Fatalf("buyer %d: status %d", i, st)
		}
	}
	require.Len(t, won, stock, "exactly the stock is held")

	// Three pay, one gives up, one walks away with the hold; the first payer
	// double-clicks (a replay: granted again), the one who gave up tries to
	// pay anyway, and a forged token is refused.
	for _, tok := range won[:3] {
		require.Equal(t, http.StatusOK, c.do("POST", "/reservations/"+tok+"/commit", nil).Status)
	}
	require.Equal(t, http.StatusOK, c.do("DELETE", "/reservations/"+won[3], nil).Status)
	require.Equal(t, http.StatusOK, c.do("POST", "/reservations", cart(won[0], "tee", 1)).Status, "a replay of a settled reservation")
	require.Equal(t, http.StatusConflict, c.do("POST", "/reservations/"+won[3]+"/commit", nil).Status)
	require.Equal(t, http.StatusUnprocessableEntity, c.do("POST", "/reservations", cart("forged", "tee", 1)).Status)

	// A mug held for a millisecond: the sweeper expires it.
	mug := c.token()
	body := cart(mug, "mug", 1)
	body["ttl"] = "1ms"
	require.Equal(t, http.StatusCreated, c.do("POST", "/reservations", body).Status)
	const expiries = `inventory_expiries_total{strategy="memory"}`
	require.Eventually(t, func() bool { return c.scrape()[expiries]-before[expiries] == 1 }, 10*time.Second, 10*time.Millisecond,
		"the sweeper's expiry is counted")

	after := c.scrape()
	delta := func(k string) float64 { return after[k] - before[k] }
	for k, want := range map[string]float64{
		`inventory_reservations_total{outcome="granted",strategy="memory"}`:            stock + 1 + 1, // the winners, the replay, the mug
		`inventory_reservations_total{outcome="insufficient_stock",strategy="memory"}`: buyers - stock,
		`inventory_reservations_total{outcome="invalid",strategy="memory"}`:            1,
		`inventory_commits_total{outcome="ok",strategy="memory"}`:                      3,
		`inventory_commits_total{outcome="not_held",strategy="memory"}`:                1,
		`inventory_releases_total{outcome="ok",strategy="memory"}`:                     1,
		expiries: 1,
		`inventory_reserve_duration_seconds_count{outcome="granted",strategy="memory"}`:            stock + 1 + 1,
		`inventory_reserve_duration_seconds_count{outcome="insufficient_stock",strategy="memory"}`: buyers - stock,
		`inventory_commit_duration_seconds_count{outcome="ok",strategy="memory"}`:                  3,
	} {
		assert.Equal(t, want, delta(k), k)
	}
	assert.Positive(t, after[`inventory_expire_due_duration_seconds_count{outcome="ok",strategy="memory"}`], "the sweeps are timed")
	for k := range after {
		assert.NotContains(t, k, "tee", "no SKU in any metric")
	}
	if t.Failed() {
		t.Logf("scrape: %v", after)
	}
}
