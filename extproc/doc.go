// Package extproc speaks Envoy's external-processing protocol
// (envoy.service.ext_proc.v3) on behalf of the limiter: one state machine per
// ext_proc stream turns Envoy's ProcessingRequests into calls on a
// limiter.Exchange, and the limiter's verdicts into ProcessingResponses,
// ImmediateResponses and mode overrides.
//
// It holds no business logic: what to admit, what to count and what to answer
// is the limiter's. Envoy protobuf types never leave this package.
//
// This package may import the limiter and its sub-packages; it must not import
// a backend.
package extproc
