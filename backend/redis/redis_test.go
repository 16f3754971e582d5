package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/adaptive-rate-limiter/arl/backend"
	"github.com/adaptive-rate-limiter/arl/backend/backendtest"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

// testTimeout is the per-call timeout of backends in tests: generous, so
// that a loaded CI machine under -race does not fail a call that would
// succeed. The outage test sets the production default explicitly.
const testTimeout = 5 * time.Second

// newBackend connects a backend and closes it when the test ends.
func newBackend(t testing.TB, opts Options) *Backend {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	b, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("new backend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// target is one Redis deployment under test, with a raw client for
// inspecting what the backend wrote.
type target struct {
	opts Options
	raw  goredis.UniversalClient
}

func TestSingleNode(t *testing.T) {
	s := redistest.StartServer(t)
	runDeployment(t, target{opts: Options{Addrs: []string{s.Addr}}, raw: s.Client()})
}

func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	tg := target{opts: Options{Addrs: c.Addrs, Cluster: true}, raw: c.Client()}
	runDeployment(t, tg)
	t.Run("NoCrossSlot", func(t *testing.T) { testNoCrossSlot(t, tg) })
}

// runDeployment runs every test that applies to single nodes and clusters alike.
func runDeployment(t *testing.T, tg target) {
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Backend { return newBackend(t, tg.opts) })
	})
	t.Run("Scenarios", func(t *testing.T) { runScenarios(t, tg.opts) })
	t.Run("RandomTwin", func(t *testing.T) { runRandomTwin(t, tg.opts) })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, target)
	}{
		{"NoOverAdmission", testNoOverAdmission},
		{"EscapedKeyParts", testEscapedKeyParts},
		{"KeysHaveTTL", testKeysHaveTTL},
		{"TTLRefreshedWhenDue", testTTLRefreshedWhenDue},
		{"GetWritesNothing", testGetWritesNothing},
		{"ReserveReclaimsExpired", testReserveReclaimsExpired},
		{"RecoverManyOrphans", testRecoverManyOrphans},
		{"ScriptCacheFlushed", testScriptCacheFlushed},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := tg
			tg.opts.KeyPrefix = uniquePrefix()
			tc.fn(t, tg)
		})
	}
}

// pin fixes a backend's clock at *now (tests only).
func pin(b *Backend, now *time.Time) { b.clock = func() time.Time { return *now } }

