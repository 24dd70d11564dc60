package serververifier

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pki"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// v5Platform is the default simulated platform minting TDX 1.5 quotes (v5,
// body type 3) with a service TD bound and a module updated since the TD
// was built (TEE_TCB_SVN2 above TEE_TCB_SVN).
func v5Platform() *pki.Platform {
	p := pki.DefaultPlatform()
	p.QuoteVersion = pki.QuoteVersion5
	p.MRServiceTD = bytes.Repeat([]byte{0x5e}, pki.MRSize)
	p.TeeTCBSVN2 = append(pki.Hex(nil), p.TeeTCBSVN...)
	p.TeeTCBSVN2[0]++
	return &p
}

// TestQuoteV5Selectors attests a simulated TD whose quotes are v5 over the
// real plugin transport, with collateral from the simulated PCS: the TDX
// 1.5 fields reach the selectors (under sim:, as every simulated value),
// and a v4 node gets neither.
func TestQuoteV5Selectors(t *testing.T) {
	p := v5Platform()
	_, h, a := simSetup(t, sim.InitOptions{Platform: p}, "", "")
	attrs, err := h.attest(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"sim:mrservicetd:" + hex.EncodeToString(p.MRServiceTD),
		"sim:tee_tcb_svn2:" + hex.EncodeToString(p.TeeTCBSVN2),
		"sim:tcb_status:UpToDate",
	} {
		if !hasSelector(attrs, want) {
			t.Errorf("no selector %s in %v", want, attrs.SelectorValues)
		}
	}
	for _, s := range attrs.SelectorValues {
		if len(s) >= 255 || strings.HasPrefix(s, "tdx:") {
			t.Errorf("selector %q", s)
		}
	}

	_, h4, a4 := simSetup(t, sim.InitOptions{}, "", "")
	attrs4, err := h4.attest(a4)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(selectorsWithPrefix(attrs4, "sim:mrservicetd:"), selectorsWithPrefix(attrs4, "sim:tee_tcb_svn2:")...); len(got) != 0 {
		t.Errorf("a v4 quote gives TDX 1.5 selectors: %v", got)
	}
}

// TestQuoteV5SimulatedAsTDX: a v5 quote of the simulator that claims to be
// TDX is refused as a simulation, as a v4 one is.
func TestQuoteV5SimulatedAsTDX(t *testing.T) {
	n := newSimNode(t, sim.InitOptions{Platform: v5Platform()})
	h := newHarness(t, nil).mustConfigure(n.serverConfig("", ""))
	a := n.agent(t, "")
	a.p = simtest.AsTDX{Provider: n.prov}
	_, err := h.attest(a)
	h.wantReject(err, codes.PermissionDenied, "pck_chain", "does not chain to a trusted root")
}
