package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/backendtest"
	"github.com/adaptive-rate-limiter/arl/backend/cache"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/backend/redis"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

var policies = []cache.Policy{cache.WriteThrough, cache.WriteBack, cache.WriteAround}

// conform runs the backend conformance suite through a cache of each policy
// in front of the backends shared makes.
func conform(t *testing.T, shared func(*testing.T) backend.Backend) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				c, err := cache.New(shared(t), cache.Options{Policy: p})
				if err != nil {
					t.Fatal(err)
				}
				return c
			})
		})
	}
}

func TestConformanceMemory(t *testing.T) {
	conform(t, func(*testing.T) backend.Backend { return memory.New(memory.Options{}) })
}

func TestConformanceRedis(t *testing.T) {
	s := redistest.StartServer(t)
	conform(t, func(t *testing.T) backend.Backend {
		b, err := redis.New(context.Background(), redis.Options{Addrs: []string{s.Addr}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
