package adversarial

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ccnp-spire/ccnp-spire/tee/sim"
	"github.com/ccnp-spire/ccnp-spire/tee/sim/pcs"
	"github.com/ccnp-spire/ccnp-spire/test/simtest"
)

// collateralCase is one attestation of a simulated TD whose PCS serves
// params, against a server with extra configuration in its tdx block and
// at its top level.
type collateralCase struct {
	name     string
	params   pcs.Params
	tdx, top string
	// want is the rejection; with want.code zero the node is accepted and
	// must receive every selector of selectors and none of absent.
	want              rejection
	selectors, absent []string
}

func runCollateralCases(t *testing.T, cases []collateralCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newSimNode(t, sim.InitOptions{})
			if c.params.TCBStatus == "" {
				c.params.TCBStatus = "UpToDate"
			}
			n.SetPCSParams(t, c.params)
			s := newServer(t, n.ServerConfig(n.pcs.URL, simtest.ServerExtra{TDX: c.tdx, Top: c.top}))
			attrs, err := s.attest(n.agent(t))
			if c.want.code != codes.OK {
				s.want(t, err, c.want)
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			got := attrs.GetSelectorValues()
			for _, sel := range c.selectors {
				if !slices.Contains(got, sel) {
					t.Errorf("selector %s missing from %v", sel, got)
				}
			}
			for _, sel := range c.absent {
				if slices.Contains(got, sel) {
					t.Errorf("selector %s present", sel)
				}
			}
		})
	}
}

// TestPCCSServesPreRecoveryCollateral: a PCCS (or a cache, or a network
// attacker replaying Intel-signed documents still before their nextUpdate)
// serves TCB info or QE identity from before a TCB recovery, which rates the
// platform as it was rated before the recovery. With
// tdx.min_tcb_evaluation_data_number the server refuses it as Unavailable
// (the server's collateral source is stale, not the node: the agent retries
// and the cache asks the PCCS again); a policy's minimum withholds the policy.
func TestPCCSServesPreRecoveryCollateral(t *testing.T) {
	runCollateralCases(t, []collateralCase{
		{
			name:      "current collateral accepted",
			params:    pcs.Params{TCBEvaluationDataNumber: 17},
			tdx:       "min_tcb_evaluation_data_number = 17",
			selectors: []string{"sim:tcb_status:UpToDate", "sim:tcb_eval_num:17"},
		},
		{
			name:   "pre-recovery TCB info rating the platform UpToDate",
			params: pcs.Params{TCBEvaluationDataNumber: 16, QEEvaluationDataNumber: 17},
			tdx:    "min_tcb_evaluation_data_number = 17",
			want:   reject(codes.Unavailable, "collateral", "tcbEvaluationDataNumber 16 is below the minimum 17", "min_tcb_evaluation_data_number"),
		},
		{
			name:   "pre-recovery QE identity",
			params: pcs.Params{TCBEvaluationDataNumber: 17, QEEvaluationDataNumber: 16},
			tdx:    "min_tcb_evaluation_data_number = 17",
			want:   reject(codes.Unavailable, "collateral", "qe/identity", "tcbEvaluationDataNumber 16 is below the minimum 17"),
		},
		{
			name:   "policy requires a later recovery than the collateral",
			params: pcs.Params{TCBEvaluationDataNumber: 17},
			top:    "require_policy = true\npolicy \"recovered\" {\n  tee = [\"sim\"]\n  min_tcb_evaluation_data_number = 18\n}",
			want: reject(codes.PermissionDenied, "policy", `policy "recovered": min_tcb_evaluation_data_number: TCB info has evaluation data number 17`,
				"QE identity has evaluation data number 17"),
		},
		{
			name:      "policy minimum met",
			params:    pcs.Params{TCBEvaluationDataNumber: 18},
			top:       "require_policy = true\npolicy \"recovered\" {\n  tee = [\"sim\"]\n  min_tcb_evaluation_data_number = 18\n}",
			selectors: []string{"sim:policy:recovered", "sim:tcb_eval_num:18"},
		},
	})
}

// TestAdvisoryNotAcceptedByPolicy: the server accepts SWHardeningNeeded,
// and a node whose TCB level carries an advisory the policy has not
// accepted (or has denied) does not get the policy; with require_policy it
// is refused, naming the advisory. Advisory IDs that are not in Intel's
// format never become selectors.
func TestAdvisoryNotAcceptedByPolicy(t *testing.T) {
	const accept = `accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]`
	swh := pcs.Params{TCBStatus: "SWHardeningNeeded", AdvisoryIDs: []string{"INTEL-SA-00837", "INTEL-SA-00960"}}
	policy := func(body string) string {
		return "require_policy = true\npolicy \"hardened\" {\n  tee = [\"sim\"]\n  " + body + "\n}"
	}
	runCollateralCases(t, []collateralCase{
		{
			name:   "every advisory accepted",
			params: swh, tdx: accept,
			top:       policy(`allowed_advisory_ids = ["INTEL-SA-00837", "INTEL-SA-00960"]`),
			selectors: []string{"sim:policy:hardened", "sim:tcb_status:SWHardeningNeeded", "sim:advisory:INTEL-SA-00837", "sim:advisory:INTEL-SA-00960"},
		},
		{
			name:   "advisory outside the allow-list",
			params: swh, tdx: accept,
			top:  policy(`allowed_advisory_ids = ["INTEL-SA-00837"]`),
			want: reject(codes.PermissionDenied, "policy", `policy "hardened": allowed_advisory_ids: advisory INTEL-SA-00960 of the node's TCB level is not allowed`),
		},
		{
			name:   "denied advisory",
			params: swh, tdx: accept,
			top:  policy(`denied_advisory_ids = ["INTEL-SA-00960"]`),
			want: reject(codes.PermissionDenied, "policy", `policy "hardened": denied_advisory_ids: advisory INTEL-SA-00960 of the node's TCB level is denied`),
		},
		{
			name:   "no advisory allowed, UpToDate node",
			params: pcs.Params{}, tdx: accept,
			top:       policy(`allowed_advisory_ids = []`),
			selectors: []string{"sim:policy:hardened"},
			absent:    []string{"sim:advisory:" + pcs.DefaultAdvisoryID},
		},
		{
			name:   "advisory ID shaped to inject a selector",
			params: pcs.Params{TCBStatus: "SWHardeningNeeded", AdvisoryIDs: []string{"INTEL-SA-00837:policy:hardened"}}, tdx: accept,
			want: reject(codes.PermissionDenied, "tcb_status", "advisoryIDs[0]", "is not an Intel advisory ID"),
		},
		{
			name:   "advisory ID in lower case",
			params: pcs.Params{TCBStatus: "SWHardeningNeeded", AdvisoryIDs: []string{strings.ToLower("INTEL-SA-00837")}}, tdx: accept,
			want: reject(codes.PermissionDenied, "tcb_status", "is not an Intel advisory ID"),
		},
	})
}
