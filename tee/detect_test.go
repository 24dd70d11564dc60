package tee_test

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/azure"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/azuresim"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

// On a host with neither TDX nor a TPM, auto detection fails and says what it
// probed (Azure's vTPM, TDX, a TPM); it never falls back to the simulator,
// even when one is configured.
func TestDetectNothing(t *testing.T) {
	root := t.TempDir()
	simDir := filepath.Join(t.TempDir(), "sim")
	if err := sim.Init(simDir, sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := tee.Open(context.Background(), tee.Config{HostRoot: root, SimDir: simDir,
		TPM: tpm.Options{Device: filepath.Join(root, "dev/tpmrm0")}})
	var de *tee.DetectError
	if !errors.As(err, &de) || len(de.Probes) != 3 {
		t.Fatalf("Open(auto) = %v, want a DetectError with three probes", err)
	}
	for _, want := range []string{"azure_tdx:", "tdx:", "tpm:", "dev/tpmrm0", "only used with tee = sim"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenByName(t *testing.T) {
	ctx := context.Background()
	simDir := filepath.Join(t.TempDir(), "sim")
	if err := sim.Init(simDir, sim.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := tee.Open(ctx, tee.Config{TEE: "sim", SimDir: simDir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.TEE() != cctrusted.TEESim {
		t.Fatalf("sim opened as %q", p.TEE())
	}
	if _, ok := tee.Unwrap(p).(*sim.Provider); !ok {
		t.Fatalf("Unwrap gave %T", tee.Unwrap(p))
	}
	for _, c := range []tee.Config{{TEE: "sim"}, {TEE: "sgx"}, {TEE: "tdx", HostRoot: t.TempDir()}} {
		if _, err := tee.Open(ctx, c); err == nil {
			t.Errorf("Open(%+v) succeeded", c)
		}
	}
}

// With a TPM reachable (swtpm over TCP) and no TDX, auto detection opens it.
func TestDetectTPM(t *testing.T) {
	ctx := context.Background()
	s := swtpm.StartT(t)
	p, err := tee.Open(ctx, tee.Config{HostRoot: t.TempDir(), TPM: tpm.Options{Device: s.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.TEE() != cctrusted.TEETPM {
		t.Fatalf("detected %q, want tpm", p.TEE())
	}
	if _, err := p.Measurement(ctx, cctrusted.PCR(0).IMR(), cctrusted.AlgSHA256); err != nil {
		t.Fatal(err)
	}
}

// An Azure paravisor's vTPM (HCL report in NV 0x01400001) is detected as
// azure_tdx, before it could be taken for a plain TPM.
func TestDetectAzureTDX(t *testing.T) {
	ctx := context.Background()
	p := azuresim.Start(t, azuresim.Options{})
	prov, err := tee.Open(ctx, tee.Config{HostRoot: t.TempDir(), TPM: tpm.Options{Device: p.Device()}, IMDS: azure.IMDSOptions{URL: p.IMDSURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	if prov.TEE() != cctrusted.TEEAzureTDX {
		t.Fatalf("detected %q, want azure_tdx", prov.TEE())
	}
}

// TestAttackDetectGarbageHCLIndex: a TPM whose NV 0x01400001 holds anything
// but an HCL report of a TD report (garbage, an HCL report with a flipped
// magic) is a plain TPM: nothing but that index's parsed content makes a
// node azure_tdx.
func TestAttackDetectGarbageHCLIndex(t *testing.T) {
	ctx := context.Background()
	p := azuresim.Start(t, azuresim.Options{})
	notHCL := p.HCLReport()
	notHCL[0] = 'X'
	for name, content := range map[string][]byte{"garbage": []byte("not an HCL report at all"), "bad magic": notHCL} {
		if err := p.WriteHCLReport(ctx, content); err != nil {
			t.Fatal(err)
		}
		prov, err := tee.Open(ctx, tee.Config{HostRoot: t.TempDir(), TPM: tpm.Options{Device: p.Device()}, IMDS: azure.IMDSOptions{URL: p.IMDSURL()}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if prov.TEE() != cctrusted.TEETPM {
			t.Errorf("%s: detected %q, want tpm", name, prov.TEE())
		}
		prov.Close()
	}
}

// TestAttackDetectUnreadableHCLReportNoDowngrade: an HCL report this agent
// cannot read (another header version, a failed status) is still an Azure
// paravisor's: auto detection fails naming the index rather than open the
// vTPM as a plain TPM, which would silently downgrade the node.
func TestAttackDetectUnreadableHCLReportNoDowngrade(t *testing.T) {
	ctx := context.Background()
	p := azuresim.Start(t, azuresim.Options{})
	for name, patch := range map[string]func(b []byte){
		"header version 3": func(b []byte) { binary.LittleEndian.PutUint32(b[4:], 3) },
		"status 1":         func(b []byte) { binary.LittleEndian.PutUint32(b[16:], 1) },
	} {
		report := p.HCLReport()
		patch(report)
		if err := p.WriteHCLReport(ctx, report); err != nil {
			t.Fatal(err)
		}
		prov, err := tee.Open(ctx, tee.Config{HostRoot: t.TempDir(), TPM: tpm.Options{Device: p.Device()}, IMDS: azure.IMDSOptions{URL: p.IMDSURL()}})
		if err == nil {
			t.Errorf("%s: detected %q, want an error", name, prov.TEE())
			prov.Close()
			continue
		}
		if !strings.Contains(err.Error(), "0x01400001") || !strings.Contains(err.Error(), "cannot read") {
			t.Errorf("%s: %v, want the index named and why", name, err)
		}
	}
}

// Asked for by name on a plain TPM, azure_tdx fails, naming the index.
func TestOpenAzureTDXOnPlainTPM(t *testing.T) {
	s := swtpm.StartT(t)
	_, err := tee.Open(context.Background(), tee.Config{TEE: cctrusted.TEEAzureTDX, TPM: tpm.Options{Device: s.Addr()}})
	if err == nil || !strings.Contains(err.Error(), "0x01400001") {
		t.Fatalf("Open(azure_tdx) on a plain TPM = %v", err)
	}
}
