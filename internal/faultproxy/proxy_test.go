package faultproxy_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory/internal/faultproxy"
	"github.com/oversell/inventory/internal/leakcheck"
)

// echoServer echoes what it reads and records every byte it received.
type echoServer struct {
	ln   net.Listener
	mu   sync.Mutex
	got  bytes.Buffer
	wg   sync.WaitGroup
	done chan struct{}
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &echoServer{ln: ln, done: make(chan struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				go func() { <-s.done; c.Close() }()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.mu.Lock()
						s.got.Write(buf[:n])
						s.mu.Unlock()
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		close(s.done)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back, or the error that
// stopped it.
func roundTrip(c net.Conn, msg string) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

// eventually waits until cond holds or a few seconds pass.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	assert.Eventually(t, cond, 3*time.Second, 5*time.Millisecond, msg)
}

func TestForwardsBothWays(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	c := dial(t, p)
	for _, msg := range []string{"hello", "world", string(bytes.Repeat([]byte("x"), 100_000))} {
		got, err := roundTrip(c, msg)
		require.NoError(t, err)
		assert.Equal(t, msg, got)
	}
	assert.Equal(t, 1, p.Live())
}

func TestDropReplyForwardsTheRequestAndLosesTheReply(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	p.Arm(faultproxy.Rule{Pattern: []byte("COMMIT"), Mode: faultproxy.DropReply, Times: 1})
	c := dial(t, p)
	got, err := roundTrip(c, "before")
	require.NoError(t, err)
	assert.Equal(t, "before", got)

	got, err = roundTrip(c, "please COMMIT now")
	assert.Error(t, err, "the connection is cut")
	assert.Empty(t, got, "no byte of the reply arrives")
	eventually(t, func() bool { return srv.received() == "beforeplease COMMIT now" }, "the server got the request")
	assert.Equal(t, 1, p.Fired())
	eventually(t, func() bool { return p.Live() == 0 }, "the cut connection is gone")
}

func TestDropRequestNeverReachesTheServer(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	p.Arm(faultproxy.Rule{Pattern: []byte("COMMIT"), Mode: faultproxy.DropRequest, Times: 1})
	c := dial(t, p)
	_, err := roundTrip(c, "please COMMIT now")
	assert.Error(t, err)
	time.Sleep(50 * time.Millisecond)
	assert.Empty(t, srv.received())
	assert.Equal(t, 1, p.Fired())
}

func TestRuleFiresItsTimesThenDisarms(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	p.Arm(faultproxy.Rule{Pattern: []byte("X"), Mode: faultproxy.DropRequest, Times: 2})
	for range 2 {
		_, err := roundTrip(dial(t, p), "aXb")
		assert.Error(t, err)
	}
	got, err := roundTrip(dial(t, p), "aXb")
	require.NoError(t, err, "the third match passes")
	assert.Equal(t, "aXb", got)
	assert.Equal(t, 2, p.Fired())
}

func TestRuleWithoutTimesFiresUntilDisarmed(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	p.Arm(faultproxy.Rule{Pattern: []byte("X"), Mode: faultproxy.DropRequest})
	for range 3 {
		_, err := roundTrip(dial(t, p), "X")
		assert.Error(t, err)
	}
	p.Disarm()
	got, err := roundTrip(dial(t, p), "X")
	require.NoError(t, err)
	assert.Equal(t, "X", got)
	assert.Equal(t, 3, p.Fired())
}

func TestPatternSplitAcrossWritesIsFound(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	p.Arm(faultproxy.Rule{Pattern: []byte("SPLITPATTERN"), Mode: faultproxy.DropReply, Times: 1})
	c := dial(t, p)
	got, err := roundTrip(c, "xxSPLIT")
	require.NoError(t, err)
	assert.Equal(t, "xxSPLIT", got)
	_, err = roundTrip(c, "PATTERNyy")
	assert.Error(t, err)
	assert.Equal(t, 1, p.Fired())
}

func TestCutAllCutsEveryLiveConnection(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	conns := []net.Conn{dial(t, p), dial(t, p), dial(t, p)}
	for _, c := range conns {
		_, err := roundTrip(c, "hi")
		require.NoError(t, err)
	}
	assert.Equal(t, 3, p.CutAll())
	for _, c := range conns {
		_, err := roundTrip(c, "hi")
		assert.Error(t, err)
	}
	got, err := roundTrip(dial(t, p), "again")
	require.NoError(t, err, "new connections still work")
	assert.Equal(t, "again", got)
}

func TestRefuseForClosesNewConnectionsForAWhile(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.ln.Addr().String())
	p.RefuseFor(200 * time.Millisecond)
	_, err := roundTrip(dial(t, p), "hi")
	assert.Error(t, err)
	time.Sleep(250 * time.Millisecond)
	got, err := roundTrip(dial(t, p), "hi")
	require.NoError(t, err)
	assert.Equal(t, "hi", got)
}

func TestCloseStopsEveryGoroutine(t *testing.T) {
	srv := newEchoServer(t)
	scope := leakcheck.New()
	var p *faultproxy.Proxy
	var err error
	scope.Do(t.Context(), func(context.Context) { p, err = faultproxy.New(srv.ln.Addr().String()) })
	require.NoError(t, err)
	for range 4 {
		c, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		defer c.Close()
		_, err = roundTrip(c, "hi")
		require.NoError(t, err)
	}
	n, _ := scope.Leaked()
	assert.Positive(t, n, "the proxy runs goroutines while open")
	require.NoError(t, p.Close())
	_, err = net.Dial("tcp", p.Addr())
	assert.Error(t, err, "no longer listening")
	scope.Check(t, 5*time.Second)
}

func TestPostgresSimpleQueryIsTheWireMessage(t *testing.T) {
	assert.Equal(t, []byte("Q\x00\x00\x00\x0bcommit\x00"), faultproxy.PostgresSimpleQuery("commit"))
}
