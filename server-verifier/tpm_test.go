package serververifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/runtimelog"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/internal/cctrusted"
	"github.com/ccnp-spire/ccnp-spire/nodeattestor"
	"github.com/ccnp-spire/ccnp-spire/tee"
	"github.com/ccnp-spire/ccnp-spire/tee/tpm"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
	"github.com/ccnp-spire/ccnp-spire/test/swtpm"
	"github.com/ccnp-spire/ccnp-spire/tpmquote"
)

// tpmNode is a swtpm with EKs certified by a test EK CA, the real firmware
// log replayed into its PCRs, an IMA list extended into PCR10 and a runtime
// log into its runtime PCR, and an agent provider holding the TPM's one
// connection.
type tpmNode struct {
	*simtest.TPMNode
	agentP     tee.Provider
	cfg        *conf.AgentNodeAttestor
	otherAK    []byte // an RSA AK of the same TPM, for "quote from a different AK"
	exe        []byte
	runtimePCR cctrusted.PCR
}

// startTPMNode starts a node whose runtime log is on PCR23, the agents'
// default, which proves nothing to the server.
func startTPMNode(t *testing.T) *tpmNode { return startTPMNodeOn(t, 23) }

// startTPMNodeOn starts a node whose runtime log is on pcr.
func startTPMNodeOn(t *testing.T, pcr cctrusted.PCR) *tpmNode {
	t.Helper()
	n := &tpmNode{TPMNode: simtest.StartTPMNode(t, simtest.Testdata(t, "ima", "cgpath.bin")), runtimePCR: pcr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// An RSA AK first (the TPM serves one connection at a time).
	rp, err := tee.Open(ctx, tee.ForNodeAttestor(n.agentConfig(t, "rsa")))
	if err != nil {
		t.Fatal(err)
	}
	if n.otherAK, err = tee.Unwrap(rp).(*tpm.Provider).AttestationKeyPublic(); err != nil {
		t.Fatal(err)
	}
	rp.Close()

	n.cfg = n.agentConfig(t, "ecc")
	n.agentP = simtest.OpenAgentTEE(t, n.cfg)
	tp2 := tee.Unwrap(n.agentP).(*tpm.Provider)

	// IMA on PCR10, as the kernel extends it: SHA-256 of each entry's
	// template data (all 0xFF for a violation).
	pcrs, ds := simtest.IMADigests(t, n.IMA, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }, 32)
	for i, d := range ds {
		if pcrs[i] != 10 {
			t.Fatalf("IMA fixture entry %d on PCR %d", i, pcrs[i])
		}
		if err := tp2.Extend(ctx, 10, cctrusted.AlgSHA256, d); err != nil {
			t.Fatal(err)
		}
	}
	// One workload in the runtime log.
	sum := sha256.Sum256([]byte("tpm workload"))
	n.exe = sum[:]
	n.RecordWorkloads(t, tp2, pcr, runtimelog.Workload{ExeSHA256: n.exe, ExePath: "/usr/bin/w", ContainerID: "abc"})
	return n
}

// serverTPM is a server configuration trusting n's EK CA, with extra in
// the tpm block.
func (n *tpmNode) serverTPM(extra string) string {
	return fmt.Sprintf("tpm {\n  ek_ca_files = [%q]\n  %s\n}\n", n.Prov.CAPath, extra)
}

func (n *tpmNode) agentConfig(t *testing.T, akType string) *conf.AgentNodeAttestor {
	t.Helper()
	return simtest.AgentConfig(t, n.AgentHCL(akType, "", n.Base))
}

func (n *tpmNode) agent() *agent { return &agent{p: n.agentP, cfg: n.cfg} }

