package cache_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/cache"
	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

var (
	t0   = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	keyA = bucket.Key{Namespace: "ns", Provider: "openai", Account: "a", Model: "gpt"}
	keyB = bucket.Key{Namespace: "ns", Provider: "openai", Account: "b", Model: "gpt"}
	keyC = bucket.Key{Namespace: "ns", Provider: "openai", Account: "c", Model: "gpt"}
)

// manual is the flush interval of tests that flush by hand.
const manual = time.Hour

func newCache(t *testing.T, shared backend.Backend, opts cache.Options) *cache.Cache {
	t.Helper()
	c, err := cache.New(shared, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tokens is a routine lesson: the tokens dimension has rem of limit left.
func tokens(at time.Time, limit, rem int64) bucket.Observation {
	o := bucket.Observation{At: at}
	o.Dims[bucket.Tokens] = bucket.DimObservation{Limit: limit, Remaining: rem, HasRemaining: true}
	return o
}

func observe(t *testing.T, b backend.Backend, k bucket.Key, o bucket.Observation, now time.Time) {
	t.Helper()
	if err := b.Observe(context.Background(), k, backend.ObserveRequest{Observation: o, Now: now}); err != nil {
		t.Fatalf("observe %s: %v", k, err)
	}
}

func mustGet(t *testing.T, b backend.Backend, k bucket.Key, now time.Time) bucket.State {
	t.Helper()
	s, ok, err := b.Get(context.Background(), k, now)
	if err != nil || !ok {
		t.Fatalf("get %s: ok=%v err=%v", k, ok, err)
	}
	return s
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestWriteBackMergesLessonsPerBucket(t *testing.T) {
	f := newCounting()
	clk := &clock{now: t0}
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, Clock: clk.Now})
	ref := memory.New(memory.Options{}) // the lessons applied one by one, in order
	ctx := context.Background()
	for _, rem := range []int64{50_000, 45_000, 44_000, 30_000, 29_000} {
		clk.Add(10 * time.Millisecond)
		observe(t, c, keyA, tokens(clk.Now(), 60_000, rem), clk.Now())
		observe(t, ref, keyA, tokens(clk.Now(), 60_000, rem), clk.Now())
	}
	for _, rem := range []int64{500, 400, 300} {
		clk.Add(10 * time.Millisecond)
		observe(t, c, keyB, tokens(clk.Now(), 1000, rem), clk.Now())
		observe(t, ref, keyB, tokens(clk.Now(), 1000, rem), clk.Now())
	}
	if n := f.count("Observe") + f.count("ObserveMany"); n != 0 {
		t.Fatalf("%d writes before the flush, want none", n)
	}

	// The waiting lessons show in reads, although the shared backend has
	// never seen the buckets.
	for _, k := range []bucket.Key{keyA, keyB} {
		got, want := mustGet(t, c, k, clk.Now()), mustGet(t, ref, k, clk.Now())
		if d := got.Dims[bucket.Tokens]; d.Limit != want.Dims[bucket.Tokens].Limit || !near(d.Level, want.Dims[bucket.Tokens].Level) {
			t.Fatalf("%s before the flush: %+v, want %+v", k, d, want.Dims[bucket.Tokens])
		}
	}

	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n, m := f.count("ObserveMany"), f.count("Observe"); n != 1 || m != 0 {
		t.Fatalf("flush made %d ObserveMany and %d Observe calls, want 1 and 0", n, m)
	}
	if got := len(f.batches[0]); got != 2 {
		t.Fatalf("flush sent %d lessons, want one per bucket (2)", got)
	}
	for _, k := range []bucket.Key{keyA, keyB} {
		got, want := mustGet(t, f.mem, k, clk.Now()), mustGet(t, ref, k, clk.Now())
		if d := got.Dims[bucket.Tokens]; d.Limit != want.Dims[bucket.Tokens].Limit || !near(d.Level, want.Dims[bucket.Tokens].Level) || !got.ObservedAt.Equal(want.ObservedAt) {
			t.Fatalf("%s after the flush: %+v, want %+v", k, got, want)
		}
	}
	if err := c.Flush(ctx); err != nil || f.count("ObserveMany") != 1 {
		t.Fatalf("second flush: err %v, %d ObserveMany calls in all, want 1", err, f.count("ObserveMany"))
	}
}

func TestWriteBackUrgentLessonsGoAtOnce(t *testing.T) {
	exhausted := bucket.Observation{}
	exhausted.Dims[bucket.Requests] = bucket.DimObservation{Limit: 100, HasRemaining: true, Remaining: 0, Reset: 20 * time.Second}
	blocked := bucket.Observation{RetryAfter: 30 * time.Second, Reason: "upstream"}
	tests := []struct {
		name    string
		urgent  bucket.Observation
		waiting bool // a routine lesson of the bucket waits already
		calls   []string
		check   func(bucket.State) bool
	}{
		{"retry-after", blocked, false, []string{"Observe"}, func(s bucket.State) bool { return s.BlockedUntil.After(t0) }},
		{"exhausted", exhausted, false, []string{"Observe"}, func(s bucket.State) bool { return s.Dims[bucket.Requests].HoldUntil.After(t0) }},
		{"retry-after behind a waiting lesson", blocked, true, []string{"ObserveMany"}, func(s bucket.State) bool { return s.BlockedUntil.After(t0) }},
		{"exhausted behind a waiting lesson", exhausted, true, []string{"ObserveMany"}, func(s bucket.State) bool { return s.Dims[bucket.Requests].HoldUntil.After(t0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCounting()
			clk := &clock{now: t0}
			c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, Clock: clk.Now})
			if tc.waiting {
				observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
			}
			u := tc.urgent
			u.At = t0.Add(time.Millisecond)
			observe(t, c, keyA, u, t0.Add(time.Millisecond))
			if got := f.calls(); !slices.Equal(got, tc.calls) {
				t.Fatalf("calls %v, want %v", got, tc.calls)
			}
			s := mustGet(t, f.mem, keyA, t0.Add(time.Millisecond))
			if !tc.check(s) {
				t.Fatalf("the shared bucket did not learn the urgent lesson: %+v", s)
			}
			if tc.waiting {
				// The waiting lesson went first, in the same call.
				got := f.received()
				if len(got) != 2 || got[0].Observation.Dims[bucket.Tokens].Remaining != 50_000 || got[1].Observation.RetryAfter != u.RetryAfter {
					t.Fatalf("lessons received %+v, want the waiting one then the urgent one", got)
				}
				if d := s.Dims[bucket.Tokens]; d.Limit != 60_000 || d.Level > 50_001 { // 50000 left, plus 1 ms of refill
					t.Fatalf("the waiting lesson was not applied: %+v", d)
				}
			}
			if err := c.Flush(context.Background()); err != nil || len(f.calls()) != len(tc.calls) {
				t.Fatalf("flush after the urgent lesson: err %v, calls %v", err, f.calls())
			}
		})
	}
}

