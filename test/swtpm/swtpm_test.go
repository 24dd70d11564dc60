package swtpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	"github.com/google/go-eventlog/testdata"
	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// start launches a fresh swtpm for one test, or skips when swtpm is not
// installed (the only reason to skip).
func start(t testing.TB) *TPM {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("swtpm not installed, skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tpm, err := Start(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tpm.Close(); err != nil {
			t.Error(err)
		}
	})
	return tpm
}

func TestStartClose(t *testing.T) {
	tpm := start(t)
	if !strings.HasPrefix(tpm.Addr(), "tcp://127.0.0.1:") {
		t.Fatalf("Addr = %q", tpm.Addr())
	}
	// A second emulator must get other ports.
	other := start(t)
	if other.Addr() == tpm.Addr() {
		t.Fatalf("two emulators on %s", tpm.Addr())
	}
	pid := tpm.PID()
	if err := tpm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tpm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Fatalf("swtpm pid %d still running after Close", pid)
	}
	if _, err := tpm.Dial(context.Background()); err == nil {
		t.Fatal("dialled a closed emulator")
	}
}

func TestStartErrors(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("swtpm not installed, skipping: %v", err)
	}
	ctx := context.Background()
	if _, err := Start(ctx, t.TempDir(), Options{Binary: "/nonexistent/swtpm"}); err == nil {
		t.Fatal("started a missing binary")
	}
	// /bin/false exits at once: Start must report it instead of waiting.
	_, err := Start(ctx, t.TempDir(), Options{Binary: "false", Attempts: 2})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start(false) = %v, want an 'exited' error", err)
	}
}

func TestProvision(t *testing.T) {
	tpm := start(t)
	ctx := context.Background()
	p, err := Provision(ctx, tpm, ProvisionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(tpm.Dir(), CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file holds no certificate")
	}

	// Read back with go-tpm-tools (not this package's NV code): the EK it
	// derives from the TCG template must carry the certificate we wrote.
	rw, err := tpm.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	for typ, want := range map[KeyType]struct {
		index  uint32
		handle tpmutil.Handle
		get    func() (*client.Key, error)
	}{
		RSA: {EKCertNVIndexRSA, client.EKReservedHandle, func() (*client.Key, error) { return client.EndorsementKeyRSA(rw) }},
		ECC: {EKCertNVIndexECC, client.EKECCReservedHandle, func() (*client.Key, error) { return client.EndorsementKeyECC(rw) }},
	} {
		ek := p.EKs[typ]
		if ek == nil || ek.NVIndex != want.index || ek.Handle != uint32(want.handle) {
			t.Fatalf("%s: EK %+v", typ, ek)
		}
		key, err := want.get()
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if key.Cert() == nil {
			t.Fatalf("%s: go-tpm-tools found no certificate at 0x%08x", typ, want.index)
		}
		if !bytes.Equal(key.CertDERBytes(), ek.Cert.Raw) {
			t.Errorf("%s: NV certificate differs from the one Provision returned", typ)
		}
		// As on real EK certificates the SAN holds only a directoryName and
		// is critical, which Go leaves unhandled: it must be exactly that.
		cert := key.Cert()
		if u := cert.UnhandledCriticalExtensions; len(u) != 1 || !u[0].Equal(oidSAN) {
			t.Fatalf("%s: unhandled critical extensions %v, want only the SAN", typ, u)
		}
		if !strings.Contains(string(sanValue(t, cert)), "swtpm") {
			t.Errorf("%s: SAN lacks the TPM model", typ)
		}
		cert.UnhandledCriticalExtensions = nil
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: EK certificate does not chain to the sim EK CA: %v", typ, err)
		}
		if !publicKeysEqual(cert.PublicKey, key.PublicKey()) {
			t.Errorf("%s: certificate key is not the EK", typ)
		}
		key.Close()
	}

	// Provisioning again reuses the CA and replaces the certificates.
	rw.Close()
	p2, err := Provision(ctx, tpm, ProvisionOptions{EKs: []KeyType{ECC}})
	if err != nil {
		t.Fatal(err)
	}
	if !p2.CA.Equal(p.CA) {
		t.Error("second Provision made a new CA")
	}
	if bytes.Equal(p2.EKs[ECC].Cert.Raw, p.EKs[ECC].Cert.Raw) {
		t.Error("second Provision did not issue a new certificate")
	}
	if _, err := Provision(ctx, tpm, ProvisionOptions{EKs: []KeyType{"dsa"}}); err == nil {
		t.Error("unknown EK type accepted")
	}
}

