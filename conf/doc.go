// Package conf parses the HCL configuration of every ccnp-spire plugin and
// the policy language, with one strict parser: HCL v1 (the dialect SPIRE
// uses for plugin_data) is parsed to its syntax tree, every key is checked
// against the target struct's hcl tags (nested and labelled blocks
// included), values are type-checked, and only then decoded. Unknown keys,
// duplicate keys and wrong types are errors naming the key and its line:
//
//	plugin_data: line 7: unknown key "alow_debug" in tdx (did you mean "allow_debug"?)
//	policies.hcl: line 3: policy "golden": rtmr1[0]: want 96 hex characters, got 94
//
// Each plugin has a typed configuration with its defaults applied and its
// values validated: AgentNodeAttestor, ServerVerifier, WorkloadAttestor.
// Durations are Go duration strings ("60s", "1h"). JSON input is refused.
//
// Policies (see Policy) are named allow-lists of golden values; the server
// evaluates them against verified facts elsewhere. Policy.Digest identifies
// a policy's content in audit logs and Policy.HCL renders it back to HCL.
package conf
