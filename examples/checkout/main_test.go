package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/testsvc"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env returns a getenv reading vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startRun runs the command with args and env until the test ends, and
// returns a client of it and the channel its result arrives on.
func startRun(t *testing.T, ctx context.Context, args []string, vars map[string]string, logw io.Writer) (*api, <-chan error) {
	t.Helper()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), env(vars), logw, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		return &api{t: t, base: "http://" + a, http: &http.Client{Timeout: 10 * time.Second}}, done
	case err := <-done:
		t.Fatalf("run ended before listening: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not start listening")
	}
	return nil, nil
}

func TestRunServesWithTheSweeperUntilCanceledThenShutsDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"memory", func(*testing.T) []string { return nil }},
		{"sqlcond", func(t *testing.T) []string {
			return []string{"-strategy", "sqlcond", "-postgres", testsvc.PostgresURL(t), "-schema", testsvc.Schema(t)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var logs syncBuffer
			args := append(tc.args(t), "-stock", "tee=2,mug=1", "-sweep", "10ms")
			c, done := startRun(t, ctx, args, map[string]string{secretEnv: string(testKey)}, &logs)

			assert.Equal(t, int64(2), c.available("tee"))
			assert.Equal(t, int64(1), c.available("mug"))
			tok := c.token()
			body := cart(tok, "tee", 2)
			body["ttl"] = "1ms"
			require.Equal(t, http.StatusCreated, c.do("POST", "/reservations", body).Status)
			require.Eventually(t, func() bool {
				return c.do("GET", "/reservations/"+tok, nil).str("state") == "expired"
			}, 10*time.Second, 10*time.Millisecond, "the sweeper expires the abandoned hold")
			assert.Equal(t, int64(2), c.available("tee"))

			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Fatal("run did not return after its context ended")
			}
			assert.Contains(t, logs.String(), "shutting down")
			assert.NotContains(t, logs.String(), "level=WARN", "the secret came from the environment")
			_, err := net.DialTimeout("tcp", strings.TrimPrefix(c.base, "http://"), time.Second)
			assert.Error(t, err, "no longer listening")
		})
	}
}

func TestRunWithoutSecretWarnsAndUsesARandomOne(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs syncBuffer
	c, done := startRun(t, ctx, nil, nil, &logs)
	c.token()
	cancel()
	require.NoError(t, <-done)
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), secretEnv)
}

func TestServeFinishesRequestsInFlightThenStopsTheJobs(t *testing.T) {
	entered, finish := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-finish
		w.WriteHeader(http.StatusNoContent)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	jobStopped := make(chan struct{})
	job := func(ctx context.Context) error {
		<-ctx.Done()
		close(jobStopped)
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, srv, ln, discardLogger(), job, nil) }()

	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-entered
	cancel()
	select {
	case err := <-served:
		t.Fatalf("serve returned with a request in flight: %v", err)
	case <-jobStopped:
		t.Fatal("jobs stopped with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(finish)
	assert.Equal(t, http.StatusNoContent, <-answered)
	require.NoError(t, <-served)
	select {
	case <-jobStopped:
	default:
		t.Fatal("serve returned before stopping its jobs")
	}
}

func TestRunRefusesBadConfiguration(t *testing.T) {
	short := map[string]string{secretEnv: "too short"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-strategy", "optimistic"}, nil, `-strategy "optimistic"`},
		{[]string{"-strategy", "token"}, nil, `-strategy "token"`},
		{[]string{"-stock", "tee"}, nil, `"tee" is not sku=units`},
		{[]string{"-stock", "tee=-1"}, nil, "tee=-1"},
		{[]string{"-stock", "tee=1,tee=2"}, nil, "given twice"},
		{[]string{"-sweep", "0s"}, nil, "-sweep"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"-nope"}, nil, "-nope"},
		{nil, short, secretEnv + " is 9 bytes"},
		{nil, map[string]string{previousSecretEnv: string(testKey)}, "the signing secret goes in " + secretEnv},
		{[]string{"-strategy", "sqlcond", "-postgres", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}, nil, "postgres"},
	} {
		var out syncBuffer
		err := run(t.Context(), tc.args, env(tc.env), &out, func(string) { t.Errorf("%v: started listening", tc.args) })
		require.Error(t, err, "%v %v", tc.args, tc.env)
		assert.Contains(t, err.Error()+out.String(), tc.want, "%v %v", tc.args, tc.env)
	}
}

