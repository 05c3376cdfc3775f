package handoff

import "errors"

// Fault points: places in the handoff where a build with the faultinject
// tag can crash, hang or fail on purpose (see Fault). The child side of the
// protocol calls the first six itself; the new process calls
// FaultAfterCommit and FaultRestore. FaultOldBeforeCommit is the old
// process's: pausing there lets the new one die before Commit is sent.
const (
	FaultBeforeHello    = "before-hello"    // SendHello, before sending
	FaultAfterHello     = "after-hello"     // SendHello, after sending
	FaultAfterPlan      = "after-plan"      // ReadPlan, after a Plan arrived
	FaultMidItems       = "mid-items"       // ReadItems, after the first Batch of the park (not of bases)
	FaultBeforePrepared = "before-prepared" // SendPrepared, before sending
	FaultAfterPrepared  = "after-prepared"  // WaitCommit, before the verdict is read
	FaultAfterCommit    = "after-commit"    // the new process, after Commit, before Ready
	FaultRestore        = "restore"         // the new process's session restore

	FaultOldBeforeCommit = "old-before-commit" // the old process, after Prepared, before Commit
)

// FaultPoints lists every fault point of the new process, in protocol
// order, for tests that go through them all.
var FaultPoints = []string{
	FaultBeforeHello,
	FaultAfterHello,
	FaultAfterPlan,
	FaultMidItems,
	FaultBeforePrepared,
	FaultAfterPrepared,
	FaultAfterCommit,
	FaultRestore,
}

// FaultEnv names the environment variable that arms fault points in a
// faultinject build: MEDIAD_FAULT=point=action[,point=action...], actions
// crash, hang, reject and pause.
const FaultEnv = "MEDIAD_FAULT"

// ErrFault is what an injected "reject" fault returns, wrapped with the
// point's name.
var ErrFault = errors.New("handoff: injected fault")
