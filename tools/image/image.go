// Package image builds the ccnp plugins' OCI image without a container
// daemon: one layer holding the static binaries under /opt/ccnp/bin on an
// empty base, as SPIRE's own images are FROM scratch.
//
// The build is reproducible: entries are sorted, owned by root with fixed
// modes and mtimes, and the config carries no creation time, so the same
// binaries always give the same digest. Binaries that need a dynamic loader
// or shared libraries are refused, because they could not start in a scratch
// image or when copied into SPIRE's.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Dir is where the binaries live inside the image; the manifests and Helm
// values point plugin_cmd there.
const Dir = "/opt/ccnp/bin"

// Binaries are the programs the image ships: the three plugins, the CLI
// (ccnp serve and the operator commands) and the installer the init
// container runs to copy the plugins into SPIRE's pods.
var Binaries = []string{
	"ccnp",
	"ccnp-agent-nodeattestor",
	"ccnp-agent-workloadattestor",
	"ccnp-install",
	"ccnp-server-nodeattestor",
}

// epoch is every entry's mtime: a fixed time, so that rebuilding the same
// binaries gives the same layer digest (1980-01-01, the earliest time every
// archive format and unpacker accepts).
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Options say what to put into the image besides the binaries.
type Options struct {
	// BinDir holds the binaries named in Binaries.
	BinDir string
	// Version goes into the org.opencontainers.image.version label.
	Version string
}

// Build reads the binaries from opts.BinDir and returns the image. It fails
// when a binary is missing, is not an ELF executable, is dynamically linked,
// or when the binaries are for different architectures.
func Build(ctx context.Context, opts Options) (v1.Image, error) {
	var (
		buf  bytes.Buffer
		arch string
	)
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"opt/", "opt/ccnp/", "opt/ccnp/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
			return nil, err
		}
	}
	names := slices.Sorted(slices.Values(Binaries))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := filepath.Join(opts.BinDir, n)
		a, err := CheckStatic(p)
		if err != nil {
			return nil, err
		}
		if arch != "" && a != arch {
			return nil, fmt.Errorf("%s is built for %s, the other binaries for %s: build all for one architecture", p, a, arch)
		}
		arch = a
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     path.Join("opt/ccnp/bin", n),
			Mode:     0o755,
			Size:     int64(len(b)),
			ModTime:  epoch,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching,
		// The fastest level: the digest must only be stable, and a
		// smaller layer is not worth minutes of CPU in CI.
		tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{CreatedBy: "ccnp-image: " + Dir, Created: v1.Time{Time: epoch}},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Cmd = []string{path.Join(Dir, "ccnp"), "--help"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "ccnp-spire plugins",
		"org.opencontainers.image.description": "SPIRE plugins for TDX/TPM node and workload attestation, and the ccnp CLI, under " + Dir,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     opts.Version,
	}
	return mutate.ConfigFile(img, cf)
}

// CheckStatic returns the Go architecture name of the ELF executable at p,
// or an error when it asks for a program interpreter (PT_INTERP) or shared
// libraries (DT_NEEDED): such a binary does not start in a scratch image.
func CheckStatic(p string) (string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("%s: not an ELF executable: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked (it asks for a program interpreter): build it with CGO_ENABLED=0 (make build)", p)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", fmt.Errorf("%s: reading its dynamic section: %w", p, err)
	}
	if len(libs) > 0 {
		return "", fmt.Errorf("%s needs shared libraries %v: build it with CGO_ENABLED=0 (make build)", p, libs)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%s: ELF type %v is not an executable", p, f.Type)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	default:
		return "", fmt.Errorf("%s: ELF machine %v is not amd64 or arm64", p, f.Machine)
	}
}

// WriteLayout writes img as an OCI image layout in dir (replacing what was
// there), with ref as its org.opencontainers.image.ref.name annotation.
func WriteLayout(dir, ref string, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref,
	}))
}

// WriteTarball writes img as a docker-archive tarball tagged ref, which
// `docker load`, `podman load` and `crane push` accept.
func WriteTarball(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	return tarball.WriteToFile(file, tag, img)
}

// HelmChecksums returns a values file for the SPIRE Helm chart that sets
// each plugin's plugin_checksum to the SHA-256 of the binary in binDir: the
// checksums SPIRE checks before it starts a plugin, taken from the very
// files the image carries (helm -f deploy/helm/values-ccnp.yaml -f this).
func HelmChecksums(binDir string) ([]byte, error) {
	sum := map[string]string{}
	for _, n := range []string{"ccnp-server-nodeattestor", "ccnp-agent-nodeattestor", "ccnp-agent-workloadattestor"} {
		b, err := os.ReadFile(filepath.Join(binDir, n))
		if err != nil {
			return nil, err
		}
		h := sha256.Sum256(b)
		sum[n] = hex.EncodeToString(h[:])
	}
	return fmt.Appendf(nil, `# plugin_checksum of each ccnp plugin in the image (written by ccnp-image)
spire-server:
  customPlugins:
    nodeAttestor:
      ccnp:
        plugin_checksum: %q
spire-agent:
  customPlugins:
    nodeAttestor:
      ccnp:
        plugin_checksum: %q
    workloadAttestor:
      ccnp:
        plugin_checksum: %q
`, sum["ccnp-server-nodeattestor"], sum["ccnp-agent-nodeattestor"], sum["ccnp-agent-workloadattestor"]), nil
}
