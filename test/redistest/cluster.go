package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// clusterTimeout bounds cluster creation and failover waits.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of redis-server processes on loopback ports.
type Cluster struct {
	// Addrs are the masters' addresses at creation: a seed list for clients.
	Addrs []string
	// Masters are the master nodes at creation, in slot order.
	Masters []*Server
	// Nodes are all the nodes, replicas included.
	Nodes []*Server

	t    testing.TB
	ids  map[*Server]string // node IDs
	dead map[*Server]bool   // nodes killed by KillMaster
}

// StartCluster starts masters (at least 3) cluster nodes and replicasPerMaster
// replicas of each, joins them with redis-cli --cluster create, and returns
// when every node reports the cluster healthy (state ok, every slot covered,
// every replica in sync). Every node is killed when the test ends.
func StartCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	RequireRedis(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not on PATH: install it (Debian package redis-tools) to run this test")
	}
	if masters < 3 || replicasPerMaster < 0 {
		t.Fatalf("redistest: a cluster needs at least 3 masters and no negative replica count; got %d, %d", masters, replicasPerMaster)
	}
	c := &Cluster{t: t, ids: make(map[*Server]string), dead: make(map[*Server]bool)}
	n := masters * (1 + replicasPerMaster)
	addrs := make([]string, n)
	for i := range n {
		s := startServer(t, true)
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", fmt.Sprint(replicasPerMaster), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}

	for _, s := range c.Nodes {
		id, err := s.admin().ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("redistest: cluster myid %s: %v", s.Addr, err)
		}
		c.ids[s] = id
	}
	if err := c.waitHealthy(ctx, n); err != nil {
		t.Fatalf("redistest: cluster not ready: %v", err)
	}
	for _, s := range c.Nodes {
		role, err := s.admin().Do(ctx, "ROLE").Slice()
		if err != nil || len(role) == 0 {
			t.Fatalf("redistest: role of %s: %v", s.Addr, err)
		}
		if role[0] == "master" {
			c.Masters = append(c.Masters, s)
			c.Addrs = append(c.Addrs, s.Addr)
		}
	}
	if len(c.Masters) != masters {
		t.Fatalf("redistest: cluster has %d masters, want %d", len(c.Masters), masters)
	}
	return c
}

// Client returns a cluster client seeded with the masters, closed when the
// test ends.
func (c *Cluster) Client() *goredis.ClusterClient {
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs, ContextTimeoutEnabled: true})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		s.Stop()
	}
}

// KillMaster kills the i-th master (SIGKILL), as a crash would. With
// replicas, WaitFailover then waits for a replica to take over its slots.
func (c *Cluster) KillMaster(i int) {
	c.t.Helper()
	if i < 0 || i >= len(c.Masters) {
		c.t.Fatalf("redistest: no master %d of %d", i, len(c.Masters))
	}
	c.Masters[i].Kill()
	c.dead[c.Masters[i]] = true
}

// WaitFailover waits until the surviving nodes agree that every killed master
// has failed and report the cluster healthy again: its slots are served by a
// promoted replica. It fails the test after 30 s.
func (c *Cluster) WaitFailover() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.waitHealthy(ctx, len(c.Nodes)); err != nil {
		c.t.Fatalf("redistest: no failover: %v", err)
	}
}

// waitHealthy polls every live node until each reports cluster_state:ok with
// all slots assigned and known nodes of the cluster, marks every killed node
// as failed without slots, and has its replication link up when a replica.
func (c *Cluster) waitHealthy(ctx context.Context, known int) error {
	var last error
	for {
		if last = c.healthy(ctx, known); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(pollInterval * 5):
		}
	}
}

func (c *Cluster) healthy(ctx context.Context, known int) error {
	for _, s := range c.Nodes {
		if c.dead[s] {
			continue
		}
		nc := s.admin()
		info, err := nc.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: cluster info: %w", s.Addr, err)
		}
		for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384", fmt.Sprintf("cluster_known_nodes:%d", known)} {
			if !strings.Contains(info, want) {
				return fmt.Errorf("%s: no %s in cluster info", s.Addr, want)
			}
		}
		nodes, err := nc.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: cluster nodes: %w", s.Addr, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			flags := strings.Split(f[2], ",")
			failed := slices.Contains(flags, "fail")
			if failed && len(f) > 8 {
				return fmt.Errorf("%s: failed node %s still owns slots", s.Addr, f[0])
			}
			for d := range c.dead {
				if f[0] == c.ids[d] && !failed {
					return fmt.Errorf("%s: killed node %s not yet marked failed", s.Addr, d.Addr)
				}
			}
		}
		role, err := nc.Do(ctx, "ROLE").Slice()
		if err != nil || len(role) == 0 {
			return fmt.Errorf("%s: role: %v", s.Addr, err)
		}
		if role[0] == "slave" && (len(role) < 4 || role[3] != "connected") {
			return fmt.Errorf("%s: replica not in sync: %v", s.Addr, role)
		}
	}
	return nil
}
