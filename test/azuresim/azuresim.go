// Package azuresim is a simulated Azure TDX paravisor for tests: a swtpm
// standing for the paravisor's vTPM, with the HCL attestation key persisted
// at 0x81000003 and an HCL report in NV index 0x01400001, and a loopback
// instance metadata service that quotes the report's TD report. The TD is
// package tee/sim's (its TD reports, its simulated PCK chain), so the TD
// quotes verify only under the simulated root.
//
// Agents run against it with production code only (tee/azure,
// nodeattestor), configured with the swtpm's tcp:// address and the
// metadata service URL (AgentConfig).
package azuresim

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
	"github.com/ccnp-spire/ccnp-spire/tee/azure"
	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
)

// IMDSPath is the metadata service's TD quote path.
const IMDSPath = "/acc/tdquote"

// hclNVSize is what the rig pads HCL reports to, so that readers meet the
// trailing padding real ones have: Azure's index is 2600 bytes, but
// libtpms (swtpm) caps an NV index at 2048.
const hclNVSize = 2048

// Options chooses the simulated VM.
type Options struct {
	// UserData is the runtime data's user-data (64 zero bytes when nil,
	// as a paravisor writes it before a guest asks for any).
	UserData []byte
	// SecureBoot is the vm-configuration's secure-boot.
	SecureBoot bool
	// FirmwareLog, when set, is a TCG event log replayed into the vTPM's
	// PCRs and put at the TPM event log's place under HostRoot; IMALog
	// likewise for IMA (not replayed).
	FirmwareLog, IMALog []byte
	// SimDir, when set, is an existing simulated TD (`ccnp sim init`) to
	// be the paravisor's TD, so that its PCS (`ccnp sim pcs`) serves the
	// collateral of its quotes; empty: a new TD in a temporary directory.
	SimDir string
}

// Paravisor is a running simulated paravisor.
type Paravisor struct {
	tpm  *swtpm.TPM
	td   *sim.Provider
	imds *httptest.Server
	root string
	ak   *rsa.PublicKey
	hcl  []byte

	requests atomic.Int64
	mu       sync.Mutex
	override http.Handler
}