// ekHash is SHA-256 of the PKIX DER of the EK as its certificate states it,
// computed without tee/tpm.
func (n *tpmNode) ekHash(t *testing.T, kt swtpm.KeyType) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(n.Prov.EKs[kt].Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func TestAttestTPM(t *testing.T) {
	n := startTPMNodeOn(t, 15)
	ekHash := n.ekHash(t, swtpm.ECC)
	for name, trust := range map[string]string{
		"certificate": fmt.Sprintf("tpm {\n  ek_ca_files = [%q]\n  runtime_pcr = 15\n}", n.Prov.CAPath),
		"allow_list":  fmt.Sprintf("tpm {\n  ek_hash_allow_list = [%q]\n  runtime_pcr = 15\n}", ekHash),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil).mustConfigure(trust)
			attrs, err := h.attest(n.agent())
			if err != nil {
				t.Fatal(err)
			}
			if want := "spiffe://" + trustDomain + "/spire/agent/ccnp/tpm/" + ekHash; attrs.GetSpiffeId() != want {
				t.Errorf("SPIFFE ID %s, want %s", attrs.GetSpiffeId(), want)
			}
			for _, s := range []string{
				"tee:tpm",
				"tpm:ek_hash:" + ekHash,
				"tpm:ek_trust:" + name,
				"tpm:pcr:sha256:0:" + simtest.ExpectedPCR(t, 0),
				"ima:violations:1", // the node's IMA fixture has one
				"runtime:exe:sha256:" + hex.EncodeToString(n.exe),
				"tpm:runtime_rollback_protected:true",
			} {
				if !hasSelector(attrs, s) {
					t.Errorf("selector %s missing from %v", s, attrs.GetSelectorValues())
				}
			}
			if len(selectorsWithPrefix(attrs, "tdx:")) != 0 || len(selectorsWithPrefix(attrs, "sim:")) != 0 {
				t.Errorf("TDX selectors on a TPM node: %v", attrs.GetSelectorValues())
			}
		})
	}
}

