//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// stopSignal and contSignal pause and resume a process.
func stopSignal() os.Signal { return syscall.SIGSTOP }

func contSignal() os.Signal { return syscall.SIGCONT }
