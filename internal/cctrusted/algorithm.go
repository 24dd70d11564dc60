// Package cctrusted is the CC Trusted API in Go: algorithms, digests, the index
// spaces of integrity measurement registers (IMRs), events, reports, the
// Provider interface every TEE implements, and event-log replay.
//
// The package does no I/O so that the agent, the server and the CLI can share
// it without pulling in device access.
package cctrusted

import (
	"crypto"
	_ "crypto/sha1"   // registers SHA-1 for Algorithm.Hash
	_ "crypto/sha256" // registers SHA-256 for Algorithm.Hash
	_ "crypto/sha512" // registers SHA-384/512 for Algorithm.Hash
	"encoding/hex"
	"fmt"
	"strings"
)

// Algorithm is a TCG algorithm identifier (TPM_ALG_ID).
type Algorithm uint16

// The hash algorithms that appear in TDX and TPM measurements.
const (
	AlgSHA1   Algorithm = 0x0004
	AlgSHA256 Algorithm = 0x000B
	AlgSHA384 Algorithm = 0x000C
	AlgSHA512 Algorithm = 0x000D
	AlgSM3256 Algorithm = 0x0012
)

var algorithms = []struct {
	alg  Algorithm
	name string
	size int
	hash crypto.Hash
}{
	{AlgSHA1, "sha1", 20, crypto.SHA1},
	{AlgSHA256, "sha256", 32, crypto.SHA256},
	{AlgSHA384, "sha384", 48, crypto.SHA384},
	{AlgSHA512, "sha512", 64, crypto.SHA512},
	{AlgSM3256, "sm3_256", 32, 0},
}

// String returns the lower-case TCG name, e.g. "sha384".
func (a Algorithm) String() string {
	for _, e := range algorithms {
		if e.alg == a {
			return e.name
		}
	}
	return fmt.Sprintf("alg(0x%04x)", uint16(a))
}

// Size returns the digest size in bytes, or 0 for an unknown algorithm.
func (a Algorithm) Size() int {
	for _, e := range algorithms {
		if e.alg == a {
			return e.size
		}
	}
	return 0
}

// Known reports whether a is one of the algorithms this package knows.
func (a Algorithm) Known() bool { return a.Size() != 0 }

// Hash returns the Go hash for a. SM3 has none in the standard library, so
// replaying an SM3 bank is refused rather than guessed.
func (a Algorithm) Hash() (crypto.Hash, error) {
	for _, e := range algorithms {
		if e.alg == a && e.hash != 0 {
			return e.hash, nil
		}
	}
	return 0, fmt.Errorf("cctrusted: no hash implementation for %v", a)
}

// AlgorithmFromHash maps a Go hash to its TCG identifier.
func AlgorithmFromHash(h crypto.Hash) (Algorithm, error) {
	for _, e := range algorithms {
		if e.hash == h && h != 0 {
			return e.alg, nil
		}
	}
	return 0, fmt.Errorf("cctrusted: hash %v has no TCG algorithm id here", h)
}

// ParseAlgorithm accepts a name ("sha384", "SHA-384") or a number ("0xc", "12").
func ParseAlgorithm(s string) (Algorithm, error) {
	n := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
	if n == "sm3" { // SM3 has one size: the usual short name
		return AlgSM3256, nil
	}
	for _, e := range algorithms {
		if e.name == n || strings.ReplaceAll(e.name, "_", "") == n {
			return e.alg, nil
		}
	}
	var v uint16
	if _, err := fmt.Sscanf(n, "0x%x", &v); err == nil && Algorithm(v).Known() {
		return Algorithm(v), nil
	}
	if _, err := fmt.Sscanf(n, "%d", &v); err == nil && Algorithm(v).Known() {
		return Algorithm(v), nil
	}
	return 0, fmt.Errorf("cctrusted: unknown algorithm %q (want sha1, sha256, sha384, sha512, sm3_256 or a TCG id)", s)
}

// Digest is a measurement value with the algorithm that produced it.
type Digest struct {
	Alg   Algorithm
	Value []byte
}

// Hex returns the value in lower-case hex.
func (d Digest) Hex() string { return hex.EncodeToString(d.Value) }

// String returns "alg:hex".
func (d Digest) String() string { return d.Alg.String() + ":" + d.Hex() }

// Validate checks that the value has the algorithm's size.
func (d Digest) Validate() error {
	if !d.Alg.Known() {
		return fmt.Errorf("cctrusted: digest with unknown algorithm 0x%04x", uint16(d.Alg))
	}
	if len(d.Value) != d.Alg.Size() {
		return fmt.Errorf("cctrusted: %v digest is %d bytes, want %d", d.Alg, len(d.Value), d.Alg.Size())
	}
	return nil
}