func TestRejectEKNotInAllowList(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_hash_allow_list = [%q] }`, n.ekHash(t, swtpm.RSA)))
	_, err := h.attest(n.agent())
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckEKTrust, n.ekHash(t, swtpm.ECC), "not in ek_hash_allow_list")

	// A CA that did not issue the EK certificate.
	other := filepath.Join(t.TempDir(), "other-ca")
	if _, err := swtpmCA(t, other); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, other))
	_, err = h2.attest(n.agent())
	h2.wantReject(err, codes.PermissionDenied, appraisal.CheckEKTrust, "certificate not trusted")
}

func TestRejectTPMQuoteFromDifferentAK(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, n.Prov.CAPath))
	a := n.agent()
	a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.AkPublic = n.otherAK }
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckTPMQuote, "signature")
}

func TestRejectAKNotTiedToEK(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, n.Prov.CAPath))
	a := n.agent()
	// The node claims the TPM's other EK, which is genuine and certified,
	// but the AK that signed the quote lives under the ECC EK.
	rsa := n.Prov.EKs[swtpm.RSA]
	a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.EkPublic, e.Tpm.EkCertificate = rsa.Public, rsa.Cert.Raw }
	a.Activate = func(ch *evidencepb.Challenge) []byte {
		secret := make([]byte, 32)
		if pl, err := nodeattestor.Activate(context.Background(), n.agentP, ch); err == nil {
			secret = pl.GetActivatedSecret().GetSecret() // cannot happen: the TPM refuses
		} else if _, err := rand.Read(secret); err != nil {
			t.Fatal(err)
		}
		b, err := evidence.Encode(evidence.NewActivatedSecret(&evidencepb.ActivatedSecret{Secret: secret}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckActivation, "activated secret is wrong")
}

func TestRejectPCRBankMissing(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, n.Prov.CAPath))
	a := n.agent()
	// The quote covers the SHA-256 bank; the evidence carries a SHA-384
	// bank instead.
	a.Mutate = func(e *evidencepb.Evidence) {
		if len(e.Tpm.Pcrs) != 1 || e.Tpm.Pcrs[0].Alg != uint32(cctrusted.AlgSHA256) {
			t.Fatalf("agent quoted banks %v", e.Tpm.Pcrs)
		}
		b := e.Tpm.Pcrs[0]
		b.Alg = uint32(cctrusted.AlgSHA384)
		for i, v := range b.Values {
			b.Values[i] = append(v, make([]byte, 16)...)
		}
	}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckTPMQuote, "pcr_selection", "sha256")
}

func TestRejectTPMLogNotReplaying(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, n.Prov.CAPath))
	a := n.agent()
	other := simtest.Testdata(t, "tpmlog", "ubuntu-2104-no-secure-boot.bin")
	a.Mutate = func(e *evidencepb.Evidence) { e.TpmLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_TPM, other) }
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckTPMLogReplay, "does not replay")
}

// swtpmCA writes a self-signed CA certificate (PEM) to path: a CA that
// issued nothing the node has.
func swtpmCA(t *testing.T, path string) (*x509.Certificate, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "unrelated EK CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// issueAKCert certifies akPub (TPMT_PUBLIC) under a fresh CA written to
// caPath; with wrongKey it certifies another key instead.
func issueAKCert(t *testing.T, caPath string, akPub []byte, wrongKey bool) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test AK CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pub, err := tpmquote.ParsePublic(akPub)
	if err != nil {
		t.Fatal(err)
	}
	if wrongKey {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub = &k.PublicKey
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "AK"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestAKCertificateWithActivation: with ak_ca_files configured the AK
// certificate is required and checked, and credential activation still
// runs (a certified AK says nothing about which EK it lives with).
func TestAKCertificateWithActivation(t *testing.T) {
	n := startTPMNode(t)
	akPub, err := tee.Unwrap(n.agentP).(*tpm.Provider).AttestationKeyPublic()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		wrongKey bool
		otherCA  bool
		noChain  bool
		guess    bool // answer the activation with a guess
		check    string
		reject   string
	}{
		{name: "certified AK, activated"},
		{name: "certificate of another key", wrongKey: true, check: appraisal.CheckAKTrust, reject: "certifies another key"},
		{name: "certificate from an unconfigured CA", otherCA: true, check: appraisal.CheckAKTrust, reject: "not trusted by ak_ca_files"},
		{name: "no certificate sent", noChain: true, check: appraisal.CheckAKTrust, reject: "AK certificate is required"},
		{name: "certified AK, activation failed", guess: true, check: appraisal.CheckActivation, reject: "activated secret is wrong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caPath := filepath.Join(t.TempDir(), "ak-ca.pem")
			der := issueAKCert(t, caPath, akPub, tc.wrongKey)
			if tc.otherCA {
				issueAKCert(t, caPath, akPub, false) // overwrite the CA file with another CA
			}
			h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm {
  ek_ca_files = [%q]
  ak_ca_files = [%q]
}`, n.Prov.CAPath, caPath))
			a := n.agent()
			if !tc.noChain {
				a.Mutate = func(e *evidencepb.Evidence) { e.Tpm.AkCertificateChain = [][]byte{der} }
			}
			activated := false
			a.Activate = func(ch *evidencepb.Challenge) []byte {
				activated = true
				pl, err := nodeattestor.Activate(context.Background(), n.agentP, ch)
				if err != nil {
					t.Fatal(err)
				}
				if tc.guess {
					if _, err := rand.Read(pl.GetActivatedSecret().Secret); err != nil {
						t.Fatal(err)
					}
				}
				b, err := evidence.Encode(pl)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			_, err := h.attest(a)
			if tc.reject == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !activated {
					t.Error("accepted a certified AK without credential activation")
				}
				return
			}
			h.wantReject(err, codes.PermissionDenied, tc.check, tc.reject)
		})
	}
}