func TestParseConfigReadsRotatedSecretsSigningOneFirst(t *testing.T) {
	prev := strings.Repeat("p", 32)
	cfg, err := parseConfig(nil, env(map[string]string{secretEnv: string(testKey), previousSecretEnv: prev}), io.Discard)
	require.NoError(t, err)
	require.Len(t, cfg.keys, 2)
	assert.Equal(t, testKey, cfg.keys[0])
	assert.Equal(t, []byte(prev), cfg.keys[1])
	assert.Equal(t, "memory", cfg.strategy)
	assert.Equal(t, "127.0.0.1:8080", cfg.addr)
}

func TestParseStock(t *testing.T) {
	got, err := parseStock("tee-red-m=3,mug=0")
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"tee-red-m": 3, "mug": 0}, got)
	got, err = parseStock("")
	require.NoError(t, err)
	assert.Empty(t, got)
	for _, bad := range []string{"=3", "a=", "a=1,", "a=x", "a=1=2", "a=9007199254740993"} {
		_, err := parseStock(bad)
		assert.Error(t, err, bad)
	}
}

func TestThePoolIsSizedForRequestsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{nil, nil, defaultPGConns},
		{nil, map[string]string{pgConnsEnv: "48"}, 48},
		{[]string{"-pg-conns", "12"}, map[string]string{pgConnsEnv: "48"}, 12},
	} {
		cfg, err := parseConfig(tc.args, env(tc.env), io.Discard)
		require.NoError(t, err, "%v %v", tc.args, tc.env)
		assert.Equal(t, tc.want, cfg.pgConns, "%v %v", tc.args, tc.env)
	}
	for _, bad := range []map[string]string{{pgConnsEnv: "0"}, {pgConnsEnv: "many"}} {
		_, err := parseConfig(nil, env(bad), io.Discard)
		assert.ErrorContains(t, err, pgConnsEnv, "%v", bad)
	}
	_, err := parseConfig([]string{"-pg-conns", "0"}, env(nil), io.Discard)
	assert.ErrorContains(t, err, "-pg-conns")

	// The pool opened holds that many connections, not pgxpool's default of
	// one per CPU. Connections open on demand, so this opens one.
	cfg, err := parseConfig([]string{"-strategy", "sqlcond", "-postgres", testsvc.PostgresURL(t), "-schema", testsvc.Schema(t)}, env(nil), io.Discard)
	require.NoError(t, err)
	a := openTestApp(t, cfg)
	require.NotNil(t, a.pool)
	assert.Equal(t, int32(defaultPGConns), a.pool.Config().MaxConns)
}

func TestRunOnABusyPortFailsBeforeChangingTheStock(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	schema := testsvc.Schema(t)
	a := openTestApp(t, config{strategy: "sqlcond", postgresURL: testsvc.PostgresURL(t), schema: schema})
	require.NoError(t, a.inv.SetStock(t.Context(), "tee", 3))

	args := []string{"-addr", busy.Addr().String(), "-strategy", "sqlcond", "-postgres", testsvc.PostgresURL(t), "-schema", schema, "-stock", "tee=50"}
	err = run(t.Context(), args, env(map[string]string{secretEnv: string(testKey)}), io.Discard, func(string) { t.Error("started listening") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), busy.Addr().String())
	n, err := a.inv.Available(t.Context(), "tee")
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "-stock changed the stock of a service that never started")
}
