package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// staticBinaries returns the directory of the image's binaries: the one
// CCNP_STATIC_BIN names (make unit passes make build's output), or else
// one built once per test run with the flags of `make build`.
func staticBinaries(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("CCNP_STATIC_BIN"); d != "" {
		return d
	}
	buildOnce.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			buildErr = errors.New("the go command is not on PATH")
			return
		}
		binDir, buildErr = os.MkdirTemp("", "ccnp-image-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", binDir + "/"}
		for _, n := range append(slices.Clone(Binaries), "ccnp-image") {
			args = append(args, "./cmd/"+n)
		}
		start := time.Now()
		cmd := exec.Command(goCmd, args...)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("go " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(out))
			return
		}
		t.Logf("built %d static binaries in %v", len(Binaries), time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runImageTool runs the ccnp-image command (built without -race, as make
// image runs it: compressing the layer under the race detector takes minutes)
// on bin and returns the digest it printed and the OCI layout it wrote.
func runImageTool(t *testing.T, tool, bin string) (string, string) {
	t.Helper()
	out := t.TempDir()
	start := time.Now()
	cmd := exec.Command(tool, "-bin", bin, "-layout", filepath.Join(out, "oci"), "-tarball", filepath.Join(out, "image.tar"), "-checksums", filepath.Join(out, "checksums.yaml"), "-ref", "ghcr.io/ccnp-spire/plugins:test", "-version", "test")
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ccnp-image: %v\n%s", err, o)
	}
	t.Logf("ccnp-image took %v", time.Since(start).Round(time.Millisecond))
	_, d, ok := strings.Cut(string(o), "@sha256:")
	if !ok {
		t.Fatalf("ccnp-image printed no digest:\n%s", o)
	}
	return "sha256:" + strings.TrimSpace(d), out
}

// TestBuildReproducible builds the image twice with ccnp-image, the second
// time from copies with other mtimes and modes, and wants one digest and
// byte-identical layouts; the layer must hold exactly the binaries,
// root-owned, 0755, at the fixed epoch, and the config no build time.
func TestBuildReproducible(t *testing.T) {
	bin := staticBinaries(t)
	tool := filepath.Join(bin, "ccnp-image")
	d1, out1 := runImageTool(t, tool, bin)
	other := t.TempDir()
	for _, n := range Binaries {
		b, err := os.ReadFile(filepath.Join(bin, n))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(other, n)
		if err := os.WriteFile(p, b, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time.Now(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	d2, out2 := runImageTool(t, tool, other)
	t.Logf("image digest %s", d1)
	if d1 != d2 {
		t.Fatalf("two builds of the same binaries differ: %s and %s", d1, d2)
	}
	for _, f := range []string{"oci/index.json", "oci/oci-layout", "image.tar"} {
		a, err1 := os.ReadFile(filepath.Join(out1, f))
		b, err2 := os.ReadFile(filepath.Join(out2, f))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (%v, %v)", f, err1, err2)
		}
	}

	idx, err := layout.ImageIndexFromPath(filepath.Join(out1, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(d1)
	img, err := idx.Image(h)
	if err != nil {
		t.Fatalf("OCI layout has no image %s: %v", d1, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Time.Equal(epoch) || cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("config: created %v, os %q, arch %q", cf.Created.Time, cf.OS, cf.Architecture)
	}
	var names []string
	for _, h := range unpackLayer(t, img, "") {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) || h.Mode != 0o755 {
			t.Errorf("%s: uid %d gid %d mtime %v mode %o", h.Name, h.Uid, h.Gid, h.ModTime, h.Mode)
		}
	}
	want := []string{"opt/", "opt/ccnp/", "opt/ccnp/bin/"}
	for _, n := range slices.Sorted(slices.Values(Binaries)) {
		want = append(want, "opt/ccnp/bin/"+n)
	}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries %v, want %v", names, want)
	}
}

// hasInterp tells whether the ELF at p asks for a program interpreter,
// read here on its own so that a broken CheckStatic cannot skip the test.
func hasInterp(t *testing.T, p string) bool {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Section(".interp") != nil
}

// TestBuildRefusesDynamicBinary puts a dynamically linked program (the
// host's own true) where a plugin belongs: the image must not be built,
// since the binary could not start in SPIRE's scratch images.
func TestBuildRefusesDynamicBinary(t *testing.T) {
	dyn, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) on PATH to stand for a dynamic binary")
	}
	dyn, _ = filepath.EvalSymlinks(dyn)
	if !hasInterp(t, dyn) {
		t.Skipf("%s is static here: no dynamic binary to try", dyn)
	}
	dir := t.TempDir()
	b, err := os.ReadFile(dyn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ccnp"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), Options{BinDir: dir})
	if err == nil || !strings.Contains(err.Error(), "ccnp is dynamically linked") || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("Build with a dynamic binary: %v; want a refusal naming it and CGO_ENABLED=0", err)
	}
	os.Remove(filepath.Join(dir, "ccnp"))
	if _, err := Build(context.Background(), Options{BinDir: dir}); err == nil || !strings.Contains(err.Error(), "ccnp") {
		t.Fatalf("Build with a missing binary: %v", err)
	}
}

// unpackLayer reads the image's one layer and returns its entries; with a
// root it also unpacks them there: the filesystem a container of this image
// sees. gzip(1) inflates the layer: inflating it under the race detector
// takes about 20 s here, and the Go code under test never inflates.
func unpackLayer(t *testing.T, img v1.Image, root string) []*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	gz, err := exec.LookPath("gzip")
	if err != nil {
		t.Skip("gzip(1) is not on PATH")
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cmd := exec.Command(gz, "-dc")
	cmd.Stdin = rc
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	tr := tar.NewReader(stdout)
	var hdrs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		if root == "" {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			t.Fatalf("layer entry %q leaves the root", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected layer entry %q type %c", h.Name, h.Typeflag)
		}
	}
	if _, err := io.Copy(io.Discard, stdout); err != nil {
		t.Fatal(err)
	}
	return hdrs
}

// runIn runs path inside root (chroot), with no environment: the way a
// container of a FROM scratch image starts it.
func runIn(t *testing.T, root, path string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	default:
		return err.Error(), -1
	}
}

func needChroot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running binaries in an empty root needs chroot, which needs root (CI runs as root)")
	}
	if _, code := runIn(t, t.TempDir(), "/nothing"); code != -1 {
		t.Skip("chroot is not usable here")
	}
}