func TestRejectTPMRuntimeLogOnWrongRegister(t *testing.T) {
	n := startTPMNode(t)
	h := newHarness(t, nil).mustConfigure(fmt.Sprintf(`tpm { ek_ca_files = [%q] }`, n.Prov.CAPath))
	a := n.agent()
	for name, l := range map[string]*runtimelog.Log{
		"rtmr3":          runtimelog.New(cctrusted.RTMR(3).IMR(), cctrusted.AlgSHA384),
		"pcr16 unquoted": runtimelog.New(cctrusted.PCR(16).IMR(), cctrusted.AlgSHA384),
	} {
		if _, err := l.Append(runtimelog.Workload{ExeSHA256: make([]byte, 32), ExeSHA384: make([]byte, 48)}); err != nil {
			t.Fatal(err)
		}
		b, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		a.Mutate = func(e *evidencepb.Evidence) {
			e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, b)
		}
		_, err = h.attest(a)
		want := "a PCR in 11..23"
		if name != "rtmr3" {
			want = "does not cover"
		}
		h.wantReject(err, codes.PermissionDenied, appraisal.CheckRuntimeReplay, want)
	}
	// An IMA list that does not replay to PCR10.
	a.Mutate = func(e *evidencepb.Evidence) {
		e.RuntimeLog = nil
		e.ImaLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_IMA, simtest.Testdata(t, "ima", "mixed.bin"))
	}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, appraisal.CheckIMAReplay, "pcr10")
}

