//go:build race

package usage

// raceEnabled reports whether the race detector is on. The quadratic
// split-everywhere checks sample positions under it: it slows each byte
// touched some tenfold, and these single-goroutine loops give it nothing to
// find.
const raceEnabled = true
