package simprovider

import (
	"context"
	"fmt"
	"sync"
)

// Gate holds streams in flight until it is released. A stream that starts
// while a gate is installed (see [Server.HoldStreams]) sends its first
// content event, then waits at the gate until [Gate.Release] is called or its
// client goes away (counted as an aborted stream).
//
// A released gate holds nothing. All methods are safe for concurrent use.
type Gate struct {
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex
	held    int
	changed chan struct{} // closed and replaced whenever held changes
}

// newGate returns an unreleased gate.
func newGate() *Gate {
	return &Gate{release: make(chan struct{}), changed: make(chan struct{})}
}

// Release lets every held stream continue and makes the gate hold nothing
// from now on. Calling it more than once is harmless.
func (g *Gate) Release() {
	g.once.Do(func() { close(g.release) })
}

// Held returns the number of streams waiting at the gate now.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// WaitHeld blocks until at least n streams are waiting at the gate at once,
// or ctx ends (then it returns an error naming how many were held).
func (g *Gate) WaitHeld(ctx context.Context, n int) error {
	for {
		g.mu.Lock()
		held, changed := g.held, g.changed
		g.mu.Unlock()
		if held >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d held streams (%d held): %w", n, held, ctx.Err())
		}
	}
}

// hold waits at the gate until it is released (nil) or ctx ends (ctx's
// error).
func (g *Gate) hold(ctx context.Context) error {
	select {
	case <-g.release:
		return nil
	default:
	}
	g.add(1)
	defer g.add(-1)
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add changes the held count by d and wakes WaitHeld callers.
func (g *Gate) add(d int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held += d
	close(g.changed)
	g.changed = make(chan struct{})
}
