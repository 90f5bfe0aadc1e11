package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/token"
)

// testKey is the token secret of the tests.
var testKey = []byte("a checkout test secret, 32 bytes")

// backend opens the service's strategy for one test.
type backend struct {
	name string
	open func(t *testing.T) *app
}

// backends are the strategies the API is tested on: in process, and
// sqlcond on a PostgreSQL schema of the test's own, and sqlcond-mysql on a
// MySQL database of its own.
func backends() []backend {
	return []backend{
		{"memory", func(t *testing.T) *app {
			t.Helper()
			return openTestApp(t, config{strategy: "memory"})
		}},
		{"sqlcond", func(t *testing.T) *app {
			t.Helper()
			return openTestApp(t, config{strategy: "sqlcond", postgresURL: testsvc.PostgresURL(t), schema: testsvc.Schema(t)})
		}},
		{"sqlcond-mysql", func(t *testing.T) *app {
			t.Helper()
			return openTestApp(t, config{strategy: "sqlcond-mysql", mysqlURL: testsvc.MySQLURL(t), schema: testsvc.MySQLDatabase(t)})
		}},
	}
}

func openTestApp(t *testing.T, cfg config) *app {
	t.Helper()
	cfg.keys = [][]byte{testKey}
	if cfg.pgConns == 0 {
		cfg.pgConns = 8 // the test binaries share the server's connections
	}
	a, err := openApp(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(a.close)
	return a
}

// api is a client of a checkout service under test.
type api struct {
	t    *testing.T
	base string
	http *http.Client
}

// startAPI serves the checkout API on a with httptest and stocks it.
func startAPI(t *testing.T, a *app, stock map[string]int64) *api {
	t.Helper()
	for sku, n := range stock {
		require.NoError(t, a.inv.SetStock(t.Context(), sku, n))
	}
	srv := httptest.NewServer(newServer(a.inv, a.issuer.Issue, nil))
	t.Cleanup(srv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	t.Cleanup(tr.CloseIdleConnections)
	return &api{t: t, base: srv.URL, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// reply is an answer of the API.
type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
}

// str returns the string field key of the body, or "".
func (r reply) str(key string) string {
	s, _ := r.Body[key].(string)
	return s
}

// num returns the number field key of the body, or -1.
func (r reply) num(key string) int64 {
	f, ok := r.Body[key].(float64)
	if !ok {
		return -1
	}
	return int64(f)
}

// do sends a request with body (a string is sent as it is, anything else as
// JSON) and decodes the JSON answer. It is safe for concurrent use.
func (c *api) do(method, path string, body any) reply {
	c.t.Helper()
	return c.doWith(nil, method, path, body)
}

// doWith is do with the headers h.
func (c *api) doWith(h http.Header, method, path string, body any) reply {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	require.NoError(c.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	if resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(c.t, json.Unmarshal(raw, &r.Body), "body: %s", raw)
	}
	return r
}

func (c *api) token() string {
	c.t.Helper()
	r := c.do("GET", "/checkout", nil)
	require.Equal(c.t, http.StatusOK, r.Status)
	tok := r.str("token")
	require.Len(c.t, tok, token.Len)
	return tok
}

func (c *api) available(sku string) int64 {
	c.t.Helper()
	r := c.do("GET", "/stock/"+url.PathEscape(sku), nil)
	require.Equal(c.t, http.StatusOK, r.Status, "%v", r.Body)
	return r.num("available")
}

// cart is the body of POST /reservations.
func cart(tok string, lines ...any) map[string]any {
	var ls []map[string]any
	for i := 0; i+1 < len(lines); i += 2 {
		ls = append(ls, map[string]any{"sku": lines[i], "qty": lines[i+1]})
	}
	return map[string]any{"token": tok, "lines": ls}
}

func TestAPI(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("CheckoutIssuesAFreshTokenUncached", func(t *testing.T) {
				c := startAPI(t, b.open(t), nil)
				r := c.do("GET", "/checkout", nil)
				require.Equal(t, http.StatusOK, r.Status)
				assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
				assert.Len(t, r.str("token"), token.Len)
				assert.NotEqual(t, r.str("token"), c.token())
			})
			t.Run("ReserveHoldsTheCartAndCommitSellsIt", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 3, "mug": 5})
				tok := c.token()
				r := c.do("POST", "/reservations", cart(tok, "tee", 2, "mug", 1))
				require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
				assert.Equal(t, "/reservations/"+tok, r.Header.Get("Location"))
				assert.Equal(t, tok, r.str("id"))
				assert.Equal(t, "held", r.str("state"))
				assert.Equal(t, []any{
					map[string]any{"sku": "mug", "qty": float64(1)},
					map[string]any{"sku": "tee", "qty": float64(2)},
				}, r.Body["lines"], "lines sorted by SKU")
				exp, err := time.Parse(time.RFC3339Nano, r.str("expires_at"))
				require.NoError(t, err)
				assert.WithinDuration(t, time.Now().Add(15*time.Minute), exp, time.Minute)
				assert.Equal(t, int64(1), c.available("tee"))
				assert.Equal(t, int64(4), c.available("mug"))

				r = c.do("POST", "/reservations/"+tok+"/commit", nil)
				require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
				assert.Equal(t, "committed", r.str("state"))
				r = c.do("POST", "/reservations/"+tok+"/commit", nil)
				require.Equal(t, http.StatusOK, r.Status, "commit again is harmless")

				r = c.do("GET", "/reservations/"+tok, nil)
				require.Equal(t, http.StatusOK, r.Status)
				assert.Equal(t, "committed", r.str("state"))
				assert.Equal(t, int64(1), c.available("tee"), "sold units stay gone")

				r = c.do("DELETE", "/reservations/"+tok, nil)
				require.Equal(t, http.StatusConflict, r.Status)
				assert.Equal(t, "not_held", r.str("error"))
				assert.Equal(t, "committed", r.str("state"))
			})
			t.Run("DeleteReturnsTheUnitsAndCommitThenFails", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 3})
				tok := c.token()
				require.Equal(t, http.StatusCreated, c.do("POST", "/reservations", cart(tok, "tee", 3)).Status)
				assert.Equal(t, int64(0), c.available("tee"))

				r := c.do("DELETE", "/reservations/"+tok, nil)
				require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
				assert.Equal(t, "released", r.str("state"))
				require.Equal(t, http.StatusOK, c.do("DELETE", "/reservations/"+tok, nil).Status, "delete again is harmless")
				assert.Equal(t, int64(3), c.available("tee"))

				r = c.do("POST", "/reservations/"+tok+"/commit", nil)
				require.Equal(t, http.StatusConflict, r.Status)
				assert.Equal(t, "not_held", r.str("error"))
				assert.Equal(t, "released", r.str("state"))
			})
			t.Run("SameTokenAgainTakesStockOnce", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 3})
				tok := c.token()
				first := c.do("POST", "/reservations", cart(tok, "tee", 2))
				require.Equal(t, http.StatusCreated, first.Status)
				again := c.do("POST", "/reservations", cart(tok, "tee", 2))
				require.Equal(t, http.StatusCreated, again.Status, "still held")
				assert.Equal(t, first.Body, again.Body)
				assert.Equal(t, int64(1), c.available("tee"))

				r := c.do("POST", "/reservations", cart(tok, "tee", 1))
				require.Equal(t, http.StatusConflict, r.Status, "other lines under the same token")
				assert.Equal(t, "conflict", r.str("error"))

				require.Equal(t, http.StatusOK, c.do("POST", "/reservations/"+tok+"/commit", nil).Status)
				r = c.do("POST", "/reservations", cart(tok, "tee", 2))
				require.Equal(t, http.StatusOK, r.Status, "a settled reservation answers 200")
				assert.Equal(t, "committed", r.str("state"))
				assert.Empty(t, r.Header.Get("Location"))
				assert.Equal(t, int64(1), c.available("tee"))
			})
			t.Run("InsufficientStockIs409NamingTheLine", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 1, "mug": 5})
				tok := c.token()
				r := c.do("POST", "/reservations", cart(tok, "mug", 1, "tee", 2))
				require.Equal(t, http.StatusConflict, r.Status)
				assert.Equal(t, "insufficient_stock", r.str("error"))
				assert.Equal(t, "tee", r.str("sku"))
				assert.Equal(t, int64(2), r.num("requested"))
				assert.Equal(t, int64(1), r.num("available"))
				assert.Equal(t, int64(5), c.available("mug"), "nothing held")

				// The token is not used up by a refusal: a smaller cart goes through.
				r = c.do("POST", "/reservations", cart(tok, "mug", 1, "tee", 1))
				require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			})
			t.Run("UnknownSKUAndReservationAre404", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 1})
				r := c.do("POST", "/reservations", cart(c.token(), "tee", 1, "hat", 1))
				require.Equal(t, http.StatusNotFound, r.Status)
				assert.Equal(t, "unknown_sku", r.str("error"))
				assert.Equal(t, "hat", r.str("sku"))
				assert.Equal(t, int64(1), c.available("tee"))

				r = c.do("GET", "/stock/hat", nil)
				require.Equal(t, http.StatusNotFound, r.Status)
				assert.Equal(t, "unknown_sku", r.str("error"))

				missing := c.token()
				for _, call := range [][2]string{
					{"GET", "/reservations/" + missing},
					{"POST", "/reservations/" + missing + "/commit"},
					{"DELETE", "/reservations/" + missing},
				} {
					r := c.do(call[0], call[1], nil)
					require.Equal(t, http.StatusNotFound, r.Status, "%s %s", call[0], call[1])
					assert.Equal(t, "not_found", r.str("error"))
				}
			})
			t.Run("BadTokensAre422", func(t *testing.T) {
				a := b.open(t)
				c := startAPI(t, a, map[string]int64{"tee": 1})
				r := c.do("POST", "/reservations", cart("order-1", "tee", 1))
				require.Equal(t, http.StatusUnprocessableEntity, r.Status)
				assert.Equal(t, "token_invalid", r.str("error"))

				other, err := token.NewIssuer([][]byte{[]byte("another secret, also 32 bytes ok")}, nil)
				require.NoError(t, err)
				forged, err := other.Issue(t.Context())
				require.NoError(t, err)
				r = c.do("POST", "/reservations", cart(forged, "tee", 1))
				require.Equal(t, http.StatusUnprocessableEntity, r.Status)
				assert.Equal(t, "token_invalid", r.str("error"))

				past, err := token.NewIssuer([][]byte{testKey}, &token.IssuerOptions{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
				require.NoError(t, err)
				old, err := past.Issue(t.Context())
				require.NoError(t, err)
				r = c.do("POST", "/reservations", cart(old, "tee", 1))
				require.Equal(t, http.StatusUnprocessableEntity, r.Status)
				assert.Equal(t, "token_expired", r.str("error"))
				assert.Equal(t, int64(1), c.available("tee"))
			})
			t.Run("InvalidCartsAre422", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 5})
				tok := c.token()
				many := map[string]any{"token": tok, "lines": func() []any {
					var ls []any
					for i := range inventory.MaxLines + 1 {
						ls = append(ls, map[string]any{"sku": fmt.Sprintf("s%d", i), "qty": 1})
					}
					return ls
				}()}
				withTTL := func(ttl string) map[string]any {
					body := cart(tok, "tee", 1)
					body["ttl"] = ttl
					return body
				}
				for name, tc := range map[string]struct {
					body  any
					field string
				}{
					"no lines":       {cart(tok), "Lines"},
					"zero qty":       {cart(tok, "tee", 0), "Lines[0].Qty"},
					"negative qty":   {cart(tok, "tee", -1), "Lines[0].Qty"},
					"huge qty":       {cart(tok, "tee", inventory.MaxQty+1), "Lines[0].Qty"},
					"empty sku":      {cart(tok, "", 1), "Lines[0].SKU"},
					"long sku":       {cart(tok, strings.Repeat("x", inventory.MaxSKULen+1), 1), "Lines[0].SKU"},
					"control sku":    {cart(tok, "te\x00e", 1), "Lines[0].SKU"},
					"duplicate sku":  {cart(tok, "tee", 1, "tee", 1), "Lines[1].SKU"},
					"too many lines": {many, "Lines"},
					"bad ttl":        {withTTL("soon"), "ttl"},
					"negative ttl":   {withTTL("-1m"), "ttl"},
					"ttl over max":   {withTTL("2h"), "ttl"},
				} {
					r := c.do("POST", "/reservations", tc.body)
					require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %v", name, r.Body)
					assert.Equal(t, "invalid_request", r.str("error"), name)
					assert.Equal(t, tc.field, r.str("field"), name)
				}
				assert.Equal(t, int64(5), c.available("tee"))

				long := strings.Repeat("x", inventory.MaxIDLen+1)
				for _, call := range [][2]string{
					{"GET", "/reservations/" + long},
					{"POST", "/reservations/" + long + "/commit"},
					{"DELETE", "/reservations/" + long},
					{"GET", "/stock/" + long},
				} {
					r := c.do(call[0], call[1], nil)
					require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s %s", call[0], call[1])
					assert.Equal(t, "invalid_request", r.str("error"))
				}
			})
			t.Run("MalformedBodiesAre400AndHugeOnes413", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 5})
				tok := c.token()
				for name, body := range map[string]string{
					"empty":           ``,
					"not json":        `tee=1`,
					"truncated":       `{"token":"` + tok + `","lines":[`,
					"unknown field":   `{"token":"` + tok + `","lines":[{"sku":"tee","qty":1}],"coupon":"FREE"}`,
					"unknown in line": `{"token":"` + tok + `","lines":[{"sku":"tee","qty":1,"price":0}]}`,
					"two values":      `{"token":"` + tok + `","lines":[{"sku":"tee","qty":1}]}{}`,
					"qty as string":   `{"token":"` + tok + `","lines":[{"sku":"tee","qty":"1"}]}`,
					"fractional qty":  `{"token":"` + tok + `","lines":[{"sku":"tee","qty":1.5}]}`,
					"qty overflows":   `{"token":"` + tok + `","lines":[{"sku":"tee","qty":99999999999999999999}]}`,
					"array":           `[]`,
				} {
					r := c.do("POST", "/reservations", body)
					require.Equal(t, http.StatusBadRequest, r.Status, name)
					assert.Equal(t, "bad_json", r.str("error"), name)
				}
				huge := `{"token":"` + tok + `","lines":[{"sku":"` + strings.Repeat("x", maxBodyBytes) + `","qty":1}]}`
				r := c.do("POST", "/reservations", huge)
				require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
				assert.Equal(t, "too_large", r.str("error"))
				assert.Equal(t, int64(5), c.available("tee"))
			})
			t.Run("OverdueHoldCannotBeCommittedAndItsUnitsReturn", func(t *testing.T) {
				c := startAPI(t, b.open(t), map[string]int64{"tee": 2})
				tok := c.token()
				body := cart(tok, "tee", 2)
				body["ttl"] = "1ms"
				require.Equal(t, http.StatusCreated, c.do("POST", "/reservations", body).Status)
				time.Sleep(5 * time.Millisecond)
				r := c.do("POST", "/reservations/"+tok+"/commit", nil)
				require.Equal(t, http.StatusConflict, r.Status)
				assert.Equal(t, "not_held", r.str("error"))
				assert.Equal(t, "expired", r.str("state"))
				assert.Equal(t, int64(2), c.available("tee"))
				assert.Equal(t, "expired", c.do("GET", "/reservations/"+tok, nil).str("state"))
			})
			t.Run("ConcurrentBuyersSellExactlyTheStock", func(t *testing.T) {
				const buyers, units = 200, 50
				c := startAPI(t, b.open(t), map[string]int64{"drop": units})
				var (
					created, refused, committed, other atomic.Int64
					mu                                 sync.Mutex
					sold                               []string
					unexpected                         []string
				)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for range buyers {
					wg.Go(func() {
						tok := c.token()
						<-start
						r := c.do("POST", "/reservations", cart(tok, "drop", 1))
						switch r.Status {
						case http.StatusCreated:
							created.Add(1)
						case http.StatusConflict:
							refused.Add(1)
							return
						default:
							other.Add(1)
							mu.Lock()
							unexpected = append(unexpected, fmt.Sprintf("reserve: %d %v", r.Status, r.Body))
							mu.Unlock()
							return
						}
						// Payment went through.
						r = c.do("POST", "/reservations/"+tok+"/commit", nil)
						if r.Status != http.StatusOK {
							mu.Lock()
							unexpected = append(unexpected, fmt.Sprintf("commit: %d %v", r.Status, r.Body))
							mu.Unlock()
							return
						}
						committed.Add(1)
						mu.Lock()
						sold = append(sold, tok)
						mu.Unlock()
					})
				}
				close(start)
				wg.Wait()

				assert.Empty(t, unexpected)
				assert.Equal(t, int64(units), created.Load(), "201 answers")
				assert.Equal(t, int64(buyers-units), refused.Load(), "409 answers")
				assert.Equal(t, int64(units), committed.Load(), "commits that succeeded")
				assert.Zero(t, other.Load())
				assert.Equal(t, int64(0), c.available("drop"))
				for _, tok := range sold {
					assert.Equal(t, "committed", c.do("GET", "/reservations/"+tok, nil).str("state"))
				}
			})
		})
	}
}

