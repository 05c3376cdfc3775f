// Package upgrade runs a live upgrade (DESIGN.md §4) on top of package
// handoff: the old process's side (Parent: one attempt at a time, its
// deadline, its rollback and its Verdict) and the new process's side
// (TakeOver, then Child's Report). It knows nothing of RTMP.
//
// What it drives sits behind small interfaces, so that every way an upgrade
// can fail is a test in one process with no child at all:
//
//   - Process: the machinery that starts the new binary and carries the
//     handoff socket (tableflip's Upgrader and handoff.Offer);
//   - ParentConn and ChildConn: the two ends of the handoff socket
//     (*handoff.Conn);
//   - Sessions, Parked and Restorer, Restored: the sessions that move
//     (ingest's Server, Parked and Restored);
//   - Outbox: the webhook notifications that move with them;
//   - Convert: the state migrations (migrate.Convert).
//
// # Rollback policy
//
// Until the new process is Ready, every session is the old process's to
// resume. An attempt therefore fails, and every parked session carries on
// from its own untouched state, when:
//
//   - the binary is missing, or the previous process has not exited;
//   - the new process exits or stops answering before Hello (its Reject,
//     or its exit status, names why);
//   - no state version is common to both, or the new process could not
//     take the descriptors (checked against Sessions.ParkFDs): refused,
//     before anything parks;
//   - sending the sessions' static parts ahead (Sessions.Presend, while
//     they still run), parking, migrating, sending, or the new process's
//     preparing fails,
//     or the deadline passes (Config.Timeout, which must match the
//     Process's own, from the start to Ready);
//   - the new process exits between Commit and Ready;
//   - Stop is called before Commit is sent.
//
// The new process is then told to give up (Abort or Refuse) where it can
// still hear it, and its end is awaited, so that the next attempt starts
// clean. Once the Process reports the child Ready, the sessions are the
// new process's: the old one lets go of them (Parked.Commit), gives its
// verdict without waiting for the stalls (the new process measures, logs
// and keeps them), and exits when its Process says so.
//
// # Ownership
//
// Parent.Upgrade runs an attempt on the caller's goroutine, plus one
// goroutine that waits for the Process's verdict on the child; every way
// out of an attempt joins it. Parent.Stop cancels the attempt in flight
// and waits for it. In the new process, Child.Report runs until the
// readers have read again, a bound passes or its context ends.
package upgrade
