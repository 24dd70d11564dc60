package appraisal

// The one vocabulary of check names: the appraisal records them, the server
// plugin rejects with them (audit lines, gRPC messages), VerifyOffline and
// `ccnp verify` print them. Stable: tests, dashboards and log queries match
// on them.

// Checks of a TDX quote (TDX, also for the simulator).
const (
	CheckQuoteFormat    = "quote_format"
	CheckPCKChain       = "pck_chain"
	CheckQuoteSignature = "quote_signature"
	CheckCollateral     = "collateral"
	CheckTCBEvaluation  = "tcb_evaluation_data_number"
	CheckTCBStatus      = "tcb_status"
	CheckDebug          = "debug"
	CheckReportData     = "report_data"
	// CheckSimulatedQuote: a simulator's quote presented as TDX.
	CheckSimulatedQuote = "simulated_quote"
)

// Checks of TPM evidence (TPM).
const (
	CheckEKTrust    = "ek_trust"   // EK certificate chain or EK hash allow-list
	CheckTPMQuote   = "tpm_quote"  // AK signature, extraData, PCR selection and digest
	CheckAKTrust    = "ak_trust"   // AK certificate chain to ak_ca_files, in addition to activation
	CheckActivation = "activation" // credential activation ties the AK to the EK
)

// Checks of Azure TDX evidence (AzureTDX) besides azuretdx's own
// (azure_evidence_format, td_quote, td_report_match, runtime_data_hash,
// hcl_ak, tpm_quote_*, tpm_pcr_*) and the TD quote's (td_quote.<check>).
const (
	CheckParavisorMRTD = "paravisor_mrtd" // the TD's MRTD is a trusted paravisor build
	CheckAzureAK       = "ak_public"      // the node's ak_public, when sent, is HCLAkPub
)

// Checks of the logs against the signed registers.
const (
	CheckCCELReplay    = "ccel_replay"    // CCEL against RTMR0..2
	CheckTPMLogReplay  = "tpm_log_replay" // TPM firmware log against the quoted PCRs
	CheckIMAReplay     = "ima_replay"     // IMA log against RTMR2 / PCR10
	CheckIMAPolicy     = "ima_policy"     // the replayed IMA entries against the IMA runtime policies
	CheckRuntimeReplay = "runtime_replay" // runtime log against RTMR3 / the runtime PCR
)

// Checks the server plugin makes around an appraisal: the protocol, its
// bounds and what it does with the appraised facts.
const (
	CheckProtocol   = "protocol"   // message order, kinds, timeouts
	CheckPayload    = "payload"    // size, version, structure of a payload
	CheckTEE        = "tee"        // TEE kind accepted by configuration, hello/evidence agree
	CheckNonce      = "nonce"      // this round's, answered within nonce_ttl
	CheckBinding    = "binding"    // SHA-512(nonce || SHA-256(hello)) in the evidence
	CheckCheckpoint = "checkpoint" // incremental evidence no fallback can fix
	CheckPolicy     = "policy"     // require_policy, enforced policies
	CheckAgentID    = "agent_id"   // agent ID rendering
	CheckSelectors  = "selectors"  // the bound on one agent's selectors
	CheckCapacity   = "capacity"   // evidence over max_evidence_bytes_in_flight held at once
)
