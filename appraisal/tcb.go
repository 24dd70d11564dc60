package appraisal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-tdx-guest/pcs"

	"github.com/ccnp-spire/ccnp-spire/conf"
	"github.com/ccnp-spire/ccnp-spire/tdxquote"
)

// tcbEvaluation is the outcome of matching a quote against verified TCB
// info and QE identity.
type tcbEvaluation struct {
	status   string // converged status, what AcceptedTCBStatuses is checked against
	platform string // the matching TCB level of the platform (SGX + TDX components)
	module   string // the TDX module identity's level, when evaluated
	qe       string // the QE identity's level
	// advisories of the matching platform, TDX module and QE levels,
	// sorted, each once, each in Intel's format (conf.ValidAdvisoryID).
	advisories []string
}

// addAdvisories adds a matching level's advisory IDs, checking each.
func (t *tcbEvaluation) addAdvisories(what string, ids []string) error {
	for i, id := range ids {
		// The IDs end up in selectors and policy decisions: anything but
		// Intel's format is refused rather than passed on or dropped (a
		// dropped ID would slip past a deny list).
		if !conf.ValidAdvisoryID(id) {
			return fmt.Errorf("%s: advisoryIDs[%d] %q is not an Intel advisory ID (%s)", what, i, truncate(id), conf.AdvisoryIDPattern)
		}
		if !slices.Contains(t.advisories, id) {
			t.advisories = append(t.advisories, id)
		}
	}
	slices.Sort(t.advisories)
	return nil
}

// truncate keeps collateral strings short in messages.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

func (t *tcbEvaluation) describe() string {
	s := "platform " + t.platform
	if t.module != "" {
		s += ", TDX module " + t.module
	}
	return s + ", QE " + t.qe
}

// evaluateTCB implements Intel's TDX TCB status evaluation (as described in
// Intel's PCS documentation and go-tdx-guest's testdata README, and as the
// library does for UpToDate):
//
//  1. TCB info's tdxModule: MRSIGNERSEAM must equal its mrsigner and
//     SEAMATTRIBUTES & attributesMask its attributes.
//  2. The platform level is the first TCB level (in the order of
//     sortedLevels, highest first) whose 16 SGX component SVNs and PCESVN are <= the PCK
//     certificate's and whose 16 TDX component SVNs are <= TEE_TCB_SVN. When
//     TEE_TCB_SVN[1] (the TDX module's major version) is non-zero, indices 0
//     and 1 are the module's own SVNs and are skipped: step 3 evaluates them.
//  3. If TEE_TCB_SVN[1] > 0, the tdxModuleIdentities entry "TDX_<hex of
//     TEE_TCB_SVN[1]>" must exist, match MRSIGNERSEAM and the attributes as
//     in 1, and its first level (highest isvsvn first) with isvsvn <=
//     TEE_TCB_SVN[0] gives the module status.
//
// Both steps read TEE_TCB_SVN, also in TDX 1.5 bodies: TEE_TCB_SVN2 (the
// module after a TD-preserving update) only feeds Intel's "TD relaunch
// advised" refinement of an OutOfDate result, which this code does not
// make, so such a TD is reported OutOfDate, the stricter of the two.
//  4. QE identity: MRSIGNER, ISVPRODID equal; MISCSELECT and ATTRIBUTES
//     under their masks equal; first level with isvsvn <= the QE's ISVSVN
//     gives the QE status.
//  5. Module and QE statuses are converged into the platform status the
//     way Intel's quote verification library does: an OutOfDate module or
//     QE makes the result OutOfDate (OutOfDateConfigurationNeeded when the
//     platform needs configuration), a Revoked one makes it Revoked.
//
// The advisory IDs of the three matching levels are collected; each must
// have Intel's format.
//
// Where go-tdx-guest returns the module level's status on its own when a
// module identity applies, this takes the worse of platform and module, so
// an out-of-date platform is not reported UpToDate because its module is.
func evaluateTCB(q *tdxquote.Quote, ti *pcs.TcbInfo, qi *pcs.EnclaveIdentity) (*tcbEvaluation, error) {
	b := &q.Body
	if err := matchModule("TCB info tdxModule", ti.TdxModule.Mrsigner.Bytes, ti.TdxModule.Attributes.Bytes, ti.TdxModule.AttributesMask.Bytes, b); err != nil {
		return nil, err
	}
	ev := &tcbEvaluation{}
	svn := b.TEETCBSVN
	start := 0
	if svn[1] > 0 {
		start = 2
	}
	var level *pcs.TcbLevel
	for _, l := range sortedLevels(ti.TcbLevels) {
		if componentsAtLeast(q.PCK.SGXTCBComponents[:], l.Tcb.SgxTcbcomponents, 0) &&
			q.PCK.PCESVN >= l.Tcb.Pcesvn &&
			componentsAtLeast(svn[:], l.Tcb.TdxTcbcomponents, start) {
			level = l
			break
		}
	}
	if level == nil {
		return nil, fmt.Errorf("no TCB level in TCB info matches the platform (SGX components %v, PCESVN %d, TEE_TCB_SVN %x): TCB not supported", q.PCK.SGXTCBComponents, q.PCK.PCESVN, svn)
	}
	ev.platform = string(level.TcbStatus)
	ev.status = ev.platform
	if err := ev.addAdvisories("TCB info level "+ev.platform, level.AdvisoryIDs); err != nil {
		return nil, err
	}

	if svn[1] > 0 {
		id := fmt.Sprintf("TDX_%02x", svn[1])
		var mod *pcs.TdxModuleIdentity
		for i := range ti.TdxModuleIdentities {
			if strings.EqualFold(ti.TdxModuleIdentities[i].ID, id) {
				mod = &ti.TdxModuleIdentities[i]
				break
			}
		}
		if mod == nil {
			return nil, fmt.Errorf("TCB info has no TDX module identity %s for TEE_TCB_SVN[1] = %d", id, svn[1])
		}
		if err := matchModule("TDX module identity "+mod.ID, mod.Mrsigner.Bytes, mod.Attributes.Bytes, mod.AttributesMask.Bytes, b); err != nil {
			return nil, err
		}
		var ml *pcs.TcbLevel
		for _, l := range sortedByISVSVN(mod.TcbLevels) {
			if uint32(svn[0]) >= l.Tcb.Isvsvn {
				ml = l
				break
			}
		}
		if ml == nil {
			return nil, fmt.Errorf("TDX module identity %s has no TCB level for module SVN %d", mod.ID, svn[0])
		}
		ev.module = string(ml.TcbStatus)
		ev.status = converge(ev.status, ev.module)
		if err := ev.addAdvisories("TDX module identity "+mod.ID+" level "+ev.module, ml.AdvisoryIDs); err != nil {
			return nil, err
		}
	}

	ql, err := evaluateQE(q, qi)
	if err != nil {
		return nil, err
	}
	ev.qe = string(ql.TcbStatus)
	ev.status = converge(ev.status, ev.qe)
	if err := ev.addAdvisories("QE identity level "+ev.qe, ql.AdvisoryIDs); err != nil {
		return nil, err
	}
	return ev, nil
}

