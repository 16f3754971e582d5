// Package standin is an Envoy stand-in: it plays Envoy's side of the ext_proc protocol
// (envoy.service.ext_proc.v3, the client of ExternalProcessor.Process) exactly as
// envoy/envoy.yaml configures the filter, and forwards the processed requests to an HTTP
// upstream. End-to-end tests, demos and the load tool use it where no Envoy binary exists.
//
// A StandIn is an http.Handler; wrap it in an httptest.Server. For each HTTP request it opens
// one Process stream and sends, in order, the request headers (with protocol_config), the
// buffered request body, the upstream's response headers and each response body chunk as it
// arrives, waiting for the matching reply to each within message_timeout. It honours
// mode_override, override_message_timeout, immediate responses, header and body mutations,
// failure_mode_allow and the buffer limit the way Envoy's ext_proc filter does; the file
// exchange.go names the Envoy behaviour behind each step. Stats counts what happened so tests
// can assert on it.
//
// Envoy facts the stand-in reproduces, which arl must live with:
//   - header values travel in raw_value only; in a mutation Envoy reads raw_value only, so a
//     header set through `value` arrives empty (counted in Stats.ValueOnlyHeaders), and a
//     header setting both is refused: the request fails with status_on_error (500) even with
//     failure_mode_allow;
//   - mode_override counts only in replies to request or response headers, and its body modes
//     are taken as given (unset means NONE);
//   - override_message_timeout is honoured once per message, only within [1ms,
//     max_message_timeout]; it restarts the timer and nothing else in that message counts;
//   - a timeout, a gRPC error or a spurious reply fails open with failure_mode_allow (the rest
//     of the exchange bypasses the processor), else gets a local reply (504 for a timeout,
//     status_on_error otherwise), or a reset once the response has started;
//   - a processor that ends its stream with OK status lets the request through unprocessed;
//   - Envoy's own local replies (413 above the buffer limit, 503 when the upstream is down)
//     are not sent to the processor;
//   - the stream is closed by half-close plus reset (the processor may see io.EOF or
//     codes.Canceled) when the exchange ends, and by a reset (codes.Canceled) when the client
//     disconnects; with GracefulClose it is half-closed and left to the processor to end.
//
// Known differences from Envoy: in STREAMED mode Envoy may send the next chunk before the
// previous reply arrives (replies still apply in order); the stand-in sends one chunk at a
// time. Processor messages that arrive while no reply is awaited are handled when the next
// message is sent, not at once. Request headers reach the processor in sorted order (Go does
// not keep the wire order), and trailers are never sent. Only Envoy's default header mutation
// rules are emulated; New refuses filter settings it does not emulate.
//
// StartEnvoy runs a real Envoy with the same bootstrap where an envoy binary is available.
//
// The package is a black-box client of the ext_proc protocol: it must not import arl's extproc,
// limiter or backend packages. It may import package envoy (the bootstrap) and
// go-control-plane.
package standin
