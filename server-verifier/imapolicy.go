package serververifier

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/appraisal"
	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/eventlog/ima/imapolicy"
	"github.com/ccnp-spire/ccnp-spire/evidence"
	"github.com/ccnp-spire/ccnp-spire/evidence/evidencepb"
	"github.com/ccnp-spire/ccnp-spire/policy"
)

// keyIMAEntries counts appraised IMA entries by policy and result
// (spire_server_ccnp_ima_entries{policy,result} on Prometheus).
var keyIMAEntries = []string{"ccnp", "ima", "entries"}

const labelPolicy = "policy"

// imaPolicies loads and compiles every policy's IMA runtime policy, once
// per configuration: ima_policy_file is read here (an HCL ima block, or
// Keylime runtime policy JSON when it starts with "{"), and the compiled
// policy's fingerprint goes into the policy digest. The policies in cfg
// are updated in place; cfg is not yet shared.
func (p *Plugin) imaPolicies(ctx context.Context, cfg *conf.ServerVerifier) ([]appraisal.IMAPolicy, error) {
	var out []appraisal.IMAPolicy
	for i := range cfg.Policies {
		pol := &cfg.Policies[i]
		if pol.IMAPolicyFile != "" {
			src, err := p.readIMAPolicyFile(pol.Name, pol.IMAPolicyFile)
			if err != nil {
				return nil, err
			}
			pol.IMA = src
		}
		if pol.IMA == nil {
			continue
		}
		c, err := imapolicy.Compile(ctx, pol.IMA)
		if err != nil {
			return nil, fmt.Errorf("policy %q: ima: %w", pol.Name, err)
		}
		pol.IMAFingerprint = c.Fingerprint()
		out = append(out, appraisal.IMAPolicy{Name: pol.Name, Policy: c})
	}
	return out, nil
}

// readIMAPolicyFile reads ima_policy_file: Keylime's JSON is an object, an
// HCL file starts with a key or a comment, so the first byte that is not
// white space tells them apart.
func (p *Plugin) readIMAPolicyFile(name, path string) (*conf.IMAPolicy, error) {
	key := fmt.Sprintf("policy %q: ima_policy_file", name)
	b, err := p.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(b) > imapolicy.MaxKeylimeBytes {
		return nil, fmt.Errorf("%s: %s is %d bytes, more than the limit of %d", key, path, len(b), imapolicy.MaxKeylimeBytes)
	}
	var src *conf.IMAPolicy
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		src, err = imapolicy.ParseKeylime(b, path)
	} else {
		src, err = conf.ParseIMAPolicy(string(b), path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return src, nil
}

// imaStart decodes the IMA policy verdicts a checkpoint carries. One that
// does not decode is left out: appraiseIMA then asks for the whole list.
func imaStart(c *evidencepb.CheckpointClaims) map[string]*imapolicy.Verdict {
	if len(c.GetImaVerdicts()) == 0 {
		return nil
	}
	m := make(map[string]*imapolicy.Verdict, len(c.GetImaVerdicts()))
	for _, v := range c.GetImaVerdicts() {
		d, err := imapolicy.UnmarshalVerdict(v.GetVerdict())
		if err != nil {
			continue
		}
		m[v.GetPolicy()] = &d
	}
	return m
}

// imaClaims encodes the verdicts for a checkpoint, in policy order; the
// reason when they cannot be carried (the next attestation is then full).
func imaClaims(n *appraisal.Next, policies []appraisal.IMAPolicy) ([]*evidencepb.IMAVerdict, string) {
	if len(n.IMAVerdicts) == 0 {
		return nil, ""
	}
	if len(n.IMAVerdicts) > evidence.MaxCheckpointIMAVerdicts {
		return nil, fmt.Sprintf("%d IMA policy verdicts, more than a checkpoint carries (%d)", len(n.IMAVerdicts), evidence.MaxCheckpointIMAVerdicts)
	}
	out := make([]*evidencepb.IMAVerdict, 0, len(n.IMAVerdicts))
	for _, ip := range policies {
		v, ok := n.IMAVerdicts[ip.Name]
		if !ok {
			continue
		}
		b, err := v.MarshalBinary()
		if err != nil {
			return nil, fmt.Sprintf("IMA verdict of policy %q: %v", ip.Name, err)
		}
		out = append(out, &evidencepb.IMAVerdict{Policy: ip.Name, Verdict: b})
	}
	return out, ""
}

// reportIMA counts this attestation's appraised entries by policy and
// result, and logs what warn-only IMA policies found (every offending entry
// the verdict kept) in one WARN line per policy.
func (a *attestation) reportIMA(node *appraisal.Node, results []policy.Result, id string) {
	for _, ia := range node.IMA {
		if a.st.metrics == nil {
			break
		}
		c := ia.Appraised
		for _, r := range []struct {
			name string
			n    int
		}{
			{"digest", c.Digest}, {"signature", c.Signature}, {"excluded", c.Excluded}, {"boot", c.Boot},
			{"keyring", c.Keyring}, {"buffer", c.Buffer}, {"violation", c.Violation},
			{"out_of_scope", c.OutOfScope}, {"failed", c.Failed},
		} {
			a.st.metrics.incr(keyIMAEntries, float32(r.n), labels(labelPolicy, ia.Name, labelResult, r.name))
		}
	}
	for _, r := range results {
		if len(r.Warnings) > 0 {
			a.log.Warn("Warn-only IMA runtime policy found offending entries", "policy", r.Name, "policy_digest", r.Digest,
				"tee", a.tee, "node", id, "offending", r.Warnings)
		}
	}
}