// failing is a strategy whose calls all fail with err.
type failing struct {
	inventory.Strategy
	err error
}

func (f failing) Reserve(context.Context, inventory.Request) (inventory.Reservation, error) {
	return inventory.Reservation{}, f.err
}
func (f failing) Commit(context.Context, string) error  { return f.err }
func (f failing) Release(context.Context, string) error { return f.err }
func (f failing) Available(context.Context, string) (int64, error) {
	return 0, f.err
}
func (f failing) Lookup(context.Context, string) (inventory.Reservation, error) {
	return inventory.Reservation{}, f.err
}
func (f failing) Extend(context.Context, string, time.Duration) (inventory.Reservation, error) {
	return inventory.Reservation{}, f.err
}
func (f failing) Levels(context.Context, string) (inventory.Levels, error) {
	return inventory.Levels{}, f.err
}

func TestEveryErrorMapsToItsStatusOnEveryEndpoint(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{&inventory.OutcomeUnknownError{Op: "reserve", ID: "x", Err: context.DeadlineExceeded}, 503, "outcome_unknown", true},
		{&inventory.OutcomeUnknownError{Op: "commit", ID: "x", Err: inventory.ErrNotFound}, 503, "outcome_unknown", true},
		{fmt.Errorf("lock wait: %w", inventory.ErrContended), 503, "contended", true},
		{&inventory.UnavailableError{Op: "reserve", Server: "redis", Err: syscall.ECONNREFUSED}, 503, "unavailable", true},
		{&inventory.UnavailableError{Op: "lookup", Server: "postgres", Err: context.DeadlineExceeded}, 503, "unavailable", true},
		{token.ErrInProgress, 503, "contended", true},
		{context.DeadlineExceeded, 503, "timeout", true},
		{&inventory.InsufficientStockError{SKU: "tee", Requested: 2, Available: 0}, 409, "insufficient_stock", false},
		{&inventory.LimitError{SKU: "tee", Buyer: "ann", Limit: 2, Had: 2}, 409, "limit_exceeded", false},
		{fmt.Errorf("wrapped: %w", inventory.ErrLimitExceeded), 409, "limit_exceeded", false},
		{fmt.Errorf("sqlcond: %w: Request.Buyer", inventory.ErrUnsupported), 501, "not_supported", false},
		{inventory.ErrConflict, 409, "conflict", false},
		{&inventory.StateError{ID: "x", Op: "commit", State: inventory.Expired}, 409, "not_held", false},
		{fmt.Errorf("wrapped: %w", inventory.ErrNotHeld), 409, "not_held", false},
		{&inventory.ValidationError{Field: "ID", Reason: "empty"}, 422, "invalid_request", false},
		{fmt.Errorf("bad: %w", inventory.ErrInvalidRequest), 422, "invalid_request", false},
		{token.ErrInvalidToken, 422, "token_invalid", false},
		{token.ErrExpiredToken, 422, "token_expired", false},
		{&inventory.UnknownSKUError{SKU: "hat"}, 404, "unknown_sku", false},
		{inventory.ErrNotFound, 404, "not_found", false},
		{errors.New("connection reset by peer"), 500, "internal", false},
	}
	calls := [][3]string{
		{"POST", "/reservations", `{"token":"t","lines":[{"sku":"tee","qty":1}]}`},
		{"GET", "/reservations/x", ""},
		{"POST", "/reservations/x/commit", ""},
		{"POST", "/reservations/x/extend", `{"ttl":"10m"}`},
		{"DELETE", "/reservations/x", ""},
		{"GET", "/stock/tee", ""},
		{"GET", "/stock/tee/levels", ""},
	}
	quiet := discardLogger()
	for _, tc := range cases {
		h := newServer(failing{err: tc.err}, func(context.Context) (string, error) { return "", tc.err }, &serverOptions{Logger: quiet})
		for _, call := range append(calls, [3]string{"GET", "/checkout", ""}) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(call[0], call[1], strings.NewReader(call[2]))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			name := fmt.Sprintf("%s %s on %v", call[0], call[1], tc.err)
			require.Equal(t, tc.status, rec.Code, name)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), name)
			var body errorJSON
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), name)
			assert.Equal(t, tc.code, body.Error, name)
			assert.NotEmpty(t, body.Message, name)
			assert.Equal(t, tc.retryAfter, rec.Header().Get("Retry-After") != "", name)
			if tc.status == 500 {
				assert.NotContains(t, body.Message, "connection reset", "internal errors are not shown to clients")
			}
		}
	}
}