func TestWriteBackReserveWritesWaitingLessonsFirst(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
	ctx := context.Background()
	// A probe's answer: the bucket learns its request limit.
	var probe bucket.Observation
	probe.At = t0
	probe.Dims[bucket.Requests] = bucket.DimObservation{Limit: 2, Remaining: 1, HasRemaining: true}
	observe(t, c, keyA, probe, t0)
	for i, want := range []bool{true, false} {
		r, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: string(rune('a' + i)), Cost: bucket.Cost(1, 0, 0), TTL: time.Minute, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		if r.Allowed != want {
			t.Fatalf("reservation %d allowed=%v, want %v (%+v)", i, r.Allowed, want, r.Decision)
		}
	}
	if got, want := f.calls(), []string{"Observe", "Reserve", "Reserve"}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestWriteBackSettleCarriesWaitingLessons(t *testing.T) {
	limitChange := tokens(t0.Add(2*time.Millisecond), 120_000, 100_000)
	limitChange.Dims[bucket.Tokens].HasRemaining = false
	tests := []struct {
		name      string
		obs       *bucket.Observation
		calls     []string
		wantLimit int64
		wantBelow float64 // the tokens level must be at most this, plus 2 ms of refill
	}{
		{"no observation of its own", nil, []string{"Reserve", "Settle"}, 60_000, 50_000},
		{"an observation that merges", ptr(tokens(t0.Add(2*time.Millisecond), 60_000, 40_000)), []string{"Reserve", "Settle"}, 60_000, 40_000},
		{"an observation that does not merge", &limitChange, []string{"Reserve", "Observe", "Settle"}, 120_000, 110_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCounting()
			c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
			ctx := context.Background()
			limits := bucket.Limits{bucket.Requests: 100}
			if _, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "r", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
				t.Fatal(err)
			}
			observe(t, c, keyA, tokens(t0.Add(time.Millisecond), 60_000, 50_000), t0.Add(time.Millisecond))
			res, err := c.Settle(ctx, keyA, backend.SettleRequest{ID: "r", Actual: bucket.Cost(1, 0, 0), Observation: tc.obs, Now: t0.Add(2 * time.Millisecond)})
			if err != nil || !res.Found {
				t.Fatalf("settle: %+v %v", res, err)
			}
			if got := f.calls(); !slices.Equal(got, tc.calls) {
				t.Fatalf("calls %v, want %v", got, tc.calls)
			}
			s := mustGet(t, f.mem, keyA, t0.Add(2*time.Millisecond))
			if d := s.Dims[bucket.Tokens]; d.Limit != tc.wantLimit || d.Level > tc.wantBelow+float64(tc.wantLimit)/60_000*2 || s.InFlight != 0 {
				t.Fatalf("shared bucket %+v, in flight %d", d, s.InFlight)
			}
			if err := c.Flush(ctx); err != nil || len(f.calls()) != len(tc.calls) {
				t.Fatalf("a lesson still waited after the settlement: err %v, calls %v", err, f.calls())
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestReadsAfterALessonPerPolicy(t *testing.T) {
	tests := []struct {
		policy  cache.Policy
		fetches int // shared Gets for Get, Get, Observe, Get
	}{
		{cache.WriteThrough, 1}, // the copy learns the lesson too
		{cache.WriteBack, 1},    // the waiting lesson is applied to the copy read
		{cache.WriteAround, 2},  // the copy is dropped
	}
	for _, tc := range tests {
		t.Run(tc.policy.String(), func(t *testing.T) {
			f := newCounting()
			clk := &clock{now: t0}
			c := newCache(t, f, cache.Options{Policy: tc.policy, FlushInterval: manual, Clock: clk.Now})
			observe(t, f.mem, keyA, tokens(t0, 60_000, 50_000), t0)
			for range 2 {
				if got := mustGet(t, c, keyA, t0).Dims[bucket.Tokens].Level; !near(got, 50_000) {
					t.Fatalf("level %v, want 50000", got)
				}
			}
			if n := f.count("Get"); n != 1 {
				t.Fatalf("%d fetches for two reads within TTL, want 1", n)
			}
			observe(t, c, keyA, tokens(t0, 60_000, 20_000), t0)
			if got := mustGet(t, c, keyA, t0).Dims[bucket.Tokens].Level; !near(got, 20_000) {
				t.Fatalf("level %v after the lesson, want 20000", got)
			}
			if n := f.count("Get"); n != tc.fetches {
				t.Fatalf("%d fetches, want %d", n, tc.fetches)
			}
		})
	}
}

func TestCopiesExpireAfterTTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		step    time.Duration // clock step between reads
		fetches int           // for three reads
	}{
		{"within TTL", time.Second, 400 * time.Millisecond, 1},
		{"at TTL", time.Second, time.Second, 3},
		{"default TTL", 0, 600 * time.Millisecond, 2},
		{"no caching", -1, 0, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCounting()
			clk := &clock{now: t0}
			c := newCache(t, f, cache.Options{TTL: tc.ttl, Clock: clk.Now})
			observe(t, f.mem, keyA, tokens(t0, 60_000, 50_000), t0)
			for range 3 {
				mustGet(t, c, keyA, clk.Now())
				clk.Add(tc.step)
			}
			if n := f.count("Get"); n != tc.fetches {
				t.Fatalf("%d fetches, want %d", n, tc.fetches)
			}
		})
	}
}

func TestReservationsDropCopies(t *testing.T) {
	ctx := context.Background()
	limits := bucket.Limits{bucket.Requests: 10}
	tests := []struct {
		name    string
		op      func(*testing.T, *cache.Cache)
		refetch bool
	}{
		{"reserve", func(t *testing.T, c *cache.Cache) {
			if _, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "second", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"settle", func(t *testing.T, c *cache.Cache) {
			if _, err := c.Settle(ctx, keyA, backend.SettleRequest{ID: "first", Now: t0}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"recover orphans", func(t *testing.T, c *cache.Cache) {
			if n, err := c.RecoverOrphans(ctx, t0.Add(2*time.Minute)); err != nil || n != 1 {
				t.Fatalf("recovered %d, err %v", n, err)
			}
		}, true},
		{"recover nothing", func(t *testing.T, c *cache.Cache) {
			if n, err := c.RecoverOrphans(ctx, t0); err != nil || n != 0 {
				t.Fatalf("recovered %d, err %v", n, err)
			}
		}, false},
		{"another bucket", func(t *testing.T, c *cache.Cache) {
			if _, err := c.Reserve(ctx, keyB, backend.ReserveRequest{ID: "b", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, policy := range []cache.Policy{cache.WriteThrough, cache.WriteBack, cache.WriteAround} {
		for _, tc := range tests {
			t.Run(policy.String()+"/"+tc.name, func(t *testing.T) {
				f := newCounting()
				clk := &clock{now: t0}
				c := newCache(t, f, cache.Options{Policy: policy, FlushInterval: manual, Clock: clk.Now})
				if _, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "first", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
					t.Fatal(err)
				}
				before := mustGet(t, c, keyA, t0)
				tc.op(t, c)
				after := mustGet(t, c, keyA, t0)
				want := 1
				if tc.refetch {
					want = 2
				}
				if n := f.count("Get"); n != want {
					t.Fatalf("%d fetches, want %d", n, want)
				}
				if shared := mustGet(t, f.mem, keyA, t0); after.InFlight != shared.InFlight {
					t.Fatalf("read in flight %d (before %d), shared %d", after.InFlight, before.InFlight, shared.InFlight)
				}
			})
		}
	}
}

// TestReadOvertakenByAWrite checks that a copy read before a write through
// the cache, and returned after it, is not kept.
func TestReadOvertakenByAWrite(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{})
	ctx := context.Background()
	limits := bucket.Limits{bucket.Requests: 10}
	if _, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "first", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
		t.Fatal(err)
	}
	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.afterGet = func() {
		once.Do(func() {
			close(read)
			<-release
		})
	}
	done := make(chan bucket.State)
	go func() {
		s, _, _ := c.Get(ctx, keyA, t0)
		done <- s
	}()
	<-read // the Get has read the state with one reservation
	if _, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "second", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if s := <-done; s.InFlight != 1 {
		t.Fatalf("the overtaken read returned %d in flight, want 1 (as read)", s.InFlight)
	}
	if s := mustGet(t, c, keyA, t0); s.InFlight != 2 {
		t.Fatalf("read after the write: %d in flight, want 2: the overtaken copy was kept", s.InFlight)
	}
	if n := f.count("Get"); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestListServedFromCopies(t *testing.T) {
	f := newCounting()
	clk := &clock{now: t0}
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, Clock: clk.Now})
	ctx := context.Background()
	limits := bucket.Limits{bucket.Requests: 10}
	for _, k := range []bucket.Key{keyA, keyB} {
		observe(t, f.mem, k, tokens(t0, 60_000, 50_000), t0)
	}
	list := func() map[bucket.Key]bucket.State {
		t.Helper()
		entries, err := c.List(ctx, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		out := make(map[bucket.Key]bucket.State)
		for _, e := range entries {
			out[e.Key] = e.State
		}
		return out
	}
	if got := list(); len(got) != 2 {
		t.Fatalf("listed %d buckets, want 2", len(got))
	}
	if got := list(); len(got) != 2 || f.count("List") != 1 || f.count("GetMany") != 0 {
		t.Fatalf("second listing: %d buckets, %d List and %d GetMany calls, want 2, 1, 0", len(got), f.count("List"), f.count("GetMany"))
	}

	// A reservation makes one copy stale; a lesson waits for a new bucket.
	if _, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "r", Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Minute, Now: t0}); err != nil {
		t.Fatal(err)
	}
	observe(t, c, keyC, tokens(t0, 1000, 700), t0)
	got := list()
	// A's copy is stale, and C's bucket may exist in the shared backend
	// (another replica): both are fetched, B is not.
	if f.count("List") != 1 || f.count("GetMany") != 1 || len(f.getKeys[0]) != 2 || slices.Contains(f.getKeys[0], keyB) {
		t.Fatalf("%d List and %d GetMany calls (keys %v), want A and C fetched again", f.count("List"), f.count("GetMany"), f.getKeys)
	}
	if len(got) != 3 || got[keyA].InFlight != 1 || got[keyC].Dims[bucket.Tokens].Limit != 1000 {
		t.Fatalf("listing %+v", got)
	}

	// Past TTL, the shared backend is listed again.
	clk.Add(time.Second)
	if got := list(); len(got) != 3 || f.count("List") != 2 {
		t.Fatalf("after TTL: %d buckets, %d List calls, want 3 and 2", len(got), f.count("List"))
	}
}

func TestCloseFlushes(t *testing.T) {
	f := newCounting()
	var dropped []int
	c, err := cache.New(f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, OnDrop: func(n int) { dropped = append(dropped, n) }})
	if err != nil {
		t.Fatal(err)
	}
	observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
	observe(t, c, keyB, tokens(t0, 1000, 500), t0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.calls(), []string{"ObserveMany", "Close"}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if len(f.received()) != 2 || dropped != nil {
		t.Fatalf("received %d lessons, dropped %v", len(f.received()), dropped)
	}
	if err := c.Observe(context.Background(), keyA, backend.ObserveRequest{Observation: tokens(t0, 1, 1)}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("observe after close: %v, want ErrClosed", err)
	}
	if _, _, err := c.Get(context.Background(), keyA, t0); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("get after close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil || f.count("Close") != 1 {
		t.Fatalf("second close: %v, %d shared closes", err, f.count("Close"))
	}
}

var errDown = errors.New("connection refused")

func TestCloseDropsWhatCannotBeWritten(t *testing.T) {
	f := newCounting()
	f.setFail(errDown)
	var dropped []int
	c, err := cache.New(f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, Retries: 2, OnDrop: func(n int) { dropped = append(dropped, n) }})
	if err != nil {
		t.Fatal(err)
	}
	observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
	observe(t, c, keyA, tokens(t0, 60_000, 40_000), t0)
	err = c.Close()
	if !errors.Is(err, errDown) {
		t.Fatalf("close: %v, want the write failure", err)
	}
	if n := f.count("ObserveMany"); n != 3 {
		t.Fatalf("%d write attempts, want 3 (1 + 2 retries)", n)
	}
	if !slices.Equal(dropped, []int{2}) || f.count("Close") != 1 {
		t.Fatalf("dropped %v, shared closed %d times", dropped, f.count("Close"))
	}
}

func TestWriteBackRetriesBounded(t *testing.T) {
	tests := []struct {
		retries  int
		attempts int
	}{
		{-1, 1},
		{0, 1 + cache.DefaultRetries},
		{2, 3},
	}
	for _, tc := range tests {
		t.Run("", func(t *testing.T) {
			f := newCounting()
			f.setFail(errDown)
			var mu sync.Mutex
			var dropped []int
			c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, Retries: tc.retries, OnDrop: func(n int) {
				mu.Lock()
				dropped = append(dropped, n)
				mu.Unlock()
			}})
			ctx := context.Background()
			for _, rem := range []int64{50_000, 40_000, 30_000} {
				observe(t, c, keyA, tokens(t0, 60_000, rem), t0)
			}
			for i := range tc.attempts + 2 {
				err := c.Flush(ctx)
				if i < tc.attempts && !errors.Is(err, errDown) {
					t.Fatalf("flush %d: %v, want the failure", i, err)
				}
				if i >= tc.attempts && err != nil {
					t.Fatalf("flush %d after the drop: %v", i, err)
				}
			}
			if n := f.count("ObserveMany"); n != tc.attempts {
				t.Fatalf("%d attempts, want %d", n, tc.attempts)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(dropped, []int{3}) {
				t.Fatalf("dropped %v, want the 3 merged Observe calls once", dropped)
			}
		})
	}
}

func TestWriteBackRetrySucceeds(t *testing.T) {
	f := newCounting()
	f.setFail(errDown)
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
	ctx := context.Background()
	observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
	if err := c.Flush(ctx); !errors.Is(err, errDown) {
		t.Fatalf("flush: %v", err)
	}
	// A newer lesson arrives while the failed one waits for its retry.
	observe(t, c, keyA, tokens(t0.Add(time.Millisecond), 60_000, 45_000), t0.Add(time.Millisecond))
	f.setFail(nil)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d := mustGet(t, f.mem, keyA, t0.Add(time.Millisecond)).Dims[bucket.Tokens]; d.Limit != 60_000 || !near(d.Level, 45_000) {
		t.Fatalf("shared bucket %+v, want both lessons applied", d)
	}
}

// TestReserveWaitsForTheBucketsFlush checks that a reservation on a bucket
// whose lessons a flush is writing waits for that write, so that it never
// reserves against a bucket missing this replica's lessons.
func TestReserveWaitsForTheBucketsFlush(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
	ctx := context.Background()
	var probe bucket.Observation
	probe.At = t0
	probe.Dims[bucket.Requests] = bucket.DimObservation{Limit: 1, Remaining: 1, HasRemaining: true}
	observe(t, c, keyA, probe, t0)

	inFlush, release := make(chan struct{}), make(chan struct{})
	f.inMany = func() {
		close(inFlush)
		<-release
	}
	flushed := make(chan error)
	go func() { flushed <- c.Flush(ctx) }()
	<-inFlush

	reserved := make(chan backend.ReserveResult)
	go func() {
		r, err := c.Reserve(ctx, keyA, backend.ReserveRequest{ID: "r", Cost: bucket.Cost(1, 0, 0), TTL: time.Minute, Now: t0})
		if err != nil {
			t.Error(err)
		}
		reserved <- r
	}()
	select {
	case <-reserved:
		t.Fatal("the reservation did not wait for the flush of its bucket")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if r := <-reserved; !r.Allowed {
		t.Fatalf("reservation after the lesson: %+v", r.Decision)
	}
	if got, want := f.calls(), []string{"ObserveMany", "Reserve"}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestFailedSettleKeepsWaitingLessons(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
	ctx := context.Background()
	observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
	f.failSettle = errDown
	if _, err := c.Settle(ctx, keyA, backend.SettleRequest{ID: "r", Now: t0}); !errors.Is(err, errDown) {
		t.Fatalf("settle: %v", err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := f.calls(), []string{"Settle", "ObserveMany"}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if d := mustGet(t, f.mem, keyA, t0).Dims[bucket.Tokens]; d.Limit != 60_000 {
		t.Fatalf("the lesson was lost with the settlement: %+v", d)
	}
}

func TestMaxPendingWritesThrough(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual, MaxPending: 2})
	observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
	observe(t, c, keyB, tokens(t0, 60_000, 50_000), t0)
	if n := len(f.calls()); n != 0 {
		t.Fatalf("%d calls for two waiting buckets", n)
	}
	observe(t, c, keyC, tokens(t0, 60_000, 50_000), t0)
	observe(t, c, keyA, tokens(t0, 60_000, 40_000), t0) // merges: A waits already
	if got := f.calls(); !slices.Equal(got, []string{"Observe"}) {
		t.Fatalf("calls %v, want one Observe for the third bucket", got)
	}
}

func TestLessonsThatDoNotMergeWaitInOrder(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
	observe(t, c, keyA, tokens(t0, 1000, 800), t0)
	upgrade := tokens(t0.Add(time.Millisecond), 2000, 0)
	upgrade.Dims[bucket.Tokens].HasRemaining = false
	observe(t, c, keyA, upgrade, t0.Add(time.Millisecond))
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.batches) != 1 || len(f.batches[0]) != 2 || f.batches[0][1].Observation.Dims[bucket.Tokens].Limit != 2000 {
		t.Fatalf("batches %+v, want one with both lessons in order", f.batches)
	}
	if d := mustGet(t, f.mem, keyA, t0.Add(time.Millisecond)).Dims[bucket.Tokens]; d.Limit != 2000 || d.Level > 1800.1 {
		t.Fatalf("shared bucket %+v, want limit 2000 and level at most 800+1000", d)
	}
}

func TestFlushWithoutBulk(t *testing.T) {
	f := newCounting()
	c := newCache(t, single{f}, cache.Options{Policy: cache.WriteBack, FlushInterval: manual})
	observe(t, c, keyA, tokens(t0, 60_000, 50_000), t0)
	observe(t, c, keyB, tokens(t0, 60_000, 50_000), t0)
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, m := f.count("Observe"), f.count("ObserveMany"); n != 2 || m != 0 {
		t.Fatalf("%d Observe and %d ObserveMany calls, want 2 and 0", n, m)
	}
}

func TestFlushLoop(t *testing.T) {
	f := newCounting()
	c := newCache(t, f, cache.Options{Policy: cache.WriteBack, FlushInterval: 5 * time.Millisecond})
	observe(t, c, keyA, tokens(time.Now(), 60_000, 50_000), time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok, _ := f.mem.Get(context.Background(), keyA, time.Now()); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flush loop never wrote the lesson")
		}
		time.Sleep(time.Millisecond)
	}
	if n := f.count("ObserveMany"); n != 1 {
		t.Fatalf("%d ObserveMany calls, want 1", n)
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in   string
		want cache.Policy
		err  bool
	}{
		{"write-through", cache.WriteThrough, false},
		{"write-back", cache.WriteBack, false},
		{"write-around", cache.WriteAround, false},
		{" Write-Back ", cache.WriteBack, false},
		{"", cache.WriteThrough, false},
		{"write_back", 0, true},
		{"lru", 0, true},
	}
	for _, tc := range tests {
		got, err := cache.ParsePolicy(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if !tc.err && tc.in == tc.want.String() {
			var p cache.Policy
			text, _ := tc.want.MarshalText()
			if err := p.UnmarshalText(text); err != nil || p != tc.want {
				t.Errorf("text round trip of %v: %v, %v", tc.want, p, err)
			}
		}
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := cache.New(nil, cache.Options{}); err == nil {
		t.Error("nil shared backend accepted")
	}
	if _, err := cache.New(newCounting(), cache.Options{Policy: cache.Policy(9)}); err == nil {
		t.Error("unknown policy accepted")
	}
}
