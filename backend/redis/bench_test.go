package redis

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

// The benchmarks run against a local redis-server over loopback: they
// measure a round trip plus the script, which is what one request pays.
//
//	go test -run '^$' -bench . -benchmem ./backend/redis/

var benchKey = bucket.Key{Namespace: "default", Provider: "openai", Account: bucket.AccountID("sk-bench"), Model: "gpt-4o"}

var benchLimits = bucket.Limits{bucket.Requests: 1 << 40, bucket.Tokens: 1 << 50}

var benchCost, benchUsed = bucket.Cost(1, 500, 1000), bucket.Cost(1, 500, 200)

// BenchmarkRedis runs every Redis benchmark against one redis-server, so
// that the fixed-window baseline and arl's calls are compared on the same
// server in the same run. Each sub-benchmark run writes keys of its own.
func BenchmarkRedis(b *testing.B) {
	s := redistest.StartServer(b)
	b.Run("FixedWindowIncrExpire", func(b *testing.B) { benchFixedWindow(b, s) })
	b.Run("Reserve", func(b *testing.B) { benchReserve(b, s, false) })
	b.Run("ReserveSettle", func(b *testing.B) { benchReserve(b, s, true) })
	b.Run("ReserveLatency", func(b *testing.B) { benchReserveLatency(b, s) })
	for _, replicas := range []int{1, 3} {
		b.Run("Decisions/replicas="+strconv.Itoa(replicas), func(b *testing.B) { benchDecisions(b, s, replicas) })
	}
}

// benchBackend connects a backend to s with a key prefix no other run uses.
func benchBackend(b *testing.B, s *redistest.Server) *Backend {
	return newBackend(b, Options{Addrs: []string{s.Addr}, KeyPrefix: uniquePrefix()})
}

// benchFixedWindow is the baseline: the static fixed-window check of
// envoyproxy/ratelimit, a pipelined INCRBY and EXPIRE on a key of the
// current window, one round trip per check.
func benchFixedWindow(b *testing.B, s *redistest.Server) {
	c := s.Client()
	ctx := context.Background()
	prefix := uniquePrefix() + "_openai_"
	const limit = 1 << 40
	b.ReportAllocs()
	for b.Loop() {
		window := time.Now().Unix() / 60
		key := prefix + strconv.FormatInt(window*60, 10)
		pipe := c.Pipeline()
		incr := pipe.IncrBy(ctx, key, 1)
		pipe.Expire(ctx, key, time.Minute)
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		if incr.Val() > limit {
			b.Fatal("over the limit")
		}
	}
}

// benchReserve is the admission call alone, comparable one for one with the
// baseline, or with settle a request's two backend calls: reserve the
// estimate, then settle the actual usage.
func benchReserve(b *testing.B, s *redistest.Server, settle bool) {
	be := benchBackend(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := strconv.Itoa(i)
		i++
		if _, err := be.Reserve(ctx, benchKey, backend.ReserveRequest{ID: id, Cost: benchCost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
		if !settle {
			continue
		}
		if _, err := be.Settle(ctx, benchKey, backend.SettleRequest{ID: id, Actual: benchUsed}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchReserveLatency reports the distribution of one reserve round trip
// (p50, p99 in microseconds) on loopback.
func benchReserveLatency(b *testing.B, s *redistest.Server) {
	be := benchBackend(b, s)
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<16)
	i := 0
	for b.Loop() {
		id := strconv.Itoa(i)
		i++
		start := time.Now()
		if _, err := be.Reserve(ctx, benchKey, backend.ReserveRequest{ID: id, Cost: benchCost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		if _, err := be.Settle(ctx, benchKey, backend.SettleRequest{ID: id, Actual: benchUsed}); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// inFlightPerReplica is how many requests each replica of benchDecisions
// keeps in flight.
const inFlightPerReplica = 8

// benchDecisions measures admission decisions per second (a reserve and its
// settle) with replicas backends (separate clients, as separate processes
// have) on one Redis, over 16 buckets. A fixed pool of inFlightPerReplica
// goroutines per replica shares the b.N decisions, so that exactly that many
// requests are in flight whatever GOMAXPROCS is.
func benchDecisions(b *testing.B, s *redistest.Server, replicas int) {
	bes := make([]*Backend, replicas)
	prefix := uniquePrefix()
	for i := range bes {
		bes[i] = newBackend(b, Options{Addrs: []string{s.Addr}, KeyPrefix: prefix})
	}
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := range inFlightPerReplica * replicas {
		be := bes[g%replicas]
		k := benchKey
		k.Model = "m" + strconv.Itoa(g%16)
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				id := strconv.FormatInt(n, 10)
				if _, err := be.Reserve(ctx, k, backend.ReserveRequest{ID: id, Cost: benchCost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
					b.Error(err)
					return
				}
				if _, err := be.Settle(ctx, k, backend.SettleRequest{ID: id, Actual: benchUsed}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
