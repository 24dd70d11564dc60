package policy

import (
	"fmt"

	"github.com/ccnp-spire/ccnp-spire/conf"
)

// evaluateIMA checks the verdict of the policy's IMA runtime policy. An
// enforced one fails on its first offending entry (entry number, path,
// digest, why), naming how many more there are; a warn-only one returns
// every offending entry the verdict kept as warnings. A node without a
// verified IMA list does not match: a runtime policy can only be satisfied
// by a list the hardware vouched for.
func evaluateIMA(p *conf.Policy, f *Facts, miss func(string, string, ...any)) []string {
	if p.IMA == nil && p.IMAPolicyFile == "" {
		return nil
	}
	v := f.IMAVerdicts[p.Name]
	if v == nil {
		miss("ima", "no IMA list: the node sent no IMA measurement list that replayed to its signed register (RTMR2 or PCR10)")
		return nil
	}
	if v.OK() {
		return nil
	}
	// A policy read from a file that the server has not loaded enforces.
	enforce := p.IMA == nil || p.IMA.Enforce
	if enforce {
		first := "an entry offends the policy"
		if v.First != nil {
			first = v.First.String()
		}
		if more := v.Counts.Failed - 1; more > 0 {
			miss("ima", "%s (and %d more offending entries)", first, more)
		} else {
			miss("ima", "%s", first)
		}
		return nil
	}
	w := make([]string, 0, len(v.Findings)+1)
	for _, fd := range v.Findings {
		w = append(w, "ima: "+fd.String())
	}
	if n := v.Truncated(); n > 0 {
		w = append(w, fmt.Sprintf("ima: and %d more offending entries", n))
	}
	return w
}
