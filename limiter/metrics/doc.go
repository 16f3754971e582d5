// Package metrics defines every Prometheus metric arl exports, in one place,
// with their names, help texts and labels. A *Metrics is created once in main,
// registered with the admin server's registry, and passed to the components
// that record into it; tests pass New(nil), which records into collectors that
// no registry exports.
//
// Label values are bounded sets (provider names, reasons, outcomes); account
// hashes and model names never become labels, to keep cardinality flat. The
// per-bucket view is the admin API's /v1/buckets.
//
// This package may import Prometheus only.
package metrics
