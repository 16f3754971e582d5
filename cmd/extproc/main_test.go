package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main itself when the test binary is started as the server by
// TestExitStatus.
func TestMain(m *testing.M) {
	if os.Getenv("ARL_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestExitStatus: an invalid configuration stops the server at start-up with
// exit status 2 and a message naming the variable.
func TestExitStatus(t *testing.T) {
	tests := []struct {
		env      string
		variable string
	}{
		{"ARL_GRPC_ADDR=notanaddr", "ARL_GRPC_ADDR"},
		{"ARL_MODE=turbo", "ARL_MODE"},
		{"ARL_DEFAULT_TPM=lots", "ARL_DEFAULT_TPM"},
	}
	for _, tc := range tests {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ARL_TEST_RUN_MAIN=1", tc.env)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s: %v, want exit status 2; output %q", tc.env, err, out)
			continue
		}
		if !strings.Contains(string(out), "arl: invalid configuration: "+tc.variable+": ") {
			t.Errorf("%s: output %q does not name %s", tc.env, out, tc.variable)
		}
	}
}