// expected holds the PCR values the machines' TPMs reported for the logs in
// testdata/tpmlog (recorded by go-eventlog, see expected_from_upstream.py):
// an independent source for what a replay must produce.
type expected map[string]struct {
	Banks map[string]map[string]string `json:"banks"`
}

func TestReplayLogRealLogs(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/tpmlog/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp expected
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp) == 0 {
		t.Fatal("no expected values")
	}
	for name, want := range exp {
		t.Run(name, func(t *testing.T) {
			log, err := os.ReadFile(filepath.Join("../../testdata/tpmlog", name))
			if err != nil {
				t.Fatal(err)
			}
			tpm := start(t)
			ctx := context.Background()
			n, err := ReplayLog(ctx, tpm, log)
			if err != nil {
				t.Fatal(err)
			}
			if n < 10 {
				t.Fatalf("only %d events extended", n)
			}
			rw, err := tpm.Dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			// The machines' IMA (PCR10) and later runtime extends are not in
			// the firmware log: compare only the PCRs the log extends.
			el, err := tcg.ParseEventLog(log, tcg.ParseOpts{})
			if err != nil {
				t.Fatal(err)
			}
			inLog := map[string]bool{}
			for _, ev := range el.Events(register.HashSHA256) {
				if ev.Type != tcg.NoAction {
					inLog["pcr"+strconv.Itoa(ev.Index)] = true
				}
			}
			checked := 0
			for bank, pcrs := range want.Banks {
				alg := map[string]tpm2.Algorithm{"sha1": tpm2.AlgSHA1, "sha256": tpm2.AlgSHA256, "sha384": tpm2.AlgSHA384}[bank]
				got, err := client.ReadPCRs(rw, client.FullPcrSel(alg))
				if err != nil {
					t.Fatal(err)
				}
				for pcr, hexWant := range pcrs {
					if !inLog[pcr] {
						continue
					}
					i, _ := strconv.Atoi(strings.TrimPrefix(pcr, "pcr"))
					if g := hex.EncodeToString(got.Pcrs[uint32(i)]); g != hexWant {
						t.Errorf("%s %s = %s, machine had %s", bank, pcr, g, hexWant)
					}
					checked++
				}
			}
			if checked == 0 {
				t.Fatal("nothing compared")
			}
		})
	}
}

func TestReplayLogRejects(t *testing.T) {
	tpm := start(t)
	ctx := context.Background()
	// glinux-alex starts from locality 3: PCR0 cannot match on swtpm.
	if _, err := ReplayLog(ctx, tpm, testdata.GlinuxAlexEventLog); !errors.Is(err, ErrStartupLocality) {
		t.Errorf("locality-3 log: err = %v, want ErrStartupLocality", err)
	}
	for name, log := range map[string][]byte{
		"empty":     nil,
		"garbage":   bytes.Repeat([]byte{0xA5}, 100),
		"truncated": testdata.Debian10EventLog[:len(testdata.Debian10EventLog)-7],
		"oversized": make([]byte, maxLogSize+1),
	} {
		if _, err := ReplayLog(ctx, tpm, log); err == nil {
			t.Errorf("%s log accepted", name)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ReplayLog(cctx, tpm, testdata.Debian10EventLog); err == nil {
		t.Error("cancelled context accepted")
	}
}

func sanValue(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSAN) {
			if !e.Critical {
				t.Error("SAN is not critical")
			}
			return e.Value
		}
	}
	t.Fatal("no SAN")
	return nil
}

func publicKeysEqual(a, b any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func TestFramedConn(t *testing.T) {
	hdr := func(size uint32) []byte {
		b := []byte{0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[2:], size)
		return b
	}
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"ok":         {append(hdr(12), 7, 7), ""},
		"oversized":  {hdr(maxResponse + 1), "out of range"},
		"undersized": {hdr(3), "out of range"},
		"truncated":  {append(hdr(40), 1), "40-byte response"},
		"no header":  {[]byte{0x80}, "response header"},
	} {
		a, b := net.Pipe()
		go func() { b.Write(tc.in); b.Close() }()
		c := &framedConn{Conn: a}
		n, err := c.Read(make([]byte, 64))
		c.Close()
		switch {
		case tc.want == "" && (err != nil || n != 12):
			t.Errorf("%s: Read = %d, %v", name, n, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
