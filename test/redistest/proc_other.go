//go:build !linux

package redistest

import "os/exec"

// setDeathSignal does nothing outside Linux: servers are still killed by the
// test's cleanup, but not when the test process itself is killed.
func setDeathSignal(*exec.Cmd) {}
