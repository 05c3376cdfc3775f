// Package handoff moves state envelopes and their file descriptors from the
// running mediad process (the parent, old binary) to its replacement (the
// child, new binary) during a live upgrade. It knows nothing of RTMP: an
// Item is a state.Envelope plus the files that belong to it.
//
// # Transport
//
// For each upgrade attempt the parent creates a socketpair(AF_UNIX,
// SOCK_SEQPACKET, SOCK_CLOEXEC) and hands one end to the child it spawns
// (Offer registers it with tableflip's Fds under FileName; the child takes
// it with Accept). Nothing else can connect to it: there is no address. A
// SEQPACKET socket keeps message boundaries, ordering and reliability, and
// reports the peer's exit as end of stream (ErrPeerClosed).
//
// Descriptors travel as SCM_RIGHTS; the receiver gets its own copies,
// close-on-exec from the start (recvmsg with MSG_CMSG_CLOEXEC). The sender
// keeps its copies open until it commits, so that it can resume every
// session itself if the upgrade fails.
//
// # Frames
//
// Every message is one frame: a 12-byte header, then a msgpack body.
//
//	offset  size  field
//	0       4     magic "MDHO"
//	4       1     protocol version (ProtocolVersion, 1)
//	5       1     message type
//	6       2     descriptors attached (big-endian, at most MaxFDsPerFrame)
//	8       4     body length (big-endian, at most MaxFrameSize)
//
// A packet holds at most MaxPacket (64 KiB) bytes. The first packet carries
// the header, the start of the body and all the frame's descriptors; the
// rest of the body follows in as many packets as it needs, with no header
// and no descriptors. The receiver checks the header before it allocates,
// grows the body only as bytes arrive, and closes every descriptor that a
// malformed frame brought (wrong count, descriptors on a continuation
// packet, truncated control message, unknown type).
//
// Bodies are msgpack maps with string keys; a receiver skips keys it does
// not know, so later builds can add fields. The magic and version byte never
// move: a peer speaking another protocol version is told apart at its first
// frame.
//
// # Conversation
//
//	child                         parent
//	Hello{Build, ReadsMin, ReadsMax, PID, NoFileLimit, OpenFDs, OpenPlan} →
//	                              ← Plan{Version, Items, FDs, Open} | Refuse{Reason}
//	                              ← Batch{bases} + fds ... (v8, open plan, before the park)
//	                              ← Batch{Items[{Envelope, NFiles}]} + fds ...
//	                              ← End{Items, FDs}
//	Prepared{Items} | Reject{Reason} →
//	                              ← Commit | Abort{Reason}
//
// The child fills its Hello with LocalHello, which fails rather than
// announce a descriptor limit or count it could not read; the child then
// sends a Reject in its place, and the parent names the reason. The parent
// answers Hello with ChooseVersion and CheckFDBudget, and refuses before a
// single session parks when the child cannot read any version the parent
// can write, or could not take the descriptors: that check uses an upper
// bound of what the park will export.
//
// A child whose Hello says OpenPlan takes an open Plan (OpenPlanFor),
// sent before the park: its totals are bounds (the descriptors the child
// can take), and the parent sends each session as it parks, while the
// others are still parking, and the child rebuilds it at once. From state
// version 8 the batches start before the park: every RTMP publisher's and
// player's base (its static part, with the connection's descriptor) goes
// while the sessions still run, the child builds each session around its
// connection, and the park then exports only the tails, which carry no
// connection. A base is an item like any other, counted in End and in
// Prepared, whether a tail used it or not. End brings
// the exact totals, and the parent stops before a batch would exceed the
// child's descriptor budget. A child that does not say OpenPlan (a build
// before it) gets a closed Plan, sent after the park, whose totals are
// exact, and an End without totals; the parent checks the budget again
// with the exact count first, for a session that arrived in between (that
// late refusal resumes the parked sessions). Either way the child refuses
// a stream that strays from the plan. Batches hold at most MaxFDsPerFrame
// descriptors and about 8 MiB each; a batch's items own its descriptors in
// order. The parent may Abort at any point before Commit; the child may
// Reject at any point, then closes the socket.
//
// # Upgrade order with tableflip
//
// Package handoff/upgrade runs this sequence on both sides, with its
// deadlines and rollback; what follows is what it relies on.
//
// tableflip's Upgrade in the parent returns once the child calls Ready, and
// after it returns the parent's Upgrader is spent: it can never upgrade
// again and its PID file names the child. So Ready must come after the
// commit, and the child must resume nothing before Ready succeeds:
//
//	parent                                  child
//	c, _ := handoff.Offer(upg.Fds)
//	go upg.Upgrade() → result               (starts)
//	                                        initialise fully (config, dirs, admin)
//	                                        c, _ := handoff.Accept(upg.Fds)
//	                                        h, err := LocalHello(...)
//	                                        c.SendHello(h) (err: c.SendReject)
//	h := c.ReadHello(deadline)
//	ChooseVersion, CheckFDBudget(bound)
//	c.SendPlan(OpenPlanFor(v, h))           c.ReadPlan
//	c.SendItems(bases) (v8)                 c.ReadBatches: build each base
//	park sessions, c.SendItems as each      c.ReadBatches: rebuild each
//	  group parks; c.SendEnd                  batch as it arrives
//	                                        decode, migrate, rebuild; c.SendPrepared
//	c.WaitPrepared(deadline); c.Commit
//	                                        c.WaitCommit → true; upg.Ready()
//	result == nil: close copies, exit       resume sessions
//	result != nil: resume own sessions
//
// If the child dies between Commit and Ready, Upgrade fails and the parent
// resumes its sessions, which the child never touched. tableflip kills a
// child that is not Ready within Options.UpgradeTimeout, which must
// therefore cover the whole handoff.
//
// Descriptor copies. tableflip's Fds.AddFile dups the child end into
// Fds.used and offers no way to remove it; a successful Upgrade closes it,
// a failed one leaves it there (a later AddFile of the same name drops it
// for the garbage collector to close). While the parent holds that copy it
// cannot see the child's exit as end of stream. Offer closes its own copy;
// ReadHello, once the child holds its end, and Close replace every other
// copy in the process by /dev/null with dup3 (never close: the number stays
// owned by tableflip, which closes /dev/null later). Before Hello the
// parent learns of the child's death from Upgrade's result and must Close
// the Conn. In the child, Fds.File returns a dup and Fds keeps the
// inherited descriptor for the life of the process; FromFile replaces that
// copy by /dev/null the same way.
//
// # systemd
//
// A unit whose reload is the upgrade, with the main PID following the new
// process through the PID file that tableflip writes in Ready (flag names
// are cmd/mediad's; the file must be the one passed as tableflip's
// Options.PIDFile):
//
//	[Service]
//	ExecStart=/usr/local/bin/mediad --pidfile /run/mediad/mediad.pid
//	ExecReload=/usr/local/bin/mediad upgrade --pidfile /run/mediad/mediad.pid
//	PIDFile=/run/mediad/mediad.pid
//	RuntimeDirectory=mediad
//	LimitNOFILE=1048576
//
// The new process replaces the PID file (write and rename) in Ready, before
// the old process learns of the success and exits; when the main PID exits,
// systemd reads the PID file again and adopts the new process instead of
// treating the service as stopped. ExecReload should wait for the verdict
// (mediad upgrade) rather than only send SIGHUP, so that systemd rereads
// the file after it changed, and a failed upgrade fails the reload. Both
// processes hold every handed-over connection for a moment: LimitNOFILE
// must cover that, and the upgrade is refused before anything parks when
// the new process could not take them (CheckFDBudget).
//
// # Fault injection
//
// Built with the faultinject tag, Fault acts on MEDIAD_FAULT=point=action
// (crash, hang, reject, pause) at the points listed in FaultPoints; the
// child side of the protocol calls them itself, and package handoff/upgrade
// calls FaultRestore and FaultAfterCommit in the new process and
// FaultOldBeforeCommit in the old one. ArmChild sets MEDIAD_FAULT for the
// child of one upgrade. Without the tag Fault compiles to nothing.
package handoff
