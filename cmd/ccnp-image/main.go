// Command ccnp-image writes the plugins' OCI image (make image): an OCI
// layout directory and a docker-archive tarball, with no container daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	buildversion "github.com/ccnp-spire/ccnp-spire/internal/version"
	"github.com/ccnp-spire/ccnp-spire/tools/image"
)

func main() {
	bin := flag.String("bin", ".bin", "directory with the static binaries (make build)")
	layoutDir := flag.String("layout", ".bin/oci", "OCI image layout directory to write (empty: none)")
	tarFile := flag.String("tarball", ".bin/ccnp-plugins.tar", "docker-archive tarball to write (empty: none)")
	sums := flag.String("checksums", ".bin/ccnp-checksums.yaml", "Helm values file with the plugins' plugin_checksum to write (empty: none)")
	ref := flag.String("ref", "ghcr.io/ccnp-spire/plugins:dev", "image reference recorded in the layout and the tarball")
	version := flag.String("version", "dev", "org.opencontainers.image.version label")
	// -version is taken (the image label), so this binary's own version is -build-info.
	showVersion := flag.Bool("build-info", false, "print this binary's version and exit")
	flag.Parse()
	if *showVersion {
		_ = buildversion.Get().Write(os.Stdout, "ccnp-image")
		return
	}
	if err := run(*bin, *layoutDir, *tarFile, *sums, *ref, *version); err != nil {
		fmt.Fprintf(os.Stderr, "ccnp-image: %v\n", err)
		os.Exit(1)
	}
}

func run(bin, layoutDir, tarFile, sums, ref, version string) error {
	img, err := image.Build(context.Background(), image.Options{BinDir: bin, Version: version})
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if layoutDir != "" {
		if err := image.WriteLayout(layoutDir, ref, img); err != nil {
			return fmt.Errorf("OCI layout %s: %w", layoutDir, err)
		}
		fmt.Printf("OCI layout: %s\n", layoutDir)
	}
	if tarFile != "" {
		if err := image.WriteTarball(tarFile, ref, img); err != nil {
			return fmt.Errorf("tarball %s: %w", tarFile, err)
		}
		fmt.Printf("tarball:    %s\n", tarFile)
	}
	if sums != "" {
		b, err := image.HelmChecksums(bin)
		if err != nil {
			return err
		}
		if err := os.WriteFile(sums, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("checksums:  %s\n", sums)
	}
	fmt.Printf("image:      %s@%s\n", ref, d)
	return nil
}