func TestErrorBodiesCarryTheDetailOfTheError(t *testing.T) {
	_, body := errorStatus(fmt.Errorf("reserve: %w", &inventory.InsufficientStockError{SKU: "tee", Requested: 2, Available: 0}))
	require.NotNil(t, body.Requested)
	require.NotNil(t, body.Available)
	assert.Equal(t, "tee", body.SKU)
	assert.Equal(t, int64(2), *body.Requested)
	assert.Equal(t, int64(0), *body.Available)

	_, body = errorStatus(&inventory.StateError{ID: "x", Op: "release", State: inventory.Committed})
	assert.Equal(t, "committed", body.State)

	_, body = errorStatus(&inventory.ValidationError{Field: "Lines[2].Qty", Reason: "0 is outside 1..1000000000"})
	assert.Equal(t, "Lines[2].Qty", body.Field)

	_, body = errorStatus(&inventory.UnknownSKUError{SKU: "hat"})
	assert.Equal(t, "hat", body.SKU)
}

func TestUnknownRoutesAndMethodsAreRefusedInJSON(t *testing.T) {
	h := newServer(memory.New(nil), func(context.Context) (string, error) { return "id", nil }, nil)
	for _, call := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/", 404, "no_route", ""},
		{"GET", "/stock/", 404, "no_route", ""},
		{"POST", "/nowhere", 404, "no_route", ""},
		{"PUT", "/reservations", 405, "method_not_allowed", "POST"},
		{"GET", "/reservations/x/commit", 405, "method_not_allowed", "POST"},
		{"POST", "/checkout", 405, "method_not_allowed", "GET, HEAD"},
		{"PATCH", "/reservations/x", 405, "method_not_allowed", "DELETE, GET, HEAD"},
	} {
		name := call.method + " " + call.path
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(call.method, call.path, nil))
		require.Equal(t, call.status, rec.Code, name)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), name)
		assert.Equal(t, call.allow, rec.Header().Get("Allow"), name)
		var body errorJSON
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "%s: %s", name, rec.Body)
		assert.Equal(t, call.code, body.Error, name)
		assert.NotEmpty(t, body.Message, name)
	}
}