// testNoOverAdmission races 200 reservations from three backends with
// separate clients against a limit of 50: exactly 50 are admitted.
func testNoOverAdmission(t *testing.T, tg target) {
	now := t0
	cases := []struct {
		name   string
		limits bucket.Limits
		cost   bucket.Vector
		dim    bucket.Dimension
		pinned bool // clock pinned: a per-minute limit cannot refill during the race
	}{
		{"requests", bucket.Limits{bucket.Requests: 50}, bucket.Cost(1, 10, 10), bucket.Requests, true},
		{"tokens", bucket.Limits{bucket.Tokens: 1000}, bucket.Cost(1, 15, 5), bucket.Tokens, true},
		// On Redis TIME, per-day limits keep refill (one request per 29 minutes) out of the count.
		{"requests_per_day_time", bucket.Limits{bucket.RequestsPerDay: 50}, bucket.Cost(1, 10, 10), bucket.RequestsPerDay, false},
		{"tokens_per_day_time", bucket.Limits{bucket.TokensPerDay: 1000}, bucket.Cost(1, 15, 5), bucket.TokensPerDay, false},
	}
	backends := make([]*Backend, 3)
	for i := range backends {
		backends[i] = newBackend(t, tg.opts)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, b := range backends {
				b.clock = nil
				if tc.pinned {
					pin(b, &now)
				}
			}
			k := bucket.Key{Namespace: "race", Provider: tc.name, Account: "a", Model: "m"}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 200 {
				wg.Go(func() {
					<-start
					r, err := backends[i%3].Reserve(context.Background(), k, backend.ReserveRequest{
						ID: "r" + strconv.Itoa(i), Cost: tc.cost, Defaults: tc.limits, TTL: time.Minute,
					})
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						admitted.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if got := admitted.Load(); got != 50 {
				t.Fatalf("admitted %d of 200 against a limit of 50", got)
			}
			s, _, err := backends[0].Get(context.Background(), k, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if s.InFlight != 50 || s.Dims[tc.dim].Level > 0.01 || s.Dims[tc.dim].Level < -0.01 {
				t.Fatalf("state after the race: in flight %d, level %v", s.InFlight, s.Dims[tc.dim].Level)
			}
		})
	}
}

// testEscapedKeyParts uses key parts with the characters that build keys:
// buckets that would collide without escaping stay apart, and List returns
// every key exactly as given.
func testEscapedKeyParts(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	ctx := context.Background()
	keys := []bucket.Key{
		{Namespace: "a|b", Provider: "c", Account: "d", Model: "e"},
		{Namespace: "a", Provider: "b|c", Account: "d", Model: "e"},
		{Namespace: "{a}", Provider: "}", Account: "{", Model: "}{"},
		{Namespace: "%7B", Provider: "%", Account: "%%", Model: "%7C"},
		{Namespace: "{", Provider: "", Account: "", Model: ""},
		{Namespace: "", Provider: "", Account: "", Model: ""},
		{Namespace: "a:b", Provider: "*", Account: "?[x]", Model: "модель\\"},
	}
	limit := bucket.Limits{bucket.RequestsPerDay: 1}
	for _, k := range keys {
		r, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "first", Cost: bucket.Cost(1, 0, 0), Defaults: limit, TTL: time.Minute})
		if err != nil || !r.Allowed {
			t.Fatalf("reserve in %q: %+v %v (another key's bucket?)", k, r, err)
		}
		r, err = b.Reserve(ctx, k, backend.ReserveRequest{ID: "second", Cost: bucket.Cost(1, 0, 0), Defaults: limit, TTL: time.Minute})
		if err != nil || r.Allowed {
			t.Fatalf("second reserve in %q: %+v %v", k, r, err)
		}
		ks := keysFor(b.prefix, k)
		assertOneSlot(t, tg.raw, ks)
	}
	entries, err := b.List(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var listed []bucket.Key
	for _, e := range entries {
		listed = append(listed, e.Key)
		if e.State.InFlight != 1 {
			t.Fatalf("listed %q with %d in flight", e.Key, e.State.InFlight)
		}
	}
	if len(listed) != len(keys) {
		t.Fatalf("listed %d buckets, want %d: %q", len(listed), len(keys), listed)
	}
	for _, k := range keys {
		if !slices.Contains(listed, k) {
			t.Fatalf("%q missing from %q", k, listed)
		}
	}
}

// assertOneSlot checks that a bucket's keys hash to one cluster slot
// (CLUSTER KEYSLOT needs cluster mode, so it runs on clusters only).
func assertOneSlot(t *testing.T, raw goredis.UniversalClient, ks keySet) {
	t.Helper()
	cc, ok := raw.(*goredis.ClusterClient)
	if !ok {
		return
	}
	var slots []int64
	for _, key := range ks.slice() {
		slot, err := cc.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, slot)
	}
	if slots[0] != slots[1] || slots[0] != slots[2] {
		t.Fatalf("keys %v in slots %v", ks.slice(), slots)
	}
}

// allKeys returns every key matching pattern on every master.
func allKeys(t *testing.T, raw goredis.UniversalClient, pattern string) []string {
	t.Helper()
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, c *goredis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	}
	var err error
	switch c := raw.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(context.Background(), scan)
	case *goredis.Client:
		err = scan(context.Background(), c)
	default:
		t.Fatalf("client %T", raw)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testKeysHaveTTL checks that every key a backend writes expires, and no
