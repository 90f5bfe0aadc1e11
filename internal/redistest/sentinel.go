package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory/internal/faultproxy"
)

// MasterName is the name the Sentinels of StartSentinel monitor.
const MasterName = "inventory"

// Sentinel is a primary, one replica and three Sentinels (quorum two) of
// one test, all on free loopback ports, keeping nothing on disk; the
// replica reaches the primary through a fault proxy (Link). Failover is
// quick: a primary that does not answer for a second is down.
type Sentinel struct {
	t       testing.TB
	Primary *Server
	Replica *Server
	// Link carries the replication stream from the primary to the replica,
	// so that a test can make it lag (Hold) or cut it.
	Link      *faultproxy.Proxy
	sentinels []*Server
}

// StartSentinel starts the primary, its replica and three Sentinels, waits
// until the replica is in sync and every Sentinel knows the replica and the
// other two Sentinels and names the primary as master, and registers the
// shutdown of every process with t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t, Primary: Start(t, nil)}
	link, err := faultproxy.New(s.Primary.Addr())
	if err != nil {
		t.Fatalf("redistest: start the replication link: %v", err)
	}
	t.Cleanup(func() { _ = link.Close() })
	s.Link = link
	s.Replica = Start(t, &Options{ReplicaOf: link.Addr()})
	for range 3 {
		s.sentinels = append(s.sentinels, startSentinel(t, s.Primary.Addr()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Replica.Client(nil)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: the replica never synced: %v %s", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, sn := range s.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		for {
			replicas, err1 := sc.Replicas(ctx, MasterName).Result()
			peers, err2 := sc.Sentinels(ctx, MasterName).Result()
			if err1 == nil && err2 == nil && len(replicas) == 1 && len(peers) == 2 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("redistest: sentinel %s never saw the replica and its peers: %v %v", sn.Addr(), err1, err2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = sc.Close()
	}
	if _, err := s.WaitMaster(ctx, s.Primary.Addr()); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// SentinelAddrs returns the host:port of every Sentinel.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		out[i] = sn.Addr()
	}
	return out
}

// FailoverClient returns a client that finds the master through the
// Sentinels and follows a failover, closed when the test ends. opt, if not
// nil, is copied and its MasterName and SentinelAddrs replaced.
func (s *Sentinel) FailoverClient(opt *redis.FailoverOptions) *redis.Client {
	o := &redis.FailoverOptions{}
	if opt != nil {
		c := *opt
		o = &c
	}
	o.MasterName, o.SentinelAddrs = MasterName, s.SentinelAddrs()
	c := redis.NewFailoverClient(o)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitMaster waits until every Sentinel names want (a host:port) as the
// master, or, with want empty, until they all name one master other than
// the first primary, and returns it.
func (s *Sentinel) WaitMaster(ctx context.Context, want string) (string, error) {
	for {
		agreed := ""
		for i, sn := range s.sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
			addr, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
			_ = sc.Close()
			got := ""
			if err == nil && len(addr) == 2 {
				got = net.JoinHostPort(addr[0], addr[1])
			}
			if i == 0 {
				agreed = got
			} else if got != agreed {
				agreed = ""
			}
			if agreed == "" {
				break
			}
		}
		if agreed != "" && (agreed == want || (want == "" && agreed != s.Primary.Addr())) {
			return agreed, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the sentinels did not agree on master %q: %w", want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startSentinel starts a Sentinel monitoring the primary at addr.
func startSentinel(t testing.TB, primary string) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary)
	s := Start(t, &Options{sentinel: fmt.Sprintf(
		"sentinel monitor %[1]s %[2]s %[3]s 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 10000\n"+
			"sentinel parallel-syncs %[1]s 1\n", MasterName, host, port)})
	return s
}

// sentinelCommand returns the command that runs a Sentinel on port with its
// monitoring lines, from a config file in dir (Sentinel rewrites it).
func sentinelCommand(bin, dir string, port int, conf string) (*exec.Cmd, error) {
	path := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
	body := "port " + strconv.Itoa(port) + "\nbind 127.0.0.1\ndaemonize no\nloglevel warning\ndir " + dir + "\n" + conf
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return nil, err
	}
	return exec.Command(bin, path, "--sentinel"), nil
}
