//go:build !unix

package redistest

import "os"

// stopSignal and contSignal are nil outside Unix: processes cannot be paused.
func stopSignal() os.Signal { return nil }

func contSignal() os.Signal { return nil }