// sooner than what it must cover.
func testKeysHaveTTL(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	ctx := context.Background()
	day := bucket.Key{Namespace: "ttl", Provider: "day"}
	month := bucket.Key{Namespace: "ttl", Provider: "month"}
	long := bucket.Key{Namespace: "ttl", Provider: "long-reservation"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := b.Reserve(ctx, day, backend.ReserveRequest{ID: "a", Cost: bucket.Cost(1, 1, 1), Defaults: bucket.Limits{bucket.TokensPerDay: 100}, TTL: time.Minute})
	must(err)
	_, err = b.Reserve(ctx, day, backend.ReserveRequest{ID: "b", Cost: bucket.Cost(1, 1, 1), TTL: time.Minute})
	must(err)
	_, err = b.Settle(ctx, day, backend.SettleRequest{ID: "a"})
	must(err)
	must(b.Observe(ctx, month, backend.ObserveRequest{Observation: obsDim(bucket.TokensPerMonth, bucket.DimObservation{Limit: 1_000_000})}))
	_, err = b.Reserve(ctx, long, backend.ReserveRequest{ID: "a", Cost: bucket.Cost(1, 1, 1), Defaults: bucket.Limits{bucket.Requests: 10}, TTL: 48 * time.Hour})
	must(err)

	minTTL := map[string]time.Duration{
		keysFor(b.prefix, day).state:   IdleTTL,
		keysFor(b.prefix, day).res:     IdleTTL,
		keysFor(b.prefix, day).taken:   IdleTTL,
		keysFor(b.prefix, month).state: bucket.TokensPerMonth.DefaultWindow(),
		keysFor(b.prefix, long).state:  48 * time.Hour,
		keysFor(b.prefix, long).res:    48 * time.Hour,
		keysFor(b.prefix, long).taken:  48 * time.Hour,
	}
	keys := allKeys(t, tg.raw, b.prefix+":*")
	if len(keys) != len(minTTL) {
		t.Fatalf("keys %q, want %d", keys, len(minTTL))
	}
	for _, key := range keys {
		ttl, err := tg.raw.PTTL(ctx, key).Result()
		must(err)
		want, ok := minTTL[key]
		if !ok {
			t.Fatalf("unexpected key %q", key)
		}
		// A minute of slack for the time since the write.
		if ttl < want-time.Minute || ttl > want+2*ttlMargin {
			t.Fatalf("key %q: TTL %v, want at least %v (and not far beyond)", key, ttl, want)
		}
	}
}

// testTTLRefreshedWhenDue steps the clock: writes within ttlSlack of the last
// refresh leave the TTLs alone, later ones extend them, and a reservation
// with a distant deadline extends them at once.
func testTTLRefreshedWhenDue(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	now := t0
	pin(b, &now)
	ctx := context.Background()
	k := bucket.Key{Namespace: "refresh"}
	ks := keysFor(b.prefix, k)
	expiresAt := func() time.Time {
		t.Helper()
		v, err := tg.raw.HGet(ctx, ks.state, "expires_at").Int64()
		if err != nil {
			t.Fatal(err)
		}
		return time.UnixMicro(v).UTC()
	}
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := tg.raw.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	reserve := func(id string, ttl time.Duration) {
		t.Helper()
		if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: id, Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.Requests: 100}, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	observe := func() {
		t.Helper()
		if err := b.Observe(ctx, k, backend.ObserveRequest{}); err != nil {
			t.Fatal(err)
		}
	}

	reserve("a", time.Minute)
	if got := expiresAt(); !got.Equal(t0.Add(IdleTTL)) {
		t.Fatalf("expires at %v, want t0+%v", got, IdleTTL)
	}
	now = t0.Add(ttlSlack / 2)
	observe()
	if got := expiresAt(); !got.Equal(t0.Add(IdleTTL)) {
		t.Fatalf("refreshed within the slack: %v", got)
	}
	now = t0.Add(ttlSlack + time.Minute)
	observe()
	if got := expiresAt(); !got.Equal(now.Add(IdleTTL)) {
		t.Fatalf("not refreshed after the slack: %v", got)
	}
	if d := pttl(ks.state); d < IdleTTL-time.Minute {
		t.Fatalf("state TTL %v after a refresh", d)
	}
	reserve("long", 48*time.Hour)
	if got := expiresAt(); !got.Equal(now.Add(48*time.Hour + ttlMargin)) {
		t.Fatalf("a 48 h reservation did not extend the expiry: %v", got)
	}
	for _, key := range ks.slice() {
		if d := pttl(key); d < 48*time.Hour+ttlMargin-time.Minute {
			t.Fatalf("%s: TTL %v, want about %v", key, d, 48*time.Hour+ttlMargin)
		}
	}
}

// testGetWritesNothing checks that Get advances the state it returns, not the
// stored one, and does not refresh TTLs.
func testGetWritesNothing(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	now := t0
	pin(b, &now)
	ctx := context.Background()
	k := bucket.Key{Namespace: "get"}
	if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "a", Cost: bucket.Cost(1, 600, 0), Defaults: bucket.Limits{bucket.Tokens: 1000}, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ks := keysFor(b.prefix, k)
	before, err := tg.raw.HGetAll(ctx, ks.state).Result()
	if err != nil {
		t.Fatal(err)
	}
	ttlBefore, _ := tg.raw.PTTL(ctx, ks.state).Result()
	now = t0.Add(30 * time.Second)
	s, ok, err := b.Get(ctx, k, time.Time{})
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if !s.Updated.Equal(now) || s.Dims[bucket.Tokens].Level != 900 {
		t.Fatalf("get returned %+v, want advanced to +30s with level 900", s)
	}
	after, err := tg.raw.HGetAll(ctx, ks.state).Result()
	if err != nil {
		t.Fatal(err)
	}
	ttlAfter, _ := tg.raw.PTTL(ctx, ks.state).Result()
	if fmt.Sprint(before) != fmt.Sprint(after) || ttlAfter > ttlBefore {
		t.Fatalf("get wrote: %v -> %v, TTL %v -> %v", before, after, ttlBefore, ttlAfter)
	}
	if _, ok, err := b.Get(ctx, bucket.Key{Namespace: "absent"}, time.Time{}); ok || err != nil {
		t.Fatalf("absent bucket: %v %v", ok, err)
	}
	if n := len(allKeys(t, tg.raw, b.prefix+":*absent*")); n != 0 {
		t.Fatalf("get of an absent bucket created %d keys", n)
	}
}

// testReserveReclaimsExpired checks that a crashed probe's reservation stops
// blocking its bucket once its deadline has passed, without a sweep.
func testReserveReclaimsExpired(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	now := t0
	pin(b, &now)
	ctx := context.Background()
	k := bucket.Key{Namespace: "reclaim"}
	reserve := func(id string) backend.ReserveResult {
		t.Helper()
		r, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: id, Cost: bucket.Cost(1, 10, 10), TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := reserve("probe"); !r.Allowed {
		t.Fatalf("probe: %+v", r)
	}
	now = t0.Add(time.Second) // at the deadline: not expired yet
	if r := reserve("next"); r.Allowed || r.Reason != bucket.ReasonProbe {
		t.Fatalf("during the probe: %+v", r)
	}
	now = t0.Add(time.Second + time.Microsecond)
	if r := reserve("next"); !r.Allowed {
		t.Fatalf("after the probe's deadline: %+v", r)
	}
	if s, _, _ := b.Get(ctx, k, time.Time{}); s.InFlight != 1 {
		t.Fatalf("in flight %d, want 1", s.InFlight)
	}
	if r, err := b.Settle(ctx, k, backend.SettleRequest{ID: "probe"}); err != nil || r.Found {
		t.Fatalf("settle of the reclaimed probe: %+v %v", r, err)
	}
}

// testRecoverManyOrphans recovers more orphans than one script call ends.
func testRecoverManyOrphans(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	now := t0
	pin(b, &now)
	ctx := context.Background()
	big, small := bucket.Key{Namespace: "orphans", Provider: "big"}, bucket.Key{Namespace: "orphans", Provider: "small"}
	limits := bucket.Limits{bucket.Requests: 1 << 40}
	counts := map[bucket.Key]int{big: recoverBatch + 100, small: 3}
	for k, n := range counts {
		for i := range n {
			if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: strconv.Itoa(i), Cost: bucket.Cost(1, 0, 0), Defaults: limits, TTL: time.Second}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := b.RecoverOrphans(ctx, time.Time{}); err != nil || n != 0 {
		t.Fatalf("recovered %d before the deadline (%v)", n, err)
	}
	now = t0.Add(2 * time.Second)
	n, err := b.RecoverOrphans(ctx, time.Time{})
	if err != nil || n != recoverBatch+103 {
		t.Fatalf("recovered %d (%v), want %d", n, err, recoverBatch+103)
	}
	for k := range counts {
		if s, _, _ := b.Get(ctx, k, time.Time{}); s.InFlight != 0 || s.Dims[bucket.Requests].Level != float64(limits[bucket.Requests]) {
			t.Fatalf("%s after recovery: %+v", k, s)
		}
	}
	if n := len(allKeys(t, tg.raw, b.prefix+":*:res")) + len(allKeys(t, tg.raw, b.prefix+":*:taken")); n != 0 {
		t.Fatalf("%d reservation keys left", n)
	}
}

// testScriptCacheFlushed checks the EVAL fallback, single and pipelined, after
// the script cache is lost (a restart or failover does the same).
func testScriptCacheFlushed(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	ctx := context.Background()
	k := bucket.Key{Namespace: "flush"}
	if err := tg.raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "a", Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.Requests: 5}, TTL: time.Millisecond})
	if err != nil || !r.Allowed {
		t.Fatalf("reserve after SCRIPT FLUSH: %+v %v", r, err)
	}
	if err := tg.raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := b.List(ctx, time.Time{})
	if err != nil || len(entries) != 1 {
		t.Fatalf("list after SCRIPT FLUSH: %d entries, %v", len(entries), err)
	}
	if err := tg.raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for total := 0; total == 0; {
		n, err := b.RecoverOrphans(ctx, time.Time{})
		if err != nil {
			t.Fatalf("recover after SCRIPT FLUSH: %v", err)
		}
		total += n
		if total == 0 && time.Now().After(deadline) {
			t.Fatal("the 1 ms reservation was never recovered")
		}
	}
}

