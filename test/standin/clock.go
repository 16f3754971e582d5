package standin

import "time"

// Clock makes the timers that bound each processor message (message_timeout and its
// overrides) and the graceful close. Tests substitute a fake to step through timeouts without
// waiting; nil in Config means the real clock.
type Clock interface {
	// NewTimer starts a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that the stand-in uses.
type Timer interface {
	// C delivers the time when the timer fires.
	C() <-chan time.Time
	// Stop stops the timer; it reports whether the timer was active.
	Stop() bool
	// Reset restarts the timer with duration d; it reports whether the timer was active.
	Reset(d time.Duration) bool
}

// realClock is Clock backed by package time.
type realClock struct{}

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
