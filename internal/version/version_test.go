package version

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func buildInfo(mainVersion string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
	return func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/ccnp-spire/ccnp-spire", Version: mainVersion}, Settings: settings}, true
	}
}

func noBuildInfo() (*debug.BuildInfo, bool) { return nil, false }

func TestGetPrecedence(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	clean := debug.BuildSetting{Key: "vcs.modified", Value: "false"}
	for _, tc := range []struct {
		name                    string
		ldVersion, ldCommit     string
		read                    func() (*debug.BuildInfo, bool)
		wantVersion, wantCommit string
	}{
		{"linker wins over build info", "v1.2.3", "abc", buildInfo("v9.9.9", rev), "v1.2.3", "abc"},
		{"build info fills what the linker left out", "", "", buildInfo("v1.0.0", rev, clean), "v1.0.0", rev.Value},
		{"a modified work tree is marked", "v1.2.3", "", buildInfo("(devel)", rev, dirty), "v1.2.3", rev.Value + "-dirty"},
		{"(devel) is not a version", "", "", buildInfo("(devel)"), Unknown, Unknown},
		{"no build info at all", "", "", noBuildInfo, Unknown, Unknown},
		{"a linker value with a space is not trusted", "v1 2", "abc\n", buildInfo("v1.0.0", rev), "v1.0.0", rev.Value},
		{"a linker value with template braces is not trusted", "{{.X}}", "abc", buildInfo("v1.0.0"), "v1.0.0", "abc"},
		{"a linker value above the bound is not trusted", strings.Repeat("v", maxLen+1), "abc", noBuildInfo, Unknown, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := get(tc.ldVersion, tc.ldCommit, tc.read)
			if got.Version != tc.wantVersion || got.Commit != tc.wantCommit {
				t.Fatalf("get(%q, %q) = version %q commit %q, want %q %q", tc.ldVersion, tc.ldCommit, got.Version, got.Commit, tc.wantVersion, tc.wantCommit)
			}
			if got.Go == "" || !strings.Contains(got.Platform, "/") {
				t.Fatalf("go %q platform %q: want both set", got.Go, got.Platform)
			}
		})
	}
}

func TestPluginFlag(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		print bool
	}{
		{nil, false}, // how SPIRE (go-plugin) starts a plugin
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"version"}, false},
		{[]string{"--version", "x"}, false},
	} {
		var out bytes.Buffer
		if got := PluginFlag("ccnp-x", tc.args, &out); got != tc.print {
			t.Errorf("PluginFlag(%q) = %v, want %v", tc.args, got, tc.print)
		}
		if tc.print != (out.Len() > 0) {
			t.Errorf("PluginFlag(%q) printed %q", tc.args, out.String())
		}
		if tc.print {
			for _, want := range []string{"ccnp-x ", "commit:", "go:", "platform:"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("--version output %q lacks %q", out.String(), want)
				}
			}
		}
	}
}
