package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/test/simprovider"
)

func TestParseOptions(t *testing.T) {
	defaults := options{
		addr: ":8080", dialect: "openai", window: time.Minute, outputTokens: 16, tokensPerChunk: 1,
		defaultMaxTokens: 4096, logLevel: slog.LevelInfo,
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(o *options)
		wantErr string
	}{
		{name: "defaults", want: func(*options) {}},
		{
			name: "environment",
			env: map[string]string{
				"SIMPROVIDER_ADDR": "127.0.0.1:9999", "SIMPROVIDER_RPM": "60", "SIMPROVIDER_TPM": "10000",
				"SIMPROVIDER_WINDOW": "10s", "SIMPROVIDER_OUTPUT_TOKENS": "32", "SIMPROVIDER_TOKENS_PER_CHUNK": "4",
				"SIMPROVIDER_CHUNK_DELAY": "20ms", "SIMPROVIDER_DEFAULT_MAX_TOKENS": "512", "SIMPROVIDER_LOG_LEVEL": "debug",
			},
			want: func(o *options) {
				o.addr, o.rpm, o.tpm, o.window = "127.0.0.1:9999", 60, 10000, 10*time.Second
				o.outputTokens, o.tokensPerChunk, o.chunkDelay = 32, 4, 20*time.Millisecond
				o.defaultMaxTokens, o.logLevel = 512, slog.LevelDebug
			},
		},
		{
			name: "flags win over environment",
			args: []string{"-addr", ":1", "-rpm", "5", "-tpm=7", "-output-tokens", "3", "-chunk-delay", "1s", "-log-level", "warn"},
			env:  map[string]string{"SIMPROVIDER_RPM": "60", "SIMPROVIDER_TPM": "10000", "SIMPROVIDER_OUTPUT_TOKENS": "32"},
			want: func(o *options) {
				o.addr, o.rpm, o.tpm, o.outputTokens, o.chunkDelay, o.logLevel = ":1", 5, 7, 3, time.Second, slog.LevelWarn
			},
		},
		{
			name: "dialect and quotas from the environment",
			env: map[string]string{"SIMPROVIDER_DIALECT": "Anthropic", "SIMPROVIDER_RPD": "1000", "SIMPROVIDER_INPUT_TPM": "40000",
				"SIMPROVIDER_OUTPUT_TPM": "8000", "SIMPROVIDER_TOKENS_PER_MONTH": "9"},
			want: func(o *options) {
				o.dialect, o.rpd, o.inputTPM, o.outputTPM, o.tokensPerMonth = "anthropic", 1000, 40000, 8000, 9
			},
		},
		{
			name: "dialect and quotas from flags",
			args: []string{"-dialect", "groq", "-rpd", "14400", "-input-tpm", "1", "-output-tpm", "2", "-tokens-per-month", "3"},
			env:  map[string]string{"SIMPROVIDER_DIALECT": "anthropic"},
			want: func(o *options) {
				o.dialect, o.rpd, o.inputTPM, o.outputTPM, o.tokensPerMonth = "groq", 14400, 1, 2, 3
			},
		},
		{name: "unknown dialect", args: []string{"-dialect", "deepseek"}, wantErr: `dialect "deepseek" is not one of anthropic, azure`},
		{name: "negative rpd", args: []string{"-rpd", "-1"}, wantErr: "negative"},
		{name: "bad env quota", env: map[string]string{"SIMPROVIDER_OUTPUT_TPM": "x"}, wantErr: "SIMPROVIDER_OUTPUT_TPM"},
		{name: "bad env integer", env: map[string]string{"SIMPROVIDER_RPM": "many"}, wantErr: "SIMPROVIDER_RPM"},
		{name: "bad env duration", env: map[string]string{"SIMPROVIDER_CHUNK_DELAY": "5"}, wantErr: "SIMPROVIDER_CHUNK_DELAY"},
		{name: "bad env log level", env: map[string]string{"SIMPROVIDER_LOG_LEVEL": "loud"}, wantErr: "SIMPROVIDER_LOG_LEVEL"},
		{name: "bad flag", args: []string{"-rpm", "x"}, wantErr: "invalid value"},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "not defined"},
		{name: "extra argument", args: []string{"serve"}, wantErr: "unexpected arguments"},
		{name: "negative rpm", args: []string{"-rpm", "-1"}, wantErr: "negative"},
		{name: "zero window", args: []string{"-window", "0s"}, wantErr: "window"},
		{name: "zero output tokens", args: []string{"-output-tokens", "0"}, wantErr: "output-tokens"},
		{name: "zero tokens per chunk", env: map[string]string{"SIMPROVIDER_TOKENS_PER_CHUNK": "0"}, wantErr: "tokens-per-chunk"},
		{name: "negative chunk delay", args: []string{"-chunk-delay", "-1s"}, wantErr: "chunk-delay"},
		{name: "zero default max tokens", args: []string{"-default-max-tokens", "0"}, wantErr: "default-max-tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			got, err := parseOptions(tt.args, getenv, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			want := defaults
			tt.want(&want)
			if got != want {
				t.Errorf("options = %+v\nwant      %+v", got, want)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("run -h = %v, want nil", err)
	}
	if !strings.Contains(out.String(), "SIMPROVIDER_RPM") {
		t.Errorf("usage does not name the environment variables:\n%s", out.String())
	}
	_, err := parseOptions([]string{"-help"}, func(string) string { return "" }, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseOptions -help = %v, want flag.ErrHelp", err)
	}
}

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"-rpm", "1", "-output-tokens", "2", "-log-level", "debug"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: o.logLevel}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, o, logger) }()

	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second}
	post := func() *http.Response {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk-test")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	resp := post()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-ratelimit-remaining-requests") != "0" ||
		!strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("first request: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	resp = post()
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("retry-after") != "60" {
		t.Fatalf("second request: %d, retry-after %q", resp.StatusCode, resp.Header.Get("retry-after"))
	}

	resp, err = client.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	resp, err = client.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st simprovider.Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("decode stats: %v", err)
	}
	k, ok := st.Keys[simprovider.KeyID("sk-test")]
	if !ok || k.Admitted != 1 || k.Rejected["requests"] != 1 || k.StreamsCompleted != 1 || k.TokensGenerated != 2 {
		t.Errorf("stats %+v", st)
	}
	if _, leaked := st.Keys["sk-test"]; leaked {
		t.Errorf("stats expose the API key")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}

	// Every log line is JSON; the listen address and per-request lines are there.
	var sawListen, sawAnswer bool
	sc := bufio.NewScanner(&logs)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		sawListen = sawListen || (line["msg"] == "simprovider listening" && line["addr"] == ln.Addr().String())
		sawAnswer = sawAnswer || line["msg"] == "answer"
		if strings.Contains(sc.Text(), "sk-test") {
			t.Errorf("log line prints the API key: %s", sc.Text())
		}
	}
	if !sawListen || !sawAnswer {
		t.Errorf("logs lack the listen or answer lines:\n%s", logs.String())
	}
}

func TestServeDialect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"-dialect", "anthropic", "-rpm", "1", "-output-tpm", "8000"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, o, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	post := func() *http.Response {
		req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v1/messages",
			strings.NewReader(`{"model":"claude","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Api-Key", "sk-ant-test")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := post()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("anthropic-ratelimit-requests-remaining") != "0" ||
		resp.Header.Get("anthropic-ratelimit-output-tokens-limit") != "8000" {
		t.Fatalf("first request: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := post(); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("retry-after") != "60" {
		t.Fatalf("second request: %d, retry-after %q", resp.StatusCode, resp.Header.Get("retry-after"))
	}
}
