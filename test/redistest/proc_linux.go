package redistest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// setDeathSignal makes the kernel kill the server when the test process
// dies, so that a test binary killed by a timeout leaves no redis-server
// behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// isStopped reports whether process pid is stopped by a signal: the state
// in /proc/<pid>/stat, the field after the parenthesised command name, is T.
func isStopped(pid int) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false, fmt.Errorf("process state: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false, fmt.Errorf("process state: unexpected /proc/%d/stat %q", pid, b)
	}
	return b[i+2] == 'T', nil
}
