package backend

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestOperationErr(t *testing.T) {
	down := errors.New("connection refused")
	partial := &BulkError{Errs: []error{nil, down, nil}}
	tests := []struct {
		name string
		err  error
		i    int
		want error // nil: no error for operation i
	}{
		{"success", nil, 0, nil},
		{"whole call failed", down, 2, down},
		{"partial: succeeded", partial, 0, nil},
		{"partial: failed", partial, 1, down},
		{"partial, wrapped", fmt.Errorf("flush: %w", partial), 1, down},
		{"partial, wrapped: succeeded", fmt.Errorf("flush: %w", partial), 2, nil},
		{"partial: out of range", partial, 3, partial},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := OperationErr(tc.err, tc.i)
			if (got == nil) != (tc.want == nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
				t.Fatalf("OperationErr(%v, %d) = %v, want %v", tc.err, tc.i, got, tc.want)
			}
		})
	}
}

func TestBulkErrorMessage(t *testing.T) {
	down := errors.New("connection refused")
	err := error(&BulkError{Errs: []error{nil, down, ErrClosed}})
	if msg := err.Error(); !strings.Contains(msg, "2 of 3") || !strings.Contains(msg, "connection refused") {
		t.Fatalf("message %q", msg)
	}
	if !errors.Is(err, down) || !errors.Is(err, ErrClosed) {
		t.Fatal("the failures do not unwrap")
	}
}
