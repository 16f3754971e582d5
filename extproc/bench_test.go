package extproc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"

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
		respHeaders("200", "content-type", "text/event-stream", "x-ratelimit-limit-requests", "1000000000", "x-ratelimit-remaining-requests", "999999999",
			"x-ratelimit-reset-requests", "1ms", "x-ratelimit-limit-tokens", "1000000000000", "x-ratelimit-remaining-tokens", "999999999700", "x-ratelimit-reset-tokens", "1ms"),
	}
	for i := range 7 {
		msgs = append(msgs, respBody(`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"word`+strconv.Itoa(i)+` "}}]}`+"\n\n", false))
	}
	msgs = append(msgs, respBody(`data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":7,"total_tokens":47}}`+"\n\ndata: [DONE]\n\n", true))
	return msgs
}

// runExchange plays one exchange and checks that every message got the reply
// of its own kind: a rejection (an ImmediateResponse) would measure a
// shortcut, not the exchange.
func runExchange(c extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) error {
	s, err := c.Process(context.Background())
	if err != nil {
		return err
	}
	for i, m := range msgs {
		if err := s.Send(m); err != nil {
			return err
		}
		r, err := s.Recv()
		if err != nil {
			return err
		}
		if want, got := replyKind(m), replyKind(r); want != got {
			return fmt.Errorf("message %d: reply %s to %s", i, got, want)
		}
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if _, err := s.Recv(); err != io.EOF {
		return fmt.Errorf("end of stream: %v", err)
	}
	return nil
}

// replyKind names the phase of a request or a reply: "request_body" for both
// a request body and the reply to it, "immediate_response" for a rejection.
func replyKind(m interface{ ProtoReflect() protoreflect.Message }) string {
	pm := m.ProtoReflect()
	oneof := pm.Descriptor().Oneofs().ByName("request")
	if oneof == nil {
		oneof = pm.Descriptor().Oneofs().ByName("response")
	}
	if f := pm.WhichOneof(oneof); f != nil {
		return string(f.Name())
	}
	return "none"
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
				if err := runExchange(c, msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"-parallel", func(b *testing.B) {
			c := serve(b, s.srv)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := runExchange(c, msgs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
