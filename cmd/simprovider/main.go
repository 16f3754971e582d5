package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/adaptive-rate-limiter/arl/test/simprovider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "simprovider:", err)
		os.Exit(1)
	}
}

// options are the command's settings.
type options struct {
	addr             string
	dialect          string
	rpm, tpm         int64
	rpd              int64
	inputTPM         int64
	outputTPM        int64
	tokensPerMonth   int64
	window           time.Duration
	outputTokens     int
	tokensPerChunk   int
	chunkDelay       time.Duration
	defaultMaxTokens int64
	logLevel         slog.Level
}

// shutdownTimeout bounds the graceful shutdown of open connections.
const shutdownTimeout = 10 * time.Second

// run parses the settings, listens and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	opts, err := parseOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.addr, err)
	}
	return serve(ctx, ln, opts, logger)
}

// parseOptions reads the environment, then the flags in args.
func parseOptions(args []string, getenv func(string) string, output io.Writer) (options, error) {
	o := options{
		addr:             ":8080",
		dialect:          "openai",
		window:           simprovider.DefaultWindow,
		outputTokens:     simprovider.DefaultOutputTokens,
		tokensPerChunk:   simprovider.DefaultTokensPerChunk,
		defaultMaxTokens: simprovider.DefaultMaxTokens,
		logLevel:         slog.LevelInfo,
	}
	if v := getenv("SIMPROVIDER_ADDR"); v != "" {
		o.addr = v
	}
	if v := getenv("SIMPROVIDER_DIALECT"); v != "" {
		o.dialect = v
	}
	var errs []error
	envInt := func(name string, dst *int64) {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not an integer", name, v))
				return
			}
			*dst = n
		}
	}
	envDuration := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
				return
			}
			*dst = d
		}
	}
	outputTokens, tokensPerChunk := int64(o.outputTokens), int64(o.tokensPerChunk)
	envInt("SIMPROVIDER_RPM", &o.rpm)
	envInt("SIMPROVIDER_TPM", &o.tpm)
	envInt("SIMPROVIDER_RPD", &o.rpd)
	envInt("SIMPROVIDER_INPUT_TPM", &o.inputTPM)
	envInt("SIMPROVIDER_OUTPUT_TPM", &o.outputTPM)
	envInt("SIMPROVIDER_TOKENS_PER_MONTH", &o.tokensPerMonth)
	envInt("SIMPROVIDER_OUTPUT_TOKENS", &outputTokens)
	envInt("SIMPROVIDER_TOKENS_PER_CHUNK", &tokensPerChunk)
	envInt("SIMPROVIDER_DEFAULT_MAX_TOKENS", &o.defaultMaxTokens)
	envDuration("SIMPROVIDER_WINDOW", &o.window)
	envDuration("SIMPROVIDER_CHUNK_DELAY", &o.chunkDelay)
	if v := getenv("SIMPROVIDER_LOG_LEVEL"); v != "" {
		if err := o.logLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("SIMPROVIDER_LOG_LEVEL=%q: %w", v, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return options{}, fmt.Errorf("environment: %w", err)
	}

	fs := flag.NewFlagSet("simprovider", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&o.addr, "addr", o.addr, "listen address (SIMPROVIDER_ADDR)")
	fs.StringVar(&o.dialect, "dialect", o.dialect,
		"provider API to speak: "+strings.Join(simprovider.DialectNames(), ", ")+" (SIMPROVIDER_DIALECT)")
	fs.Int64Var(&o.rpm, "rpm", o.rpm, "requests per window and API key, 0 for unlimited (SIMPROVIDER_RPM)")
	fs.Int64Var(&o.tpm, "tpm", o.tpm, "tokens per window and API key, 0 for unlimited (SIMPROVIDER_TPM)")
	fs.Int64Var(&o.rpd, "rpd", o.rpd, "requests per day and API key, 0 for unlimited (SIMPROVIDER_RPD)")
	fs.Int64Var(&o.inputTPM, "input-tpm", o.inputTPM, "prompt tokens per window and API key, 0 for unlimited (SIMPROVIDER_INPUT_TPM)")
	fs.Int64Var(&o.outputTPM, "output-tpm", o.outputTPM, "output tokens per window and API key, 0 for unlimited (SIMPROVIDER_OUTPUT_TPM)")
	fs.Int64Var(&o.tokensPerMonth, "tokens-per-month", o.tokensPerMonth,
		"tokens per 30 days and API key, 0 for unlimited (SIMPROVIDER_TOKENS_PER_MONTH)")
	fs.DurationVar(&o.window, "window", o.window, "time in which an empty limit refills (SIMPROVIDER_WINDOW)")
	fs.Int64Var(&outputTokens, "output-tokens", outputTokens, "tokens per generated completion (SIMPROVIDER_OUTPUT_TOKENS)")
	fs.Int64Var(&tokensPerChunk, "tokens-per-chunk", tokensPerChunk, "tokens per streamed event (SIMPROVIDER_TOKENS_PER_CHUNK)")
	fs.DurationVar(&o.chunkDelay, "chunk-delay", o.chunkDelay, "pause between streamed events (SIMPROVIDER_CHUNK_DELAY)")
	fs.Int64Var(&o.defaultMaxTokens, "default-max-tokens", o.defaultMaxTokens,
		"output budget charged when a request names none (SIMPROVIDER_DEFAULT_MAX_TOKENS)")
	fs.TextVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error (SIMPROVIDER_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	o.dialect = strings.ToLower(strings.TrimSpace(o.dialect))
	switch _, known := simprovider.DialectFor(o.dialect); {
	case !known:
		return options{}, fmt.Errorf("dialect %q is not one of %s", o.dialect, strings.Join(simprovider.DialectNames(), ", "))
	case o.rpm < 0 || o.tpm < 0 || o.rpd < 0 || o.inputTPM < 0 || o.outputTPM < 0 || o.tokensPerMonth < 0:
		return options{}, errors.New("rpm, tpm, rpd, input-tpm, output-tpm and tokens-per-month must not be negative")
	case o.window <= 0:
		return options{}, fmt.Errorf("window %v must be positive", o.window)
	case outputTokens < 1 || outputTokens > 1<<20:
		return options{}, fmt.Errorf("output-tokens %d must be between 1 and %d", outputTokens, 1<<20)
	case tokensPerChunk < 1 || tokensPerChunk > 1<<20:
		return options{}, fmt.Errorf("tokens-per-chunk %d must be between 1 and %d", tokensPerChunk, 1<<20)
	case o.chunkDelay < 0:
		return options{}, fmt.Errorf("chunk-delay %v must not be negative", o.chunkDelay)
	case o.defaultMaxTokens < 1:
		return options{}, fmt.Errorf("default-max-tokens %d must be positive", o.defaultMaxTokens)
	}
	o.outputTokens, o.tokensPerChunk = int(outputTokens), int(tokensPerChunk)
	return o, nil
}

// serve serves the simulator on ln until ctx ends, then shuts down
// gracefully.
func serve(ctx context.Context, ln net.Listener, o options, logger *slog.Logger) error {
	dialect, ok := simprovider.DialectFor(o.dialect)
	if !ok {
		return fmt.Errorf("unknown dialect %q", o.dialect)
	}
	sim := simprovider.New(simprovider.Config{
		Dialect:          dialect,
		RPM:              o.rpm,
		TPM:              o.tpm,
		RPD:              o.rpd,
		InputTPM:         o.inputTPM,
		OutputTPM:        o.outputTPM,
		TokensPerMonth:   o.tokensPerMonth,
		Window:           o.window,
		OutputTokens:     o.outputTokens,
		TokensPerChunk:   o.tokensPerChunk,
		ChunkDelay:       o.chunkDelay,
		DefaultMaxTokens: o.defaultMaxTokens,
		Logger:           logger,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(anonymize(sim.Stats())); err != nil {
			logger.Warn("write stats", slog.String("error", err.Error()))
		}
	})
	mux.Handle("/", sim)

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("simprovider listening",
		slog.String("addr", ln.Addr().String()), slog.String("dialect", o.dialect),
		slog.Int64("rpm", o.rpm), slog.Int64("tpm", o.tpm), slog.Int64("rpd", o.rpd),
		slog.Int64("input_tpm", o.inputTPM), slog.Int64("output_tpm", o.outputTPM),
		slog.Int64("tokens_per_month", o.tokensPerMonth), slog.String("window", o.window.String()),
		slog.Int("output_tokens", o.outputTokens), slog.String("chunk_delay", o.chunkDelay.String()))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("simprovider shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // cut the streams that did not finish in time
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// anonymize replaces the API keys in s by their KeyID.
func anonymize(s simprovider.Stats) simprovider.Stats {
	keys := make(map[string]simprovider.KeyStats, len(s.Keys))
	for k, v := range s.Keys {
		keys[simprovider.KeyID(k)] = v
	}
	s.Keys = keys
	return s
}
