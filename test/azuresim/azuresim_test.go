package azuresim_test

import (
	"bytes"
	"testing"

	"github.com/ccnp-spire/ccnp-spire/azuretdx"
	"github.com/ccnp-spire/ccnp-spire/test/azuresim"
)

// The rig's HCL report is one azuretdx reads: a TDX report whose runtime
// data names the AK the rig persisted.
func TestRigHCLReport(t *testing.T) {
	p := azuresim.Start(t, azuresim.Options{UserData: bytes.Repeat([]byte{0xab}, 64)})
	r, err := azuretdx.ParseHCLReport(p.HCLReport())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := azuretdx.ParseRuntimeData(r.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	if !rt.AK.Equal(p.AK()) || !bytes.Equal(rt.UserData, bytes.Repeat([]byte{0xab}, 64)) {
		t.Fatalf("runtime data: AK equal %v, user data %x", rt.AK.Equal(p.AK()), rt.UserData)
	}
	t.Logf("HCL report %d bytes, runtime data %d bytes", len(p.HCLReport()), len(r.RuntimeData))
}
