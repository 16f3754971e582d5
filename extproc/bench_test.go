package extproc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptive-rate-limiter/arl/backend/memory"
	"github.com/adaptive-rate-limiter/arl/limiter"
	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
	"github.com/adaptive-rate-limiter/arl/limiter/metrics"
	"github.com/adaptive-rate-limiter/arl/test/noopproc"
)

func serve(b *testing.B, srv extprocv3.ExternalProcessorServer) extprocv3.ExternalProcessorClient {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// exchangeMessages is one streamed chat completion as Envoy presents it:
// request headers, the buffered request body, response headers, and a
// response streamed in 8 chunks ending with usage.
func exchangeMessages(key string) []*extprocv3.ProcessingRequest {
	msgs := []*extprocv3.ProcessingRequest{
		reqHeaders(false, "x-api-key", key),
		reqBody(`{"model":"gpt-4o-mini","max_tokens":256,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about rate limits and the patience they teach."}]}`),
		respHeaders("200", "content-type", "text/event-stream", "x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "9999",
			"x-ratelimit-reset-requests", "6ms", "x-ratelimit-limit-tokens", "10000000", "x-ratelimit-remaining-tokens", "9999700", "x-ratelimit-reset-tokens", "1ms"),
	}
	for i := range 7 {
		msgs = append(msgs, respBody(`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"word`+strconv.Itoa(i)+` "}}]}`+"\n\n", false))
	}
	msgs = append(msgs, respBody(`data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":7,"total_tokens":47}}`+"\n\ndata: [DONE]\n\n", true))
	return msgs
}

func runExchange(b *testing.B, c extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) {
	s, err := c.Process(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		b.Fatal(err)
	}
}

// BenchmarkExchange measures one full per-request ext_proc exchange (12
// messages, each waiting for its reply, as Envoy does) over loopback gRPC:
// arl on the memory backend against the no-op processor, side by side.
func BenchmarkExchange(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(nil)
	l, err := limiter.New(limiter.Config{Defaults: bucket.Limits{bucket.Requests: 1 << 40, bucket.Tokens: 1 << 50}},
		memory.New(memory.Options{}), m, log)
	if err != nil {
		b.Fatal(err)
	}
	servers := []struct {
		name string
		srv  extprocv3.ExternalProcessorServer
	}{
		{"noop", noopproc.Server{}},
		{"arl", NewServer(l, m, log, Options{})},
	}
	msgs := exchangeMessages("sk-bench")
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			c := serve(b, s.srv)
			b.ReportAllocs()
			for b.Loop() {
				runExchange(b, c, msgs)
			}
		})
		b.Run(s.name+"-parallel", func(b *testing.B) {
			c := serve(b, s.srv)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					runExchange(b, c, msgs)
				}
			})
		})
	}
}