func TestABodyThatIsNotJSONIsRefusedWith415(t *testing.T) {
	inv := memory.New(nil)
	require.NoError(t, inv.SetStock(t.Context(), "tee", 5))
	h := newServer(inv, func(context.Context) (string, error) { return "id", nil }, nil)
	body := `{"token":"id-1","lines":[{"sku":"tee","qty":1}]}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data; boundary=x"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/reservations", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnsupportedMediaType, rec.Code, "Content-Type %q", ct)
		var got errorJSON
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got), "%s", rec.Body)
		assert.Equal(t, "unsupported_media_type", got.Error)
	}
	n, err := inv.Available(t.Context(), "tee")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n, "nothing was held")

	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/reservations", strings.NewReader(strings.Replace(body, "id-1", "id-"+ct, 1)))
		req.Header.Set("Content-Type", ct)
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusCreated, rec.Code, "Content-Type %q: %s", ct, rec.Body)
	}
}

func TestABodyCutShortDoesNotEchoTheSockets(t *testing.T) {
	inv := memory.New(nil)
	srv := httptest.NewUnstartedServer(newServer(inv, func(context.Context) (string, error) { return "id", nil }, nil))
	// The body never comes whole: the server's read deadline ends the wait.
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	local := conn.LocalAddr().String()
	_, err = fmt.Fprintf(conn, "POST /reservations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"token\":")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	var got errorJSON
	require.NoError(t, json.Unmarshal(raw, &got), "%s", raw)
	assert.Equal(t, "bad_body", got.Error)
	_, port, _ := net.SplitHostPort(local)
	for _, secret := range []string{local, srv.Listener.Addr().String(), port, "127.0.0.1", "tcp"} {
		assert.NotContains(t, string(raw), secret, "the answer names a socket")
	}
}

// FuzzReserveAndSettleNeverPanic sends any body to POST /reservations (with
// $TOKEN replaced by a genuine token) and any ID to the settle endpoints, and
// checks the answers stay within the API's statuses.
func FuzzReserveAndSettleNeverPanic(f *testing.F) {
	f.Add(`{"token":"$TOKEN","lines":[{"sku":"tee","qty":1}]}`, "x")
	f.Add(`{"token":"$TOKEN","lines":[{"sku":"tee","qty":1},{"sku":"mug","qty":2}],"ttl":"1s"}`, "$TOKEN")
	f.Add(`{"token":"$TOKEN","lines":[{"sku":"tee","qty":9}]}`, "")
	f.Add(`{"token":"$TOKEN","lines":null,"ttl":"-3h"}`, "\x00")
	f.Add(`{"token":"$TOKEN","lines":[{"sku":"\u0000","qty":-1}]}`, "%2F")
	f.Add(`{"token":1}`, strings.Repeat("é", 100))
	f.Add(`null`, "../x")

	issuer, err := token.NewIssuer([][]byte{testKey}, nil)
	require.NoError(f, err)
	inv := token.Wrap(memory.New(nil), issuer, token.NewMemoryStore(), nil)
	ctx := context.Background()
	require.NoError(f, inv.SetStock(ctx, "tee", 5))
	require.NoError(f, inv.SetStock(ctx, "mug", 5))
	h := newServer(inv, issuer.Issue, &serverOptions{Logger: discardLogger()})
	allowed := map[int]bool{200: true, 201: true, 400: true, 404: true, 409: true, 413: true, 422: true}

	f.Fuzz(func(t *testing.T, body, id string) {
		tok, err := issuer.Issue(ctx)
		require.NoError(t, err)
		body = strings.ReplaceAll(body, "$TOKEN", tok)
		id = strings.ReplaceAll(id, "$TOKEN", tok)

		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/reservations", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		require.True(t, allowed[rec.Code], "reserve answered %d: %s", rec.Code, rec.Body)

		path := "/reservations/" + url.PathEscape(id)
		for _, call := range [][2]string{{"GET", path}, {"POST", path + "/commit"}, {"DELETE", path}, {"GET", "/stock/" + url.PathEscape(id)}} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(call[0], call[1], nil))
			// 301 and 307: the mux cleans paths with "." or "//" in them by redirecting.
			require.True(t, allowed[rec.Code] || rec.Code == 301 || rec.Code == 307 || rec.Code == 405, "%s %q answered %d: %s", call[0], call[1], rec.Code, rec.Body)
		}
		for _, sku := range []string{"tee", "mug"} {
			n, err := inv.Available(ctx, sku)
			require.NoError(t, err)
			require.GreaterOrEqual(t, n, int64(0))
		}
	})
}

// The features a strategy may offer, on memory, which offers them all.
func TestLimitsPartialCartsExtendAndLevels(t *testing.T) {
	a := openTestApp(t, config{strategy: "memory"})
	require.NoError(t, inventory.SetStockWith(t.Context(), a.inv, "tee", 4, inventory.StockOptions{Limit: 2, Backorder: 1}))
	c := startAPI(t, a, map[string]int64{"mug": 3})
	ann := http.Header{buyerHeader: {"ann"}}

	t.Run("LimitPerBuyer", func(t *testing.T) {
		tok := c.token()
		r := c.doWith(ann, "POST", "/reservations", cart(tok, "tee", 2))
		require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
		r = c.doWith(ann, "POST", "/reservations", cart(c.token(), "tee", 1))
		require.Equal(t, http.StatusConflict, r.Status, "%v", r.Body)
		assert.Equal(t, "limit_exceeded", r.str("error"))
		assert.Equal(t, "tee", r.str("sku"))
		assert.Equal(t, int64(2), r.num("limit"))
		assert.Equal(t, int64(2), r.num("had"))
		r = c.do("POST", "/reservations", cart(c.token(), "tee", 1))
		require.Equal(t, http.StatusConflict, r.Status, "%v", r.Body)
		assert.Equal(t, "limit_exceeded", r.str("error"), "a cart without a buyer")
		r = c.doWith(http.Header{buyerHeader: {"bob"}}, "POST", "/reservations", cart(c.token(), "tee", 1))
		require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)

		r = c.do("GET", "/stock/tee/levels", nil)
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
		assert.Equal(t, map[string]any{"sku": "tee", "available": float64(2), "held": float64(3), "sold": float64(0), "backordered": float64(0)}, r.Body)
		require.Equal(t, http.StatusOK, c.do("POST", "/reservations/"+tok+"/commit", nil).Status)
		r = c.do("GET", "/stock/tee/levels", nil)
		assert.Equal(t, map[string]any{"sku": "tee", "available": float64(2), "held": float64(1), "sold": float64(2), "backordered": float64(0)}, r.Body)
	})
	t.Run("PartialCart", func(t *testing.T) {
		tok := c.token()
		body := map[string]any{"token": tok, "partial": true, "lines": []map[string]any{{"sku": "mug", "qty": 5, "min": 2}}}
		r := c.do("POST", "/reservations", body)
		require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
		assert.Equal(t, []any{map[string]any{"sku": "mug", "qty": float64(3)}}, r.Body["lines"])
		assert.Equal(t, true, r.Body["partial"])
		r = c.do("POST", "/reservations", map[string]any{"token": c.token(), "lines": []map[string]any{{"sku": "mug", "qty": 1, "min": 1}}})
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "a min without partial: %v", r.Body)
		assert.Equal(t, "Lines[0].Min", r.str("field"))
		require.Equal(t, http.StatusOK, c.do("DELETE", "/reservations/"+tok, nil).Status)
	})
	t.Run("Extend", func(t *testing.T) {
		tok := c.token()
		r := c.do("POST", "/reservations", map[string]any{"token": tok, "ttl": "1m", "lines": []map[string]any{{"sku": "mug", "qty": 1}}})
		require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
		r = c.do("POST", "/reservations/"+tok+"/extend", map[string]any{"ttl": "30m"})
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
		exp, err := time.Parse(time.RFC3339Nano, r.str("expires_at"))
		require.NoError(t, err)
		assert.WithinDuration(t, time.Now().Add(30*time.Minute), exp, time.Minute)
		for _, ttl := range []string{"0s", "-1m", "2h", "soon"} {
			r = c.do("POST", "/reservations/"+tok+"/extend", map[string]any{"ttl": ttl})
			assert.Equal(t, http.StatusUnprocessableEntity, r.Status, "ttl %s: %v", ttl, r.Body)
			assert.Equal(t, "ttl", r.str("field"), "ttl %s", ttl)
		}
		r = c.do("POST", "/reservations/"+c.token()+"/extend", map[string]any{"ttl": "30m"})
		assert.Equal(t, http.StatusNotFound, r.Status, "%v", r.Body)
		require.Equal(t, http.StatusOK, c.do("POST", "/reservations/"+tok+"/commit", nil).Status)
		r = c.do("POST", "/reservations/"+tok+"/extend", map[string]any{"ttl": "30m"})
		assert.Equal(t, http.StatusConflict, r.Status, "%v", r.Body)
		assert.Equal(t, "not_held", r.str("error"))
		assert.Equal(t, "committed", r.str("state"))
	})
}
