//go:build !linux

package redistest

import "os/exec"

// setDeathSignal does nothing outside Linux: servers are still killed by the
// test's cleanup, but not when the test process itself is killed.
func setDeathSignal(*exec.Cmd) {}

// isStopped cannot tell outside Linux, and reports the process stopped: the
// signal was sent, and usually acts at once.
func isStopped(int) (bool, error) { return true, nil }
