// Package evidencepb holds the Go code generated from evidence.proto, the
// wire messages of ccnp node attestation. Use package evidence to build,
// encode and decode them: it sets the version and enforces the limits.
package evidencepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative evidence.proto
