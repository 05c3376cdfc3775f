//go:build faultinject

package upgrade

import (
	"strings"
	"testing"

	"github.com/mediad/mediad/handoff"
)

// A failure in the old process after the child prepared, before Commit,
// rolls back like any other: the child is told to give up and every session
// carries on here.
func TestRollbackAtOldBeforeCommit(t *testing.T) {
	t.Setenv(handoff.FaultEnv, handoff.FaultOldBeforeCommit+"=reject")
	h := newHarness(newFakeChild("", ""), nil)
	v := h.parent.Upgrade("")
	if v.Outcome != Failed || !strings.Contains(v.Error, "injected fault at "+handoff.FaultOldBeforeCommit) {
		t.Errorf("verdict %+v", v)
	}
	checkSessions(t, h, true, false)
	told := h.child.told()
	if len(told) != 2 || !strings.HasPrefix(told[1], "abort: ") {
		t.Errorf("the child was told %q, want the plan then an abort", told)
	}
}
