// Package redistest starts throwaway redis-server processes for tests that
// must stop, restart or reconfigure Redis, which they may never do to the
// shared server other tests use.
//
// Each Server listens on a free loopback port, keeps nothing on disk, and is
// killed by its process id when the test ends. The redis-server binary comes
// from PATH; when it is missing the test is skipped, or failed under
// INVENTORY_TEST_REQUIRE_SERVICES=1.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory/internal/testsvc"
)

// Options configures Start. A nil *Options takes every default.
type Options struct {
	// Cluster starts the server in cluster mode as a one-node cluster that
	// owns every slot, so scripts touching keys of several slots fail with
	// CROSSSLOT as they would on a real cluster. Default: false.
	Cluster bool
	// ReplicaOf, a host:port, starts the server as a replica of that
	// server. Default: "", a primary.
	ReplicaOf string
	// AppendOnly keeps an append-only file with appendfsync always, so that
	// Restart (a SIGKILL) comes back with every write the server answered.
	// Default: false, nothing kept.
	AppendOnly bool

	// sentinel, when set, runs a Sentinel with these monitoring lines
	// instead of a server (see StartSentinel).
	sentinel string
	// clusterNode starts the server in cluster mode owning no slot, to
	// join a cluster (see StartCluster).
	clusterNode bool
}

// Server is a redis-server process of one test.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	port     int
	cluster  bool
	node     bool // a cluster node without slots
	busPort  int
	replica  string
	aof      bool
	sentinel string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been reaped
}

// Start starts a redis-server on a free loopback port and registers its
// shutdown with t.Cleanup.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := fmt.Sprintf("redis-server not found in PATH: %v", err)
		if os.Getenv(testsvc.RequireEnv) == "1" {
			t.Fatalf("%s; %s=1 makes this a failure", msg, testsvc.RequireEnv)
		}
		t.Skip(msg)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	if opts != nil {
		s.cluster = opts.Cluster
		s.replica = opts.ReplicaOf
		s.aof = opts.AppendOnly
		s.sentinel = opts.sentinel
		s.node = opts.clusterNode
	}
	t.Cleanup(s.Stop)
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.port = port
		if s.node {
			if s.busPort, err = freePort(); err != nil {
				t.Fatalf("redistest: find a free port: %v", err)
			}
		}
		if last = s.start(); last == nil {
			return s
		}
		s.Stop()
	}
	t.Fatalf("redistest: start redis-server: %v", last)
	return nil
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.port }

// Stop kills the server process and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// Restart stops the server and starts it again on the same port: empty,
// or with Options.AppendOnly from its append-only file.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for range 50 { // the port may linger for a moment after the kill
		if err = s.start(); err == nil {
			return
		}
		s.Stop()
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server on port %d: %v", s.port, err)
}

// RestartReplicaOf stops the server and starts it again on the same port,
// empty, as a replica of the server at addr (a host:port).
func (s *Server) RestartReplicaOf(addr string) {
	s.t.Helper()
	s.mu.Lock()
	s.replica = addr
	s.mu.Unlock()
	s.Restart()
}

// Client returns a client of the server, closed when the test ends. opt, if
// not nil, is copied and its Addr replaced.
func (s *Server) Client(opt *redis.Options) *redis.Client {
	o := &redis.Options{}
	if opt != nil {
		c := *opt
		o = &c
	}
	o.Addr = s.Addr()
	c := redis.NewClient(o)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// ClusterClient returns a cluster client of a server started with
// Options.Cluster, closed when the test ends.
func (s *Server) ClusterClient() *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{s.Addr()}})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--loglevel", "warning",
	}
	if s.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if s.replica != "" {
		host, port, _ := net.SplitHostPort(s.replica)
		args = append(args, "--replicaof", host, port)
	}
	if s.node {
		args = append(args, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(s.busPort),
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"), "--cluster-node-timeout", "5000")
	}
	if s.cluster {
		// A fresh config file each start: the node forgets its slots, as an
		// empty server would.
		conf := filepath.Join(s.dir, fmt.Sprintf("nodes-%d.conf", time.Now().UnixNano()))
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", conf)
	}
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, args...)
	if s.sentinel != "" {
		if cmd, err = sentinelCommand(s.bin, s.dir, s.port, s.sentinel); err != nil {
			return err
		}
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-exited:
		case <-time.After(20 * time.Millisecond):
			continue
		}
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("redis-server on port %d did not answer: %v; output: %s", s.port, err, out)
	}
	if s.cluster {
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
			return fmt.Errorf("cluster addslotsrange: %w", err)
		}
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				return errors.New("cluster state never became ok")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