// sortedLevels orders TCB levels highest first as Intel's quote
// verification library does (it keeps them in a set ordered by SGX
// component SVNs, then PCESVN, then TDX component SVNs, each compared
// lexicographically), rather than trusting the JSON order: the first match
// is then the highest level the platform reaches whatever order the
// document lists them in. It sorts pointers, never the levels themselves,
// which may be shared with other appraisals through a Cache.
func sortedLevels(levels []pcs.TcbLevel) []*pcs.TcbLevel {
	out := make([]*pcs.TcbLevel, len(levels))
	for i := range levels {
		out[i] = &levels[i]
	}
	slices.SortStableFunc(out, func(a, b *pcs.TcbLevel) int {
		if c := compareComponents(b.Tcb.SgxTcbcomponents, a.Tcb.SgxTcbcomponents); c != 0 {
			return c
		}
		if a.Tcb.Pcesvn != b.Tcb.Pcesvn {
			if a.Tcb.Pcesvn > b.Tcb.Pcesvn {
				return -1
			}
			return 1
		}
		return compareComponents(b.Tcb.TdxTcbcomponents, a.Tcb.TdxTcbcomponents)
	})
	return out
}

func compareComponents(a, b []pcs.TcbComponent) int {
	for i := range min(len(a), len(b)) {
		if a[i].Svn != b[i].Svn {
			if a[i].Svn < b[i].Svn {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// sortedByISVSVN orders TDX module (or QE) identity levels highest ISVSVN
// first, for the same reason as sortedLevels.
func sortedByISVSVN(levels []pcs.TcbLevel) []*pcs.TcbLevel {
	out := make([]*pcs.TcbLevel, len(levels))
	for i := range levels {
		out[i] = &levels[i]
	}
	slices.SortStableFunc(out, func(a, b *pcs.TcbLevel) int {
		switch {
		case a.Tcb.Isvsvn > b.Tcb.Isvsvn:
			return -1
		case a.Tcb.Isvsvn < b.Tcb.Isvsvn:
			return 1
		}
		return 0
	})
	return out
}

func matchModule(what string, mrsigner, attrs, mask []byte, b *tdxquote.Body) error {
	if !bytes.Equal(mrsigner, b.MRSignerSEAM[:]) {
		return fmt.Errorf("%s: MRSIGNERSEAM %x is not %x", what, b.MRSignerSEAM, mrsigner)
	}
	if len(mask) != len(b.SEAMAttributes) || len(attrs) != len(b.SEAMAttributes) {
		return fmt.Errorf("%s: attributes and mask must be %d bytes, are %d and %d", what, len(b.SEAMAttributes), len(attrs), len(mask))
	}
	for i := range mask {
		if b.SEAMAttributes[i]&mask[i] != attrs[i] {
			return fmt.Errorf("%s: SEAMATTRIBUTES %x under mask %x are not %x", what, b.SEAMAttributes, mask, attrs)
		}
	}
	return nil
}

// componentsAtLeast reports whether have[i] >= want[i].Svn for i >= start;
// a level with a different component count never matches.
func componentsAtLeast(have []byte, want []pcs.TcbComponent, start int) bool {
	if len(have) != len(want) {
		return false
	}
	for i := start; i < len(have); i++ {
		if have[i] < want[i].Svn {
			return false
		}
	}
	return true
}

func evaluateQE(q *tdxquote.Quote, qi *pcs.EnclaveIdentity) (*pcs.TcbLevel, error) {
	r := &q.QEReport
	if !bytes.Equal(qi.Mrsigner.Bytes, r.MRSigner[:]) {
		return nil, fmt.Errorf("QE identity: QE MRSIGNER %x is not %x", r.MRSigner, qi.Mrsigner.Bytes)
	}
	if r.ISVProdID != qi.IsvProdID {
		return nil, fmt.Errorf("QE identity: QE ISVPRODID %d is not %d", r.ISVProdID, qi.IsvProdID)
	}
	if len(qi.Miscselect.Bytes) != 4 || len(qi.MiscselectMask.Bytes) != 4 {
		return nil, fmt.Errorf("QE identity: miscselect and mask must be 4 bytes, are %d and %d", len(qi.Miscselect.Bytes), len(qi.MiscselectMask.Bytes))
	}
	mask := binary.LittleEndian.Uint32(qi.MiscselectMask.Bytes)
	if r.MiscSelect&mask != binary.LittleEndian.Uint32(qi.Miscselect.Bytes) {
		return nil, fmt.Errorf("QE identity: QE MISCSELECT %08x under mask %08x is not %x", r.MiscSelect, mask, qi.Miscselect.Bytes)
	}
	if len(qi.Attributes.Bytes) != len(r.Attributes) || len(qi.AttributesMask.Bytes) != len(r.Attributes) {
		return nil, fmt.Errorf("QE identity: attributes and mask must be %d bytes", len(r.Attributes))
	}
	for i := range r.Attributes {
		if r.Attributes[i]&qi.AttributesMask.Bytes[i] != qi.Attributes.Bytes[i] {
			return nil, fmt.Errorf("QE identity: QE ATTRIBUTES %x under mask %x are not %x", r.Attributes, qi.AttributesMask.Bytes, qi.Attributes.Bytes)
		}
	}
	for _, l := range sortedByISVSVN(qi.TcbLevels) {
		if l.Tcb.Isvsvn <= uint32(r.ISVSVN) {
			return l, nil
		}
	}
	return nil, fmt.Errorf("QE identity has no TCB level for QE ISVSVN %d", r.ISVSVN)
}

// converge folds a component's status (TDX module or QE) into the platform
// status.
func converge(platform, component string) string {
	switch pcs.TcbComponentStatus(component) {
	case pcs.TcbComponentStatusRevoked:
		return component
	case pcs.TcbComponentStatusOutOfDate:
		switch pcs.TcbComponentStatus(platform) {
		case pcs.TcbComponentStatusUpToDate, pcs.TcbComponentStatusSwHardeningNeeded:
			return string(pcs.TcbComponentStatusOutOfDate)
		case pcs.TcbComponentStatusConfigurationNeeded, pcs.TcbComponentStatusConfigurationAndSWHardeningNeeded:
			return string(pcs.TcbComponentStatusOutOfDateConfigurationNeeded)
		}
	}
	return platform
}