// TestImageRunsInScratchRoot writes the image as a docker-archive tarball
// and as an OCI layout, reads both back, unpacks the layer into an empty
// root and runs every binary there, chrooted: no libc, no loader, nothing
// but the layer. The init container's step (ccnp-install) runs there too.
// A dynamically linked program in the same kind of root must fail to start,
// so the check can fail.
func TestImageRunsInScratchRoot(t *testing.T) {
	needChroot(t)
	bin := staticBinaries(t)
	d, out := runImageTool(t, filepath.Join(bin, "ccnp-image"), bin)
	want, _ := v1.NewHash(d)
	fromTar, err := tarball.ImageFromPath(filepath.Join(out, "image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	fromLayout, err := idx.Image(want)
	if err != nil {
		t.Fatalf("OCI layout has no image %s: %v", want, err)
	}
	// A docker archive keeps the config and layers, not the manifest.
	for _, img := range []v1.Image{fromTar, fromLayout} {
		c, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		l, err := img.Layers()
		if err != nil || len(l) != 1 {
			t.Fatalf("layers: %v %v", l, err)
		}
		ld, _ := l[0].Digest()
		if c2, _ := fromLayout.ConfigName(); c != c2 {
			t.Errorf("tarball config %s, layout config %s", c, c2)
		}
		if l2, _ := fromLayout.Layers(); len(l2) == 1 {
			if d2, _ := l2[0].Digest(); ld != d2 {
				t.Errorf("tarball layer %s, layout layer %s", ld, d2)
			}
		}
	}
	root := t.TempDir()
	unpackLayer(t, fromLayout, root)

	for _, n := range Binaries {
		if _, err := CheckStatic(filepath.Join(root, "opt/ccnp/bin", n)); err != nil {
			t.Error(err)
		}
	}
	if o, code := runIn(t, root, Dir+"/ccnp", "--help"); code != 0 || !strings.Contains(o, "Usage:") {
		t.Errorf("ccnp --help in the scratch root: exit %d\n%s", code, o)
	}
	// A plugin started by hand, not by SPIRE, says so and exits 1: it ran.
	for _, n := range []string{"ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor", "ccnp-server-nodeattestor"} {
		if o, code := runIn(t, root, Dir+"/"+n); code != 1 || !strings.Contains(o, "plugin") {
			t.Errorf("%s in the scratch root: exit %d\n%s", n, code, o)
		}
	}
	// The init container's step: copy the plugins into SPIRE's volume.
	if err := os.Mkdir(filepath.Join(root, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	o, code := runIn(t, root, Dir+"/ccnp-install", "/plugins")
	if code != 0 {
		t.Fatalf("ccnp-install in the scratch root: exit %d\n%s", code, o)
	}
	for _, n := range []string{"ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor", "ccnp-server-nodeattestor"} {
		b, err := os.ReadFile(filepath.Join(root, "plugins", n))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if line := hex.EncodeToString(sum[:]) + "  " + n; !strings.Contains(o, line) {
			t.Errorf("ccnp-install printed no %q:\n%s", line, o)
		}
	}

	// The same root with a dynamic program: it must not start.
	dyn, err := exec.LookPath("true")
	if err != nil {
		return
	}
	dyn, _ = filepath.EvalSymlinks(dyn)
	if !hasInterp(t, dyn) {
		return
	}
	b, err := os.ReadFile(dyn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dynamic"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if o, code := runIn(t, root, "/dynamic"); code == 0 {
		t.Errorf("a dynamically linked program started in the scratch root (%q): the check proves nothing", o)
	}
}