func testClosed(t *testing.T, tg target) {
	b := newBackend(t, tg.opts)
	ctx := context.Background()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	k := bucket.Key{Namespace: "closed"}
	ops := map[string]error{}
	_, ops["reserve"] = b.Reserve(ctx, k, backend.ReserveRequest{ID: "a"})
	_, ops["settle"] = b.Settle(ctx, k, backend.SettleRequest{ID: "a"})
	_, ops["extend"] = b.Extend(ctx, k, backend.ExtendRequest{ID: "a"})
	ops["observe"] = b.Observe(ctx, k, backend.ObserveRequest{})
	_, _, ops["get"] = b.Get(ctx, k, time.Time{})
	_, ops["list"] = b.List(ctx, time.Time{})
	_, ops["recover"] = b.RecoverOrphans(ctx, time.Time{})
	ops["ping"] = b.Ping(ctx)
	for op, err := range ops {
		if !errors.Is(err, backend.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", op, err)
		}
	}

	// An injected client belongs to its owner: Close leaves it open.
	injected := newBackend(t, Options{Client: tg.raw, KeyPrefix: tg.opts.KeyPrefix})
	if err := injected.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tg.raw.Ping(ctx).Err(); err != nil {
		t.Fatalf("injected client closed by the backend: %v", err)
	}
}

