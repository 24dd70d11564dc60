package conf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// imaPolicy reads a policy's ima block or ima_policy_file (one of them).
// The file is only recorded: the server reads it at Configure, because it
// may hold Keylime JSON, which eventlog/ima/imapolicy reads.
func (c *policyCheck) imaPolicy(p *Policy, r rawPolicy) {
	if c.has("ima") && r.IMA != nil {
		ip, ok := imaPolicy(c.d, c.path+".ima", r.IMA)
		if !ok {
			c.ok = false
		} else {
			ip.Source = fmt.Sprintf("%s (policy %q)", ip.Source, p.Name)
			p.IMA = ip
		}
	}
	if !c.has("ima_policy_file") {
		return
	}
	switch {
	case strings.TrimSpace(r.IMAPolicyFile) == "":
		c.errf("ima_policy_file", "empty path")
	case c.has("ima"):
		c.errf("ima_policy_file", "set an ima block or ima_policy_file, not both")
	default:
		p.IMAPolicyFile = r.IMAPolicyFile
	}
}

// imaDigestValue is the policy digest's "ima" value: the compiled policy's
// fingerprint when the server set it, else a hash of the block's canonical
// HCL, else the file's path (what is known before the file is read); empty
// without an IMA policy.
func (p *Policy) imaDigestValue() string {
	switch {
	case p.IMAFingerprint != "":
		return "fingerprint:" + p.IMAFingerprint
	case p.IMA != nil:
		sum := sha256.Sum256([]byte(p.IMA.HCL()))
		return "hcl:" + hex.EncodeToString(sum[:])
	case p.IMAPolicyFile != "":
		return "file:" + p.IMAPolicyFile
	}
	return ""
}

// writeIMAHCL renders the IMA policy: ima_policy_file when it came from a
// file (the file is the source of truth), else the ima block indented
// into the policy block.
func (p *Policy) writeIMAHCL(b *strings.Builder) {
	switch {
	case p.IMAPolicyFile != "":
		fmt.Fprintf(b, "  ima_policy_file = %s\n", quoteHCL(p.IMAPolicyFile))
	case p.IMA != nil:
		for _, line := range strings.SplitAfter(p.IMA.HCL(), "\n") {
			if line != "" {
				b.WriteString("  " + line)
			}
		}
	}
}