// TestTPMRuntimeRollbackProtection: a TPM node's runtime record proves
// what it ran only on the server's tpm.runtime_pcr (11..15, reset only by
// a reboot), and that PCR's quoted value must be accounted for.
func TestTPMRuntimeRollbackProtection(t *testing.T) {
	n15, n23 := startTPMNodeOn(t, 15), startTPMNode(t)
	policy := fmt.Sprintf(`require_policy = true
policy "clean" {
  enforce = true
  tee     = ["tpm"]
  runtime { allowed_exe_sha256 = [%q] }
}`, hex.EncodeToString(n15.exe))
	runtimeLog := func(pcr cctrusted.PCR, exe string) []byte {
		l := runtimelog.New(pcr.IMR(), cctrusted.AlgSHA256)
		sum := sha256.Sum256([]byte(exe))
		if _, err := l.Append(runtimelog.Workload{ExeSHA256: sum[:], ExePath: "/usr/bin/" + exe}); err != nil {
			t.Fatal(err)
		}
		b, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("genuine node on the reserved pcr15", func(t *testing.T) {
		h := newHarness(t, nil).mustConfigure(n15.serverTPM("runtime_pcr = 15") + policy)
		attrs, err := h.attest(n15.agent())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"policy:clean", "tpm:runtime_rollback_protected:true", "runtime:exe:sha256:" + hex.EncodeToString(n15.exe)} {
			if !hasSelector(attrs, s) {
				t.Errorf("selector %s missing from %v", s, attrs.GetSelectorValues())
			}
		}
		if logs := h.logs.String(); strings.Contains(logs, "never match on TPM nodes:") || !strings.Contains(logs, "match on TPM nodes only when their runtime log is on PCR 15") {
			t.Errorf("configure WARN: want the one naming PCR 15:\n%s", logs)
		}
	})
	t.Run("node on pcr23, no runtime_pcr on the server", func(t *testing.T) {
		h := newHarness(t, nil).mustConfigure(n23.serverTPM("") + policy)
		if !strings.Contains(h.logs.String(), "Runtime policy constraints never match on TPM nodes") {
			t.Errorf("no configure WARN about runtime constraints on TPM nodes:\n%s", h.logs.String())
		}
		_, err := h.attest(n23.agent())
		h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "clean", "runtime log is on pcr23, which can be reset without a reboot")
		// Without require_policy the node is accepted, with nothing runtime.
		h2 := newHarness(t, nil).mustConfigure(n23.serverTPM(""))
		attrs, err := h2.attest(n23.agent())
		if err != nil {
			t.Fatal(err)
		}
		if s := selectorsWithPrefix(attrs, "runtime:"); len(s) != 0 || !hasSelector(attrs, "tpm:runtime_rollback_protected:false") {
			t.Errorf("selectors %v: want no runtime: selector and tpm:runtime_rollback_protected:false", attrs.GetSelectorValues())
		}
	})
	t.Run("node on pcr23, runtime_pcr 15 on the server", func(t *testing.T) {
		h := newHarness(t, nil).mustConfigure(n23.serverTPM("runtime_pcr = 15") + policy)
		_, err := h.attest(n23.agent())
		h.wantReject(err, codes.PermissionDenied, appraisal.CheckPolicy, "runtime log is on pcr23, which can be reset without a reboot", "tpm.runtime_pcr")
	})
	for _, c := range []struct {
		name   string
		node   *tpmNode
		tpm    string
		before func(t *testing.T)
		mutate func(e *evidencepb.Evidence)
		check  string
		parts  []string
	}{
		{
			name: "runtime log deleted on the reserved pcr15", node: n15, tpm: "runtime_pcr = 15",
			mutate: func(e *evidencepb.Evidence) { e.RuntimeLog = nil },
			check:  appraisal.CheckRuntimeReplay, parts: []string{"pcr15 (tpm.runtime_pcr) is ", "the node sent no runtime log", "nothing accounts for its value"},
		},
		{
			// A fresh log on PCR23 that replays (the attacker extended
			// PCR23 to match) in place of the one on PCR15.
			name: "runtime log moved to pcr23 off the reserved pcr15", node: n15, tpm: "runtime_pcr = 15",
			before: func(t *testing.T) {
				l, err := runtimelog.Decode(runtimeLog(23, "allowed-only"), runtimelog.DefaultLimits())
				if err != nil {
					t.Fatal(err)
				}
				d, _ := l.Events()[0].Digest(cctrusted.AlgSHA256)
				if err := tee.Unwrap(n15.agentP).(*tpm.Provider).Extend(context.Background(), 23, cctrusted.AlgSHA256, d); err != nil {
					t.Fatal(err)
				}
			},
			mutate: func(e *evidencepb.Evidence) {
				e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, runtimeLog(23, "allowed-only"))
			},
			check: appraisal.CheckRuntimeReplay, parts: []string{"pcr15 (tpm.runtime_pcr) is ", "runtime log is on pcr23"},
		},
		{
			// A log that replays from anything but zero: the genuine
			// record replaced by another one.
			name: "runtime log not starting from zero on pcr15", node: n15, tpm: "runtime_pcr = 15",
			mutate: func(e *evidencepb.Evidence) {
				e.RuntimeLog = simtest.ZstdLog(t, evidencepb.LogKind_LOG_KIND_RUNTIME, runtimeLog(15, "allowed-only"))
			},
			check: appraisal.CheckRuntimeReplay, parts: []string{"does not replay to the signed pcr15"},
		},
		{
			name: "runtime log on pcr15, no runtime_pcr on the server", node: n15,
			check: appraisal.CheckRuntimeReplay, parts: []string{"runtime log extends pcr15", "sets no runtime_pcr"},
		},
		{
			name: "runtime log on pcr15, runtime_pcr 13 on the server", node: n15, tpm: "runtime_pcr = 13",
			check: appraisal.CheckRuntimeReplay, parts: []string{"runtime log extends pcr15", "tpm.runtime_pcr is 13"},
		},
		{
			// shim measures its MOK lists into PCR 14.
			name: "firmware log extends the reserved pcr14", node: n23, tpm: "runtime_pcr = 14",
			check: appraisal.CheckTPMLogReplay, parts: []string{"extends pcr14", "tpm.runtime_pcr"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil).mustConfigure(c.node.serverTPM(c.tpm))
			if c.before != nil {
				c.before(t)
			}
			a := c.node.agent()
			a.Mutate = c.mutate
			_, err := h.attest(a)
			h.wantReject(err, codes.PermissionDenied, c.check, c.parts...)
		})
	}
}
