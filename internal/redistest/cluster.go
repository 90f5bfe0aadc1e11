package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory/internal/testsvc"
)

// ClusterMasters is the number of masters StartCluster starts.
const ClusterMasters = 3

// Cluster is a Redis Cluster of ClusterMasters masters (no replicas) on
// loopback ports, started for one test: every slot is covered, spread over
// the masters by redis-cli --cluster create.
type Cluster struct {
	t     testing.TB
	Nodes []*Server // the masters
}

// clusterReady bounds the wait for a new cluster to agree on its slots.
const clusterReady = 30 * time.Second

// StartCluster starts ClusterMasters redis-server processes in cluster
// mode on free loopback ports, joins them with redis-cli --cluster create
// (which spreads the 16384 slots over them), and waits until every node
// reports cluster_state:ok with every slot assigned and every node known.
// The servers are killed when the test ends; when the test failed, their
// logs go to the test's log. redis-server and redis-cli come from PATH; the
// test is skipped when one is missing, or failed under
// INVENTORY_TEST_REQUIRE_SERVICES=1.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		msg := fmt.Sprintf("redis-cli not found in PATH: %v", err)
		if os.Getenv(testsvc.RequireEnv) == "1" {
			t.Fatalf("%s; %s=1 makes this a failure", msg, testsvc.RequireEnv)
		}
		t.Skip(msg)
	}
	c := &Cluster{t: t}
	for range ClusterMasters {
		c.Nodes = append(c.Nodes, Start(t, &Options{clusterNode: true}))
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.logs()
		}
	})
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterReady)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		c.logs()
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.wait(ctx); err != nil {
		c.logs()
		t.Fatalf("redistest: cluster on %v: %v\nredis-cli said:\n%s", c.Addrs(), err, out)
	}
	return c
}

// Addrs returns the host:port of every master.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a cluster client of the cluster, closed when the test
// ends. opt, if not nil, is copied and its Addrs replaced.
func (c *Cluster) Client(opt *redis.ClusterOptions) *redis.ClusterClient {
	o := &redis.ClusterOptions{}
	if opt != nil {
		cp := *opt
		o = &cp
	}
	o.Addrs = c.Addrs()
	cc := redis.NewClusterClient(o)
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// wait polls every node until it reports the cluster ok, all slots
// assigned and ok, and every master known, or ctx ends.
func (c *Cluster) wait(ctx context.Context) error {
	want := []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384",
		fmt.Sprintf("cluster_known_nodes:%d", ClusterMasters), fmt.Sprintf("cluster_size:%d", ClusterMasters)}
	var last string
	for _, n := range c.Nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		for {
			info, err := rc.ClusterInfo(ctx).Result()
			if err == nil && hasAll(info, want) {
				break
			}
			last = fmt.Sprintf("node %s: %v %s", n.Addr(), err, info)
			select {
			case <-ctx.Done():
				_ = rc.Close()
				return fmt.Errorf("not ready within %s; last: %s", clusterReady, last)
			case <-time.After(50 * time.Millisecond):
			}
		}
		_ = rc.Close()
	}
	return nil
}

func hasAll(info string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(info, w+"\r\n") && !strings.HasSuffix(strings.TrimSpace(info), w) {
			return false
		}
	}
	return true
}

// logs writes every node's log into the test's log.
func (c *Cluster) logs() {
	for _, n := range c.Nodes {
		out, _ := os.ReadFile(filepath.Join(n.dir, "redis.log"))
		c.t.Logf("redis-server %s log:\n%s", n.Addr(), out)
	}
}
