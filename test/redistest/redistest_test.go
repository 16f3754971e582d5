package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestServerLifecycle(t *testing.T) {
	s := StartServer(t)
	if s.Port == 6379 {
		t.Fatal("the machine's own Redis port was used")
	}
	c := s.Client()
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return c.Ping(ctx).Err()
	}
	if err := ping(time.Second); err != nil {
		t.Fatalf("ping a started server: %v", err)
	}
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause()
	if err := ping(100 * time.Millisecond); err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if err := ping(time.Second); err != nil {
		t.Fatalf("ping after resume: %v", err)
	}

	s.Kill()
	if err := ping(time.Second); err == nil {
		t.Fatal("a killed server answered")
	}
	s.Restart()
	if err := ping(time.Second); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	if n, err := c.Exists(context.Background(), "k").Result(); err != nil || n != 0 {
		t.Fatalf("data survived a restart without persistence: n=%d err=%v", n, err)
	}
	s.Stop()
	s.Stop() // stopping twice is harmless
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3, 0)
	t.Logf("cluster of %d masters ready in %v", len(c.Masters), time.Since(start))
	if len(c.Addrs) != 3 || len(c.Nodes) != 3 {
		t.Fatalf("addrs %v, nodes %d", c.Addrs, len(c.Nodes))
	}
	cc := c.Client()
	ctx := context.Background()
	slots := make(map[int64]bool)
	for i := range 50 {
		k := fmt.Sprintf("key-%d", i)
		if err := cc.Set(ctx, k, i, time.Minute).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[slot*3/16384] = true
	}
	if len(slots) != 3 {
		t.Fatalf("keys reached %d thirds of the slot space, want 3", len(slots))
	}
}
