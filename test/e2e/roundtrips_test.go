package e2e

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/adaptive-rate-limiter/arl/backend/redis"
	"github.com/adaptive-rate-limiter/arl/limiter"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
	"github.com/adaptive-rate-limiter/arl/test/redistest"
)

// roundTrips counts the network round trips a go-redis client makes: one per
// command, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

type hdrs map[string]string

func (h hdrs) Get(k string) string { return h[k] }

// TestRedisRoundTripsPerRequest counts the Redis round trips of one full
// request through the limiter on the Redis backend: the reservation and the
// settlement, with the answer's lesson folded into the settlement.
func TestRedisRoundTripsPerRequest(t *testing.T) {
	redistest.RequireRedis(t)
	srv := redistest.StartServer(t)
	rt := &roundTrips{}
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	client.AddHook(rt)
	t.Cleanup(func() { _ = client.Close() })
	be, err := redis.New(context.Background(), redis.Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	l, err := limiter.New(limiter.Config{}, be, metrics.New(nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := hdrs{":method": "POST", ":path": "/v1/chat/completions", ":authority": "api.openai.com", "authorization": "Bearer sk-rt"}
	body := []byte(`{"model":"gpt-4o-mini","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	routine := hdrs{":status": "200", "content-type": "text/event-stream",
		"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
		"x-ratelimit-limit-tokens": "200000", "x-ratelimit-remaining-tokens": "199800", "x-ratelimit-reset-tokens": "60ms"}
	stream := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")

	run := func(status int, h hdrs, chunks ...[]byte) int64 {
		t.Helper()
		before := rt.n.Load()
		x := l.Begin()
		x.RequestHeaders(ctx, req, false)
		if v := x.RequestBody(ctx, body); v.Reject != nil {
			t.Fatalf("rejected: %+v", v.Reject)
		}
		x.ResponseHeaders(ctx, status, h, len(chunks) == 0)
		for i, c := range chunks {
			x.ResponseBody(ctx, c, i == len(chunks)-1)
		}
		if x.Reserved() {
			t.Fatal("reservation still open")
		}
		return rt.n.Load() - before
	}
	// The first request is the bucket's probe: its lesson applies at once.
	if n := run(200, routine, stream); n != 3 {
		t.Fatalf("probe: %d round trips, want 3 (reserve, observe, settle)", n)
	}
	tests := []struct {
		name   string
		status int
		h      hdrs
		chunks [][]byte
	}{
		{"streamed answer", 200, routine, [][]byte{stream[:30], stream[30:]}},
		{"JSON answer", 200, hdrs{":status": "200", "content-type": "application/json", "x-ratelimit-remaining-tokens": "199000"},
			[][]byte{[]byte(`{"usage":{"prompt_tokens":5,"completion_tokens":9}}`)}},
		{"upstream 500", 500, hdrs{":status": "500"}, nil},
	}
	for _, tc := range tests {
		if n := run(tc.status, tc.h, tc.chunks...); n != 2 {
			t.Errorf("%s: %d Redis round trips, want 2", tc.name, n)
		}
	}
}