// testNoCrossSlot runs every operation on many buckets spread over a
// cluster's slots: none may fail (CROSSSLOT or otherwise), and List and
// RecoverOrphans see them all.
func testNoCrossSlot(t *testing.T, tg target) {
	tg.opts.KeyPrefix = uniquePrefix()
	b := newBackend(t, tg.opts)
	ctx := context.Background()
	const n = 200
	keys := make([]bucket.Key, n)
	for i := range keys {
		keys[i] = bucket.Key{Namespace: "ns" + strconv.Itoa(i%7), Provider: "p|" + strconv.Itoa(i%3), Account: bucket.AccountID(strconv.Itoa(i)), Model: "{m}" + strconv.Itoa(i%5)}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				k := keys[i]
				o := obsDim(bucket.Tokens, bucket.DimObservation{Limit: 1000, Remaining: 900, HasRemaining: true})
				if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "b", Cost: bucket.Cost(1, 10, 10), Defaults: bucket.Limits{bucket.Requests: 10}, TTL: time.Minute}); err != nil {
					t.Error(err)
					return
				}
				if err := b.Observe(ctx, k, backend.ObserveRequest{Observation: o}); err != nil {
					t.Error(err)
					return
				}
				if _, err := b.Settle(ctx, k, backend.SettleRequest{ID: "b", Actual: bucket.Cost(1, 5, 5), Observation: &o}); err != nil {
					t.Error(err)
					return
				}
				// Last reservation of the bucket: a 1 ms orphan for RecoverOrphans
				// (a later Reserve would reclaim it itself).
				if _, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "a", Cost: bucket.Cost(1, 10, 10), TTL: time.Millisecond}); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := b.Get(ctx, k, time.Time{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, k := range keys[:20] {
		assertOneSlot(t, tg.raw, keysFor(b.prefix, k))
	}
	entries, err := b.List(ctx, time.Time{})
	if err != nil || len(entries) != n {
		t.Fatalf("listed %d of %d buckets: %v", len(entries), n, err)
	}
	recovered := 0
	deadline := time.Now().Add(5 * time.Second)
	for recovered < n && time.Now().Before(deadline) {
		got, err := b.RecoverOrphans(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		recovered += got
	}
	if recovered != n {
		t.Fatalf("recovered %d orphans, want %d (one per bucket)", recovered, n)
	}
}

// TestOutage stops Redis mid-use: calls fail within the timeout instead of
// hanging, and work again once Redis is back (with an empty script cache).
func TestOutage(t *testing.T) {
	s := redistest.StartServer(t)
	b := newBackend(t, Options{Addrs: []string{s.Addr}, Timeout: DefaultTimeout})
	ctx := context.Background()
	k := bucket.Key{Namespace: "outage"}
	reserve := func() (time.Duration, error) {
		start := time.Now()
		_, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "r" + strconv.FormatInt(start.UnixNano(), 10), Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.Requests: 1000}, TTL: time.Minute})
		return time.Since(start), err
	}
	if _, err := reserve(); err != nil {
		t.Fatal(err)
	}
	// A bound far above the timeout: the point is that the call returns.
	const noHang = DefaultTimeout + 2*time.Second

	s.Pause() // accepts connections, never answers
	// Only the timeout ends a call to a stalled Redis: it fails no sooner.
	if took, err := reserve(); err == nil || took < DefaultTimeout || took > noHang {
		t.Fatalf("reserve on a stalled Redis: %v after %v, want a failure after the %v timeout", err, took, DefaultTimeout)
	}
	if err := b.Ping(ctx); err == nil {
		t.Fatal("ping of a stalled Redis succeeded")
	}

	s.Kill()
	if took, err := reserve(); err == nil || took > noHang {
		t.Fatalf("reserve on a dead Redis: %v after %v", err, took)
	}
	if _, err := b.List(ctx, time.Time{}); err == nil {
		t.Fatal("list on a dead Redis succeeded")
	}

	s.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := reserve()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reserve after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	if st, ok, err := b.Get(ctx, k, time.Time{}); err != nil || !ok || st.InFlight != 1 {
		t.Fatalf("get after restart: %+v %v %v (state starts over: nothing is persisted)", st, ok, err)
	}
}

