// Package azuretdx reads and verifies the evidence of an Azure TDX
// confidential VM, where the guest runs behind a paravisor (the HCL) and has
// no TDX quote of its own: the paravisor's vTPM holds an HCL report in NV
// index 0x01400001 (a TD report whose REPORTDATA commits to runtime data
// carrying the vTPM's attestation key), the platform quotes that TD report,
// and the vTPM quotes its PCRs with that key.
//
// ParseHCLReport, ParseRuntimeData and ParseTDReport read the binary and
// JSON structures; ParseEvidence reads trustee's JSON evidence (layouts v0
// and v1); Verify checks the whole chain offline, recording every check.
// The TD quote itself is verified by a callback (appraisal.TDX in the
// project), so that Azure nodes get exactly the TDX checks other TDs get.
package azuretdx
