// Command arl-load measures arl in the full HTTP path on one machine: HTTP
// clients -> the Envoy stand-in -> ext_proc processor -> the simulated
// provider, all on loopback, all in this process. It runs the same load
// through arl and through a no-op processor, one after the other, and prints
// latency percentiles and throughput side by side with the ratio between
// them.
//
//	go run ./cmd/arl-load -c 16 -n 4000
//
// The load is bounded by -n requests and -d time per run, and goes to
// loopback addresses only.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptive-rate-limiter/arl/cmd/extproc/app"
	"github.com/adaptive-rate-limiter/arl/test/noopproc"
	"github.com/adaptive-rate-limiter/arl/test/simprovider"
	"github.com/adaptive-rate-limiter/arl/test/standin"
)

type options struct {
	concurrency int
	requests    int
	duration    time.Duration
	stream      bool
	keys        int
	processors  []string
}

func main() {
	var o options
	var which string
	flag.IntVar(&o.concurrency, "c", 16, "concurrent clients")
	flag.IntVar(&o.requests, "n", 4000, "requests per run")
	flag.DurationVar(&o.duration, "d", 30*time.Second, "longest run")
	flag.BoolVar(&o.stream, "stream", true, "stream the answers (SSE)")
	flag.IntVar(&o.keys, "keys", 4, "distinct API keys (buckets)")
	flag.StringVar(&which, "processor", "both", "noop, arl or both")
	flag.Parse()
	switch which {
	case "both":
		o.processors = []string{"noop", "arl"}
	case "noop", "arl":
		o.processors = []string{which}
	default:
		fmt.Fprintln(os.Stderr, "arl-load: -processor must be noop, arl or both")
		os.Exit(2)
	}
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "arl-load:", err)
		os.Exit(1)
	}
}

// result is one run's measurements.
type result struct {
	processor string
	latencies []time.Duration
	errors    int64
	elapsed   time.Duration
}

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p * float64(len(r.latencies)-1))
	return r.latencies[i]
}

func run(ctx context.Context, o options, out io.Writer) error {
	provider := httptest.NewServer(simprovider.New(simprovider.Config{OutputTokens: 32, TokensPerChunk: 4}))
	defer provider.Close()
	upstream, _ := url.Parse(provider.URL)

	var results []result
	for _, p := range o.processors {
		addr, stop, err := startProcessor(ctx, p)
		if err != nil {
			return err
		}
		r, err := load(ctx, o, p, addr, upstream)
		stop()
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "processor\trequests\terrors\treq/s\tp50\tp90\tp99\tp50 ratio\tp99 ratio\t\n")
	base := results[0]
	for _, r := range results {
		n := len(r.latencies)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%v\t%v\t%v\t%.2f\t%.2f\t\n", r.processor, n, r.errors,
			float64(n)/r.elapsed.Seconds(), r.percentile(.5).Round(time.Microsecond), r.percentile(.9).Round(time.Microsecond),
			r.percentile(.99).Round(time.Microsecond),
			float64(r.percentile(.5))/float64(base.percentile(.5)), float64(r.percentile(.99))/float64(base.percentile(.99)))
	}
	return tw.Flush()
}

// startProcessor starts the named ext_proc server on a loopback port.
func startProcessor(ctx context.Context, name string) (string, func(), error) {
	if name == "noop" {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		gs := grpc.NewServer()
		extprocv3.RegisterExternalProcessorServer(gs, noopproc.Server{})
		go func() { _ = gs.Serve(lis) }()
		return lis.Addr().String(), gs.Stop, nil
	}
	cfg, err := app.LoadConfig([]string{"ARL_GRPC_ADDR=127.0.0.1:0", "ARL_ADMIN_ADDR=127.0.0.1:0", "ARL_LOG_LEVEL=error",
		"ARL_DEFAULT_RPM=100000000", "ARL_DEFAULT_TPM=100000000000"})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), func(l app.Listening) { ready <- l })
	}()
	select {
	case l := <-ready:
		return l.GRPC.String(), func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		return "", nil, fmt.Errorf("arl: %w", err)
	}
}

// load sends o.requests requests (or runs for o.duration) through a
// stand-in in front of the processor at addr.
func load(ctx context.Context, o options, name, addr string, upstream *url.URL) (result, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return result{}, err
	}
	defer func() { _ = conn.Close() }()
	cfg, err := standin.Default()
	if err != nil {
		return result{}, err
	}
	cfg.Processor, cfg.Upstream = conn, upstream
	si, err := standin.New(cfg)
	if err != nil {
		return result{}, err
	}
	defer si.Close()
	front := httptest.NewServer(si)
	defer front.Close()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency}}
	body := fmt.Sprintf(`{"model":"gpt-4o-mini","max_tokens":64,"stream":%v,"messages":[{"role":"user","content":"Write a haiku about rate limits."}]}`, o.stream)
	send := func(i int) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front.URL+"/v1/chat/completions", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", fmt.Sprintf("Bearer sk-load-%d", i%o.keys))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	// Warm up connections and the provider's buckets.
	for i := range o.concurrency {
		if err := send(i); err != nil {
			return result{}, fmt.Errorf("%s warm-up: %w", name, err)
		}
	}

	var (
		next      atomic.Int64
		errs      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, o.requests)
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(o.duration)
	start := time.Now()
	for range o.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > o.requests || time.Now().After(deadline) {
					return
				}
				t := time.Now()
				err := send(i)
				d := time.Since(t)
				if err != nil {
					if errors.Is(err, context.Canceled) {
						return
					}
					errs.Add(1)
					continue
				}
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	return result{processor: name, latencies: latencies, errors: errs.Load(), elapsed: elapsed}, nil
}
