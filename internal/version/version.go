// Package version holds what a ccnp-spire binary knows about its own build:
// the release version and the commit it was built from, set by the Makefile
// with -ldflags -X (from git describe), else read from the Go build info
// (module version, vcs.revision), so that an operator, SPIRE's logs and the
// server's audit line can tell which build attested a node.
//
// Nothing here reads the clock: a -trimpath build of one commit gives the
// same bytes on every machine (make release-check compares two builds).
package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at link time by the Makefile:
//
//	-X github.com/ccnp-spire/ccnp-spire/internal/version.version=v1.2.3
//	-X github.com/ccnp-spire/ccnp-spire/internal/version.commit=<40 hex>
//
// They stay unexported variables so that only the linker (not a package)
// can change them.
var (
	version string
	commit  string
)

// Unknown is what Version and Commit say when neither the linker nor the
// build info knew (a plain `go build` outside a git work tree, or with
// -buildvcs=false).
const Unknown = "devel"

// maxLen bounds what the build can claim: the version travels in the hello
// (evidence allows 128 printable ASCII bytes) and into log lines.
const maxLen = 64

// Info describes one build.
type Info struct {
	// Version is the release version (git describe: v1.2.3, or
	// v1.2.3-4-gabcdef0 between tags), or Unknown.
	Version string `json:"version"`
	// Commit is the full commit hash, or Unknown. Modified builds (a dirty
	// work tree) end in "-dirty".
	Commit string `json:"commit"`
	// Go is the toolchain that built the binary (runtime.Version).
	Go string `json:"go"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get returns this binary's build description.
func Get() Info {
	return get(version, commit, debug.ReadBuildInfo)
}

// get is Get with its inputs passed in, so the precedence (linker, then
// build info, then Unknown) is testable without relinking.
func get(ldVersion, ldCommit string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: clean(ldVersion), Commit: clean(ldCommit), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info.Version != "" && info.Commit != "" {
		return info
	}
	if bi, ok := read(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = clean(bi.Main.Version)
		}
		if info.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			info.Commit = clean(rev)
		}
	}
	if info.Version == "" {
		info.Version = Unknown
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	return info
}

// clean keeps a build-supplied string safe for a log line, a hello and a
// text template: the characters of semantic versions, git describe and
// commit hashes ([0-9A-Za-z.+_-]), at most maxLen bytes. Anything else gives
// "" (treated as not set) rather than a truncated or escaped claim.
func clean(s string) string {
	if len(s) > maxLen {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '+' || c == '_' || c == '-'
		if !ok {
			return ""
		}
	}
	return s
}

// Write prints the description an operator asks for with --version: the
// binary's name and version, then commit, Go version and platform, one per
// line.
func (i Info) Write(w io.Writer, name string) error {
	_, err := fmt.Fprintf(w, "%s %s\ncommit:   %s\ngo:       %s\nplatform: %s\n", name, i.Version, i.Commit, i.Go, i.Platform)
	return err
}

// PluginFlag handles a plugin binary run by hand with --version (or
// -version) as its only argument: it prints the description to w and
// reports true, and the caller exits. SPIRE starts plugins with no
// arguments (go-plugin's handshake travels in the environment), so every
// other invocation reports false and the plugin serves as before.
func PluginFlag(name string, args []string, w io.Writer) bool {
	if len(args) != 1 || (args[0] != "--version" && args[0] != "-version") {
		return false
	}
	_ = Get().Write(w, name)
	return true
}
