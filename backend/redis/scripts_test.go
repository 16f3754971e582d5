package redis

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

func TestHeaderFollowsBucket(t *testing.T) {
	h := header()
	for d := range bucket.NumDimensions {
		if !strings.Contains(h, `"`+d.String()+`"`) {
			t.Errorf("header lacks dimension %s:\n%s", d, h)
		}
	}
	if !strings.Contains(h, fmt.Sprintf("local NDIM = %d\n", bucket.NumDimensions)) {
		t.Errorf("header's NDIM is not %d:\n%s", bucket.NumDimensions, h)
	}
	s, err := loadScripts()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range s.all() {
		if !strings.HasPrefix(sc.src, h) || !strings.Contains(sc.src, "local function advance(") {
			t.Errorf("script %s lacks the header or the prelude", sc.name)
		}
	}
}

func TestMicros(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int64
	}{
		{0, 0},
		{time.Nanosecond, 1}, // a positive duration never becomes zero
		{999 * time.Nanosecond, 1},
		{time.Microsecond, 1},
		{1001 * time.Nanosecond, 2},
		{20 * time.Second, 20_000_000},
		{-1500 * time.Nanosecond, -1},
		{time.Duration(math.MaxInt64), math.MaxInt64 / 1000},
	}
	for _, tc := range tests {
		if got := micros(tc.d); got != tc.want {
			t.Errorf("micros(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestDecodeRejectsMalformedReplies(t *testing.T) {
	valid := []any{"1", "0", "", "1,0,1,0,1,1,1"}
	if _, err := decodeReserve(valid); err != nil {
		t.Fatalf("valid reply: %v", err)
	}
	tests := []struct {
		name  string
		reply any
	}{
		{"not a list", "1"},
		{"nil", nil},
		{"short", []any{"1", "0", ""}},
		{"integer element", []any{int64(1), "0", "", "1,0,1,0,1,1,1"}},
		{"bad wait", []any{"0", "soon", "tokens", "0,0,0,0,0,0,0"}},
		{"short vector", []any{"1", "0", "", "1,0,1"}},
		{"bad amount", []any{"1", "0", "", "1,0,x,0,1,1,1"}},
		{"fractional amount", []any{"1", "0", "", "1,0,1.5,0,1,1,1"}},
		{"flag 2", []any{"2", "0", "", "1,0,1,0,1,1,1"}},
		{"empty flag", []any{"", "0", "", "1,0,1,0,1,1,1"}},
		{"flag true", []any{"true", "0", "", "1,0,1,0,1,1,1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeReserve(tc.reply); err == nil {
				t.Fatal("decoded")
			}
		})
	}
	if _, ok, err := decodeGet([]any{}); ok || err != nil {
		t.Fatalf("empty get reply: %v %v", ok, err)
	}
	state := make([]any, stateFields)
	for i := range state {
		state[i] = "0"
	}
	if _, ok, err := decodeGet(state); !ok || err != nil {
		t.Fatalf("zero state: %v %v", ok, err)
	}
	state[8] = "lots" // the first dimension's level
	if _, _, err := decodeGet(state); err == nil {
		t.Fatal("decoded a state with a bad level")
	}
	if _, _, err := decodeGet(state[:10]); err == nil {
		t.Fatal("decoded a short state")
	}
	state[8] = "0"
	state[3] = "yes" // learned
	if _, _, err := decodeGet(state); err == nil {
		t.Fatal("decoded a state with a bad learned flag")
	}
}

// TestDecodeFlags: a flag is exactly "1" or "0"; any other reply is an
// error, never a denial or a reservation not found.
func TestDecodeFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
		ok   bool
	}{
		{"1", true, true}, {"0", false, true},
		{"", false, false}, {"2", false, false}, {"-1", false, false}, {"true", false, false},
		{"01", false, false}, {"1 ", false, false}, {"1.0", false, false},
	} {
		got, err := parseFlag(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parseFlag(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if r, err := decodeSettle([]any{tc.in, "1,0,1,0,1,1,1"}); r.Found != tc.want || (err == nil) != tc.ok {
			t.Errorf("decodeSettle(%q) = %+v, %v", tc.in, r, err)
		}
		if found, err := decodeExtend([]any{tc.in}); found != tc.want || (err == nil) != tc.ok {
			t.Errorf("decodeExtend(%q) = %v, %v", tc.in, found, err)
		}
	}
	if r, err := decodeSettle([]any{"0", ""}); r.Found || err != nil {
		t.Errorf("settle not found: %+v %v", r, err)
	}
	if _, err := decodeSettle([]any{"1", ""}); err == nil {
		t.Error("settle found without a taken vector decoded")
	}
}

func TestParseState(t *testing.T) {
	f := make([]string, stateFields)
	for i := range f {
		f[i] = "0"
	}
	f[0], f[1], f[2], f[3], f[4], f[5] = "1796299200000000", "1796299201500000", "tokens", "1", "2", "1796299199000000"
	g := f[6+5*int(bucket.Tokens):]
	g[0], g[1], g[2], g[3], g[4] = "1000", "60000000", "123.25", "1796299220000000", "1000"
	s, err := parseState(f)
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMicro(1796299200000000)
	d := s.Dims[bucket.Tokens]
	if !s.Updated.Equal(at) || !s.BlockedUntil.Equal(at.Add(1500*time.Millisecond)) || s.BlockReason != "tokens" ||
		!s.Learned || s.InFlight != 2 || !s.ObservedAt.Equal(at.Add(-time.Second)) {
		t.Fatalf("meta %+v", s)
	}
	if d.Limit != 1000 || d.Window != time.Minute || d.Level != 123.25 || !d.HoldUntil.Equal(at.Add(20*time.Second)) || d.HoldRefill != 1000 {
		t.Fatalf("tokens %+v", d)
	}
	if !s.Dims[bucket.Requests].HoldUntil.IsZero() {
		t.Fatal("0 did not decode as the zero time")
	}
}
