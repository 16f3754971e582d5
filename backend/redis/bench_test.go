package redis

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

// The benchmarks run against a local redis-server over loopback, one
// goroutine at a time: they measure a round trip plus the script, which is
// what one request pays. Run side by side:
//
//	go test -run '^$' -bench . ./backend/redis/

var benchKey = bucket.Key{Namespace: "default", Provider: "openai", Account: bucket.AccountID("sk-bench"), Model: "gpt-4o"}

var benchLimits = bucket.Limits{bucket.Requests: 1 << 40, bucket.Tokens: 1 << 50}

// BenchmarkReserveSettle is one request's two backend calls: reserve the
// estimate, then settle the actual usage.
func BenchmarkReserveSettle(b *testing.B) {
	s := redistest.StartServer(b)
	be := newBackend(b, Options{Addrs: []string{s.Addr}})
	ctx := context.Background()
	cost, used := bucket.Cost(1, 500, 1000), bucket.Cost(1, 500, 200)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := strconv.Itoa(i)
		i++
		if _, err := be.Reserve(ctx, benchKey, backend.ReserveRequest{ID: id, Cost: cost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
		if _, err := be.Settle(ctx, benchKey, backend.SettleRequest{ID: id, Actual: used}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReserve is the admission call alone, comparable one for one with
// the fixed-window baseline below.
func BenchmarkReserve(b *testing.B) {
	s := redistest.StartServer(b)
	be := newBackend(b, Options{Addrs: []string{s.Addr}})
	ctx := context.Background()
	cost := bucket.Cost(1, 500, 1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := strconv.Itoa(i)
		i++
		if _, err := be.Reserve(ctx, benchKey, backend.ReserveRequest{ID: id, Cost: cost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFixedWindowIncrExpire is the baseline: the static fixed-window
// check of envoyproxy/ratelimit, a pipelined INCRBY and EXPIRE on a key of
// the current window, one round trip per check.
func BenchmarkFixedWindowIncrExpire(b *testing.B) {
	s := redistest.StartServer(b)
	c := s.Client()
	ctx := context.Background()
	const limit = 1 << 40
	b.ReportAllocs()
	for b.Loop() {
		window := time.Now().Unix() / 60
		key := "ratelimit_openai_" + strconv.FormatInt(window*60, 10)
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

// BenchmarkReserveLatency reports the distribution of one reserve round trip
// (p50, p99 in microseconds) on loopback.
func BenchmarkReserveLatency(b *testing.B) {
	s := redistest.StartServer(b)
	be := newBackend(b, Options{Addrs: []string{s.Addr}})
	ctx := context.Background()
	cost, used := bucket.Cost(1, 500, 1000), bucket.Cost(1, 500, 200)
	lat := make([]time.Duration, 0, 1<<16)
	i := 0
	for b.Loop() {
		id := strconv.Itoa(i)
		i++
		start := time.Now()
		if _, err := be.Reserve(ctx, benchKey, backend.ReserveRequest{ID: id, Cost: cost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		if _, err := be.Settle(ctx, benchKey, backend.SettleRequest{ID: id, Actual: used}); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkDecisions measures admission decisions per second (a reserve and
// its settle) with 1 and 3 replicas (separate clients) on one Redis, each
// replica with 8 requests in flight, over 16 buckets.
func BenchmarkDecisions(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			s := redistest.StartServer(b)
			bes := make([]*Backend, replicas)
			for i := range bes {
				bes[i] = newBackend(b, Options{Addrs: []string{s.Addr}})
			}
			ctx := context.Background()
			cost, used := bucket.Cost(1, 500, 1000), bucket.Cost(1, 500, 200)
			var seq atomic.Int64
			b.SetParallelism(8 * replicas / max(runtime.GOMAXPROCS(0), 1))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				n := seq.Add(1)
				be := bes[n%int64(replicas)]
				k := benchKey
				k.Model = "m" + strconv.FormatInt(n%16, 10)
				for i := 0; pb.Next(); i++ {
					id := strconv.FormatInt(n, 10) + "-" + strconv.Itoa(i)
					if _, err := be.Reserve(ctx, k, backend.ReserveRequest{ID: id, Cost: cost, Defaults: benchLimits, TTL: time.Minute}); err != nil {
						b.Error(err)
						return
					}
					if _, err := be.Settle(ctx, k, backend.SettleRequest{ID: id, Actual: used}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
		})
	}
}
