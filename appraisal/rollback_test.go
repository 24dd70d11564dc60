package appraisal

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestMinTCBEvaluationDataNumber: collateral from before a TCB recovery
// (a lower tcbEvaluationDataNumber in TCB info or in QE identity) is refused
// as Unavailable, naming the document and the configuration key; a cache
// holding the verified documents does not skip the check.
func TestMinTCBEvaluationDataNumber(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	tests := []struct {
		name             string
		tcbNum, qeNum    int
		min              uint32
		wantParts        []string // nil: accepted
		wantNotMentioned string
	}{
		{name: "no minimum", tcbNum: 16, qeNum: 16},
		{name: "at the minimum", tcbNum: 17, qeNum: 17, min: 17},
		{name: "above the minimum", tcbNum: 19, qeNum: 18, min: 18},
		{name: "both below", tcbNum: 16, qeNum: 16, min: 17, wantParts: []string{"TCB info for FMSPC", "QE identity has tcbEvaluationDataNumber 16", "min_tcb_evaluation_data_number"}},
		{name: "TCB info below", tcbNum: 16, qeNum: 17, min: 17, wantParts: []string{"TCB info for FMSPC " + testFMSPC + " has tcbEvaluationDataNumber 16", "below the minimum 17"}, wantNotMentioned: "QE identity"},
		{name: "QE identity below", tcbNum: 17, qeNum: 16, min: 17, wantParts: []string{"QE identity has tcbEvaluationDataNumber 16", "below the minimum 17"}, wantNotMentioned: "TCB info"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := defaultSpec(p)
			spec.tcbEvalNum, spec.qeEvalNum = tc.tcbNum, tc.qeNum
			cache := NewCache(16)
			opts := TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, spec), CheckRevocations: true, Cache: cache}
			// Warm the cache with the same documents, verified without a
			// minimum: the minimum must hold on every call regardless.
			res, err := TDX(context.Background(), TDXEvidence{Quote: q}, opts)
			if err != nil {
				t.Fatalf("without a minimum: %v", err)
			}
			if int(res.TCBInfoEvaluationDataNumber) != tc.tcbNum || int(res.QEIdentityEvaluationDataNumber) != tc.qeNum {
				t.Errorf("numbers %d/%d, want %d/%d", res.TCBInfoEvaluationDataNumber, res.QEIdentityEvaluationDataNumber, tc.tcbNum, tc.qeNum)
			}
			opts.MinTCBEvaluationDataNumber = tc.min
			res, err = TDX(context.Background(), TDXEvidence{Quote: q}, opts)
			if tc.wantParts == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				c := findCheck(t, res, CheckTCBEvaluation)
				if tc.min == 0 && !c.Skipped || tc.min > 0 && !c.OK {
					t.Errorf("check recorded as %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted collateral %d/%d under minimum %d", tc.tcbNum, tc.qeNum, tc.min)
			}
			wantCheck(t, err, CheckTCBEvaluation, CodeUnavailable, tc.wantParts...)
			if tc.wantNotMentioned != "" && strings.Contains(err.Error(), tc.wantNotMentioned) {
				t.Errorf("message blames %s too: %v", tc.wantNotMentioned, err)
			}
			if res.TCBStatus != "" {
				t.Errorf("TCB status %q evaluated from stale collateral", res.TCBStatus)
			}
			t.Log(err)
		})
	}
}

func TestMinTCBEvaluationNeedsCollateral(t *testing.T) {
	p := newTestPKI(t)
	_, err := TDX(context.Background(), TDXEvidence{Quote: p.mintQuote(t, nil)}, TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), MinTCBEvaluationDataNumber: 17})
	wantCheck(t, err, CheckTCBEvaluation, CodeConfig, "collateral getter")
}

func TestEvaluationNumberOutOfRange(t *testing.T) {
	p := newTestPKI(t)
	for _, spec := range []collateralSpec{defaultSpec(p), defaultSpec(p)} {
		spec.tcbEvalNum = -1
		_, err := TDX(context.Background(), TDXEvidence{Quote: p.mintQuote(t, nil)}, TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, spec)})
		wantCheck(t, err, CheckCollateral, CodeRejected, "tcbEvaluationDataNumber -1")
	}
	spec := defaultSpec(p)
	spec.qeEvalNum = 1 << 33
	_, err := TDX(context.Background(), TDXEvidence{Quote: p.mintQuote(t, nil)}, TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, spec)})
	wantCheck(t, err, CheckCollateral, CodeRejected, "QE identity", "outside")
}

// TestAdvisoryIDs: the advisories of every matching level (platform, TDX
// module, QE) reach the result, sorted and once each; an ID that is not in
// Intel's format is refused, never passed on (it would become a selector)
// nor dropped (it would slip past a deny list).
func TestAdvisoryIDs(t *testing.T) {
	p := newTestPKI(t)
	q := p.mintQuote(t, nil)
	run := func(t *testing.T, f func(*collateralSpec)) (*TDXResult, error) {
		spec := defaultSpec(p)
		spec.platformStatus = "SWHardeningNeeded"
		f(&spec)
		return TDX(context.Background(), TDXEvidence{Quote: q}, TDXOptions{Now: pinnedNow, TrustedRoots: p.rootPool(), Collateral: p.pcs(t, spec),
			AcceptedTCBStatuses: []string{"UpToDate", "SWHardeningNeeded"}})
	}
	res, err := run(t, func(s *collateralSpec) {
		s.platformAdvisories = []string{"INTEL-SA-00960", "INTEL-SA-00837"}
		s.moduleAdvisories = []string{"INTEL-SA-00837", "INTEL-SA-01010"}
		s.qeAdvisories = []string{"INTEL-DOC-10000"}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"INTEL-DOC-10000", "INTEL-SA-00837", "INTEL-SA-00960", "INTEL-SA-01010"}
	if !slices.Equal(res.AdvisoryIDs, want) {
		t.Errorf("advisories %v, want %v", res.AdvisoryIDs, want)
	}
	res, err = run(t, func(s *collateralSpec) { s.platformStatus = "UpToDate" })
	if err != nil || len(res.AdvisoryIDs) != 0 {
		t.Errorf("UpToDate without advisories: %v, %v", res.AdvisoryIDs, err)
	}

	for _, bad := range []struct {
		level string
		set   func(*collateralSpec, []string)
	}{
		{"TCB info level", func(s *collateralSpec, a []string) { s.platformAdvisories = a }},
		{"TDX module identity TDX_01 level", func(s *collateralSpec, a []string) { s.moduleAdvisories = a }},
		{"QE identity level", func(s *collateralSpec, a []string) { s.qeAdvisories = a }},
	} {
		for _, id := range []string{"INTEL-SA-00837:x", "intel-sa-00837", "INTEL-SA-0837", "INTEL-SA-008370", "INTEL-SA-SIM-00001", "", "INTEL-SA-00837\n", strings.Repeat("A", 300)} {
			res, err := run(t, func(s *collateralSpec) { bad.set(s, []string{"INTEL-SA-00001", id}) })
			if err == nil {
				t.Errorf("%s advisory %q accepted: %v", bad.level, id, res.AdvisoryIDs)
				continue
			}
			wantCheck(t, err, CheckTCBStatus, CodeRejected, bad.level, "advisoryIDs[1]", "not an Intel advisory ID")
			if len(err.Error()) > 400 {
				t.Errorf("message of %d bytes quotes the advisory whole", len(err.Error()))
			}
		}
	}
}

func findCheck(t *testing.T, res *TDXResult, name string) Check {
	t.Helper()
	for _, c := range res.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s check recorded: %+v", name, res.Checks)
	return Check{}
}