// Start creates the vTPM (a swtpm, stopped when the test ends; the test is
// skipped when swtpm is not installed), the simulated TD and the metadata
// service, provisions the AK and writes the HCL report.
func Start(t testing.TB, opts Options) *Paravisor {
	t.Helper()
	tp := swtpm.StartT(t)
	dir := opts.SimDir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "td")
		if err := sim.Init(dir, sim.InitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := sim.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	p := &Paravisor{tpm: tp, td: td, root: t.TempDir()}
	if opts.FirmwareLog != nil {
		if _, err := swtpm.ReplayLog(ctx, tp, opts.FirmwareLog); err != nil {
			t.Fatal(err)
		}
	}
	for rel, b := range map[string][]byte{tpm.EventLogPath: opts.FirmwareLog, tpm.IMALogPath: opts.IMALog} {
		if b == nil {
			continue
		}
		path := filepath.Join(p.root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p.ak, err = provisionAK(ctx, tp); err != nil {
		t.Fatal(err)
	}
	rt, err := RuntimeData(p.ak, opts)
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	sum := sha256.Sum256(rt)
	copy(rd[:], sum[:])
	tdr, err := td.TDReport(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	p.hcl = BuildHCLReport(tdr[:], rt)
	if err := p.WriteHCLReport(ctx, p.hcl); err != nil {
		t.Fatal(err)
	}
	p.imds = httptest.NewServer(http.HandlerFunc(p.serveIMDS))
	t.Cleanup(p.imds.Close)
	return p
}

// Device is the vTPM as tee/tpm opens it ("tcp://127.0.0.1:PORT").
func (p *Paravisor) Device() string { return p.tpm.Addr() }

// HostRoot is the guest's host root: the TPM event log and IMA list are
// under it where the kernel puts them.
func (p *Paravisor) HostRoot() string { return p.root }

// TPM is the swtpm behind the vTPM.
func (p *Paravisor) TPM() *swtpm.TPM { return p.tpm }

// IMDSURL is the metadata service's TD quote endpoint.
func (p *Paravisor) IMDSURL() string { return p.imds.URL + IMDSPath }

// TD is the simulated TD the TD reports and quotes are of.
func (p *Paravisor) TD() *sim.Provider { return p.td }

// RootPEM is the simulated root the TD quotes verify under.
func (p *Paravisor) RootPEM() []byte { return p.td.RootPEM() }

// AK is the HCL attestation key (the key at azure.AKHandle).
func (p *Paravisor) AK() *rsa.PublicKey { return p.ak }

// HCLReport is the report as first written to the NV index.
func (p *Paravisor) HCLReport() []byte { return append([]byte(nil), p.hcl...) }

// IMDSRequests counts the requests the metadata service received.
func (p *Paravisor) IMDSRequests() int { return int(p.requests.Load()) }

// SetIMDSHandler makes the metadata service answer with h (a misbehaving
// or hostile service); nil restores the simulated one.
func (p *Paravisor) SetIMDSHandler(h http.Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.override = h
}

// WriteHCLReport replaces the NV index's content (a paravisor that wrote
// something else, a tampered report). No agent may hold the vTPM open.
func (p *Paravisor) WriteHCLReport(ctx context.Context, raw []byte) error {
	return p.tpm.WriteNV(ctx, azure.HCLReportNVIndex, raw)
}

// AgentConfig is the node attestor's plugin_data for this guest: tee
// ("azure_tdx", or "auto" to detect it), the vTPM, the metadata service,
// the host root, and stateDir for the agent's own files.
func (p *Paravisor) AgentConfig(tee, stateDir string) string {
	return fmt.Sprintf(`tee = %q
host_root = %q
tpm {
  device = %q
}
azure_tdx {
  imds_url = %q
}
instance_id_path = %q
runtime_log_path = %q
`, tee, p.root, p.Device(), p.IMDSURL(), filepath.Join(stateDir, "instance_id"), filepath.Join(stateDir, "runtime.cel"))
}

// TDQuoteVerifier is appraisal.TDX offline (no collateral) under the
// simulated root, as azuretdx.Verify takes it.
func (p *Paravisor) TDQuoteVerifier() (azuretdx.TDQuoteVerifier, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.RootPEM()) {
		return nil, errors.New("azuresim: the simulated root does not parse")
	}
	return func(ctx context.Context, quote []byte) (*tdxquote.Quote, []azuretdx.Check, error) {
		res, err := appraisal.TDX(ctx, appraisal.TDXEvidence{Quote: quote}, appraisal.TDXOptions{TrustedRoots: pool})
		var checks []azuretdx.Check
		for _, c := range res.Checks {
			checks = append(checks, azuretdx.Check{Name: c.Name, OK: c.OK, Skipped: c.Skipped, Detail: c.Detail})
		}
		return res.Quote, checks, err
	}, nil
}

// serveIMDS is the metadata service as Azure's behaves for this endpoint:
// POST only, "Metadata: true" required, JSON body exactly
// "application/json", {"report": base64url} in, {"quote": base64url} out;
// a TD report the TD did not make is refused with 400.
func (p *Paravisor) serveIMDS(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	p.mu.Lock()
	o := p.override
	p.mu.Unlock()
	if o != nil {
		o.ServeHTTP(w, r)
		return
	}
	switch {
	case r.URL.Path != IMDSPath:
		http.Error(w, "not found", http.StatusNotFound)
		return
	case r.Method != http.MethodPost:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	case r.Header.Get("Metadata") != "true":
		http.Error(w, "Required metadata header not specified", http.StatusBadRequest)
		return
	case r.Header.Get("Content-Type") != "application/json":
		http.Error(w, "Unknown media type", http.StatusUnsupportedMediaType)
		return
	}
	var req struct {
		Report string `json:"report"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10)).Decode(&req); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	report, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(req.Report, "="))
	if err != nil {
		http.Error(w, "report is not base64url", http.StatusBadRequest)
		return
	}
	q, err := p.td.QuoteTDReport(r.Context(), report)
	if errors.Is(err, sim.ErrForeignTDReport) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"quote": base64.RawURLEncoding.EncodeToString(q)})
}

// provisionAK creates the AK and persists it at azure.AKHandle.
func provisionAK(ctx context.Context, tp *swtpm.TPM) (*rsa.PublicKey, error) {
	rw, err := tp.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	t := transport.FromReadWriter(rw)
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm.AKTemplate("rsa"))}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("azuresim: creating the HCL AK: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t) //nolint:errcheck // best effort
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     &tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: tpm2.TPMHandle(azure.AKHandle),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("azuresim: persisting the HCL AK at 0x%08x: %w", azure.AKHandle, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, err
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, err
	}
	return k.(*rsa.PublicKey), nil
}

// RuntimeData is the paravisor's runtime data JSON for ak, laid out as
// Azure's (keys, vm-configuration, user-data as hex).
func RuntimeData(ak *rsa.PublicKey, opts Options) ([]byte, error) {
	ud := opts.UserData
	if ud == nil {
		ud = make([]byte, 64)
	}
	e := big2bytes(ak.E)
	doc := struct {
		Keys []map[string]any `json:"keys"`
		VM   map[string]any   `json:"vm-configuration"`
		UD   string           `json:"user-data"`
	}{
		Keys: []map[string]any{{
			"kid": azuretdx.AKKeyID, "key_ops": []string{"sign"}, "kty": "RSA",
			"e": base64.RawURLEncoding.EncodeToString(e), "n": base64.RawURLEncoding.EncodeToString(ak.N.Bytes()),
		}},
		VM: map[string]any{
			"console-enabled": false, "root-cert-thumbprint": "", "secure-boot": opts.SecureBoot,
			"tpm-enabled": true, "tpm-persisted": true, "vmUniqueId": "00000000-0000-4000-8000-00000000a2e5",
		},
		UD: strings.ToUpper(hex.EncodeToString(ud)),
	}
	return json.Marshal(doc)
}

func big2bytes(v int) []byte {
	var b []byte
	for ; v > 0; v >>= 8 {
		b = append([]byte{byte(v)}, b...)
	}
	return b
}

// HCL report layout (see package azuretdx, which parses it): header,
// hardware report slot, IGVM request data, runtime data.
const (
	hclHeaderSize   = 32
	hclHWReportSize = 1184
	hclReqDataSize  = 20
	hclVersion      = 2
	hclRequestType  = 2 // as the paravisor writes it
	hclReportTDX    = 4
	hclHashSHA256   = 1
)

// BuildHCLReport wraps a TD report and runtime data as the paravisor does:
// header "HCLA" version 2, the TD report in the hardware report slot, the
// IGVM request data (TDX, SHA-256), the runtime data, padded with zeros to
// 2048 bytes when it fits (Azure pads to 2600; swtpm's indices hold 2048).
func BuildHCLReport(tdReport, runtimeData []byte) []byte {
	size := hclHeaderSize + hclHWReportSize + hclReqDataSize + len(runtimeData)
	out := make([]byte, max(size, hclNVSize))
	copy(out, "HCLA")
	le := binary.LittleEndian
	le.PutUint32(out[4:], hclVersion)
	le.PutUint32(out[8:], uint32(size))
	le.PutUint32(out[12:], hclRequestType)
	copy(out[hclHeaderSize:], tdReport)
	rq := out[hclHeaderSize+hclHWReportSize:]
	le.PutUint32(rq[0:], uint32(hclReqDataSize+len(runtimeData)))
	le.PutUint32(rq[4:], 1)
	le.PutUint32(rq[8:], hclReportTDX)
	le.PutUint32(rq[12:], hclHashSHA256)
	le.PutUint32(rq[16:], uint32(len(runtimeData)))
	copy(rq[hclReqDataSize:], runtimeData)
	return out
}
