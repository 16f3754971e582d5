package standin

import (
	"errors"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestApplyHeaderMutation(t *testing.T) {
	base := func() headerList {
		return headerList{
			{":authority", "arl.local"}, {":path", "/v1/x"}, {":method", "POST"}, {":scheme", "http"},
			{"host", "arl.local"}, {"content-length", "10"}, {"x-a", "1"}, {"x-a", "2"}, {"x-b", "b"},
		}
	}
	opt := func(o *corev3.HeaderValueOption, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		o.AppendAction = action
		return o
	}
	cases := []struct {
		name         string
		m            *extprocsvc.HeaderMutation
		opts         mutationOptions
		want         headerList // nil: base unchanged
		wantRejected int
		wantValue    int
		wantErr      bool
	}{
		{name: "nil mutation"},
		{
			name: "set overwrites every entry of the key",
			m:    &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader("x-a", "9")}},
			want: headerList{{":authority", "arl.local"}, {":path", "/v1/x"}, {":method", "POST"}, {":scheme", "http"},
				{"host", "arl.local"}, {"content-length", "10"}, {"x-a", "9"}, {"x-b", "b"}},
		},
		{
			name: "append true adds an entry",
			m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "X-B", RawValue: []byte("c")}, Append: wrapperspb.Bool(true)}}},
			want: append(base(), header{"x-b", "c"}),
		},
		{
			name: "ADD_IF_ABSENT and OVERWRITE_IF_EXISTS",
			m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				opt(rawHeader("x-b", "no"), corev3.HeaderValueOption_ADD_IF_ABSENT),
				opt(rawHeader("x-new", "yes"), corev3.HeaderValueOption_ADD_IF_ABSENT),
				opt(rawHeader("x-missing", "no"), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
				opt(rawHeader("x-b", "over"), corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			}},
			want: append(append(base()[:8:8], header{"x-b", "over"}), header{"x-new", "yes"}),
		},
		{
			name: "default rules refuse routing, system and x-envoy headers",
			m: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{
					rawHeader(":authority", "x"), rawHeader("host", "x"), rawHeader(":scheme", "https"),
					rawHeader(":method", "GET"), rawHeader("x-envoy-retry-on", "5xx"),
				},
				RemoveHeaders: []string{":path", "host"},
			},
			wantRejected: 7,
		},
		{
			name: ":method may change when replacing the message",
			m:    &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader(":method", "PUT")}},
			opts: mutationOptions{replacing: true},
			want: headerList{{":authority", "arl.local"}, {":path", "/v1/x"}, {":method", "PUT"}, {":scheme", "http"},
				{"host", "arl.local"}, {"content-length", "10"}, {"x-a", "1"}, {"x-a", "2"}, {"x-b", "b"}},
		},
		{
			name: "content-length skipped where Envoy removes it",
			m:    &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader("content-length", "99")}},
			opts: mutationOptions{removeContentLength: true},
		},
		{
			name: "remove drops every entry",
			m:    &extprocsvc.HeaderMutation{RemoveHeaders: []string{"X-A"}},
			want: slices.Delete(base(), 6, 8),
		},
		{
			name:      "value only becomes an empty value",
			m:         &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-b", Value: "v"}}}},
			want:      append(base()[:8:8], header{"x-b", ""}),
			wantValue: 1,
		},
		{
			name: "both value and raw_value stop the mutation",
			m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				rawHeader("x-first", "applied"),
				{Header: &corev3.HeaderValue{Key: "x-b", Value: "v", RawValue: []byte("v")}},
				rawHeader("x-after", "never"),
			}},
			want:         append(base(), header{"x-first", "applied"}),
			wantRejected: 1,
			wantErr:      true,
		},
		{
			name:         "invalid value character",
			m:            &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader("x-b", "a\r\nb")}},
			wantRejected: 1,
			wantErr:      true,
		},
		{
			name:         "invalid name in remove_headers",
			m:            &extprocsvc.HeaderMutation{RemoveHeaders: []string{"bad header"}},
			wantRejected: 1,
			wantErr:      true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := base()
			res, err := applyHeaderMutation(&l, tc.m, tc.opts)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, errInvalidMutation)) {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			want := tc.want
			if want == nil {
				want = base()
			}
			if !slices.Equal(l, want) {
				t.Errorf("headers = %v, want %v", l, want)
			}
			if res.rejected != tc.wantRejected || res.valueOnly != tc.wantValue {
				t.Errorf("rejected/valueOnly = %d/%d, want %d/%d", res.rejected, res.valueOnly, tc.wantRejected, tc.wantValue)
			}
		})
	}
}

func TestStatusMutation(t *testing.T) {
	cases := []struct {
		value, want  string
		wantRejected int
	}{
		{"429", "429", 0},
		{"99", "200", 1},
		{"abc", "200", 1},
	}
	for _, tc := range cases {
		l := headerList{{":status", "200"}}
		res, err := applyHeaderMutation(&l, &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{rawHeader(":status", tc.value)}}, mutationOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := l.get(":status"); got != tc.want || res.rejected != tc.wantRejected {
			t.Errorf(":status %q: got %q rejected %d, want %q rejected %d", tc.value, got, res.rejected, tc.want, tc.wantRejected)
		}
	}
}

func TestHeaderListProtoUsesRawValue(t *testing.T) {
	m := headerList{{":status", "200"}, {"x-a", "ü"}}.proto()
	if len(m.GetHeaders()) != 2 {
		t.Fatalf("headers = %v", m)
	}
	for _, h := range m.GetHeaders() {
		if h.GetValue() != "" || len(h.GetRawValue()) == 0 {
			t.Errorf("%s: value %q raw %q, want raw_value only", h.GetKey(), h.GetValue(), h.GetRawValue())
		}
	}
}