// TestFailover kills a master of a cluster with replicas: once a replica has
// taken over, every bucket works again.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("failover takes several seconds")
	}
	start := time.Now()
	c := redistest.StartCluster(t, 3, 1)
	t.Logf("cluster ready after %v", time.Since(start))
	b := newBackend(t, Options{Addrs: c.Addrs, Cluster: true, Timeout: time.Second})
	ctx := context.Background()
	keys := make([]bucket.Key, 30)
	for i := range keys {
		keys[i] = bucket.Key{Namespace: "failover", Account: strconv.Itoa(i)}
		if _, err := b.Reserve(ctx, keys[i], backend.ReserveRequest{ID: "a", Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.Requests: 100}, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	c.KillMaster(0)
	start = time.Now()
	c.WaitFailover()
	t.Logf("failover after %v", time.Since(start))
	start = time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for _, k := range keys {
		for {
			_, err := b.Reserve(ctx, k, backend.ReserveRequest{ID: "b", Cost: bucket.Cost(1, 0, 0), Defaults: bucket.Limits{bucket.Requests: 100}, TTL: time.Minute})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reserve in %s after failover: %v", k, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("every bucket back %v later", time.Since(start))
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("ping after failover: %v", err)
	}
	if _, err := b.List(ctx, time.Time{}); err != nil {
		t.Fatalf("list after failover: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close() // nothing listens there now
	tests := []struct {
		name string
		opts Options
	}{
		{"brace in prefix", Options{Addrs: []string{closed}, KeyPrefix: "arl{x}"}},
		{"several addresses without cluster", Options{Addrs: []string{closed, closed}}},
		{"database in cluster", Options{Addrs: []string{closed}, Cluster: true, DB: 2}},
		{"unreachable", Options{Addrs: []string{closed}, Timeout: 100 * time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			b, err := New(context.Background(), tc.opts)
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("New took %v to fail", took)
			}
		})
	}
}
