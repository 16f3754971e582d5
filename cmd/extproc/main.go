// Command extproc runs arl: the Envoy ext_proc gRPC server and its admin HTTP
// server, configured from ARL_* environment variables (see README.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/adaptive-rate-limiter/arl/cmd/extproc/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := app.Main(ctx, os.Environ(), os.Stderr)
	var cfgErr *app.ConfigError
	switch {
	case errors.As(err, &cfgErr):
		fmt.Fprintf(os.Stderr, "arl: invalid configuration: %v\n", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "arl: %v\n", err)
		os.Exit(1)
	}
}
