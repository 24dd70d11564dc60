package spirelab

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// DemoResult is what the demo established.
type DemoResult struct {
	SPIFFEID       string
	AgentID        string
	AgentSelectors []string
	// TimeToSVID is from agent start to the workload's SVID.
	TimeToSVID time.Duration
}

// RunDemo runs the demo in the lab: a simulated TD with a PCS, a policy
// generated from it, spire-server and spire-agent with the ccnp plugins,
// a node alias on the policy and a workload entry on the workload's
// executable digest, then the workload's SVID. It prints what it proves to out.
func RunDemo(ctx context.Context, l *Lab, out io.Writer) (*DemoResult, error) {
	l.Progress = out
	sim, err := l.InitSim(ctx, "sim")
	if err != nil {
		return nil, err
	}
	policy, err := l.GeneratePolicy(ctx, sim, "demo")
	if err != nil {
		return nil, err
	}
	srv, err := l.StartServer(ctx, ServerConfig{SimRoot: filepath.Join(sim.Dir, "root.pem"), PCSURL: sim.PCSURL,
		PolicyFile: policy, RequirePolicy: true})
	if err != nil {
		return nil, err
	}
	workload := filepath.Join(l.Bin, "ccnp-demo-workload")
	sum, err := Checksum(workload)
	if err != nil {
		return nil, err
	}
	td := l.TrustDomain
	l.say("registration entries: node alias spiffe://%s/nodes/demo on ccnp:sim:policy:demo (a simulated node's selectors are all under sim:); workload on ccnp:exe:sha256:%s", td, sum)
	if err := srv.CreateEntry(ctx, "-node", "-spiffeID", "spiffe://"+td+"/nodes/demo", "-selector", "ccnp:sim:policy:demo"); err != nil {
		return nil, err
	}
	if err := srv.CreateEntry(ctx, "-parentID", "spiffe://"+td+"/nodes/demo", "-spiffeID", "spiffe://"+td+"/demo/workload",
		"-selector", "ccnp:exe:sha256:"+sum); err != nil {
		return nil, err
	}
	start := time.Now()
	agent, err := l.StartAgent(ctx, srv, AgentConfig{TEE: "sim", SimDir: sim.Dir})
	if err != nil {
		return nil, err
	}
	if err := agent.WaitReady(ctx); err != nil {
		return nil, err
	}
	l.say("the demo workload fetches its X.509-SVID over the Workload API (go-spiffe v2)")
	got, err := agent.FetchSVID(ctx, workload, 60*time.Second)
	if err != nil {
		return nil, err
	}
	res := &DemoResult{TimeToSVID: time.Since(start)}
	fmt.Fprintf(out, "    %s\n    agent start to workload SVID: %.1f s\n", got, res.TimeToSVID.Seconds())
	if i := strings.Index(got, "spiffe://"); i >= 0 {
		res.SPIFFEID = strings.TrimRight(strings.Fields(got[i:])[0], ",.")
	}

	ids, err := srv.Agents(ctx)
	if err != nil || len(ids) == 0 {
		return nil, fmt.Errorf("no attested agent listed: %v", err)
	}
	res.AgentID = ids[0]
	if res.AgentSelectors, err = srv.AgentSelectors(ctx, res.AgentID); err != nil {
		return nil, err
	}
	l.say("what the server proved about the node %s (spire-server agent show):", res.AgentID)
	for _, s := range res.AgentSelectors {
		fmt.Fprintf(out, "    %s\n", clip(s, 150))
	}
	l.say("the workload's entry (its selectors, matched by the ccnp workload attestor):")
	if entry, err := srv.Exec(ctx, "entry show", "-spiffeID", "spiffe://"+td+"/demo/workload"); err == nil {
		fmt.Fprint(out, indent(entry))
	}
	l.say("the measurement chain, replayed: MRTD, RTMR0..2 from the CCEL, RTMR3 from the runtime log")
	if m, err := l.Run(ctx, "ccnp", "--tee", "sim", "--sim-dir", sim.Dir, "measurements"); err == nil {
		fmt.Fprint(out, indent(m))
	}
	if r, err := l.Run(ctx, "ccnp", "eventlog", filepath.Join(l.Dir, "agent", "runtime.cel"), "--replay"); err == nil {
		fmt.Fprint(out, indent(r))
	}
	return res, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + clip(line, 150) + "\n")
	}
	return b.String()
}
