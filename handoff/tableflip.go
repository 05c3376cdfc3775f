package handoff

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FileName is the name under which the child's end of the handoff socket
// travels in tableflip's Fds.
const FileName = "mediad-handoff"

// ErrNoHandoff reports a process that inherited no handoff socket: a first
// start, or a parent that offered none.
var ErrNoHandoff = errors.New("handoff: no handoff socket inherited")

// FileAdder is the part of *tableflip.Fds the old process uses.
type FileAdder interface {
	AddFile(name string, f *os.File) error
}

// FileGetter is the part of *tableflip.Fds the new process uses.
type FileGetter interface {
	File(name string) (*os.File, error)
}

// Offer prepares one upgrade attempt in the old process: it creates the
// socketpair and registers the child's end with fds (an *tableflip.Fds), to
// be inherited by the process that the next Upgrade starts. Call it before
// Upgrade, and Close the returned Conn when the attempt ends, whatever its
// outcome.
//
// tableflip's AddFile keeps a dup of the child end in Fds until an upgrade
// succeeds; on a failed attempt it would stay there (and go to the next
// child). Offer closes its own copy at once; ReadHello and Close replace
// tableflip's by /dev/null, so the old process holds no reference to the
// child end once the child has spoken, or once the attempt is over.
func Offer(fds FileAdder) (*Conn, error) {
	c, childEnd, err := NewPair()
	if err != nil {
		return nil, err
	}
	// tableflip's dup takes the lowest free number, which a dup of our own
	// finds first. Knowing it spares ChildGone a look through every
	// descriptor of the process: 20,000 of them at 10,000 streams, which
	// kept the hello from the upgrade for 0.3 s on a busy machine.
	lowest, lerr := unix.FcntlInt(childEnd.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if lerr == nil {
		_ = unix.Close(lowest)
	}
	err = fds.AddFile(FileName, childEnd)
	_ = childEnd.Close()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("handoff: offer socket to the new process: %w", err)
	}
	// Another descriptor opened meanwhile may have taken that number; then
	// ChildGone looks through them all, as for a pair made by NewPair.
	if lerr == nil && isCopy(lowest, c.childIno) {
		c.copies = []int{lowest}
	}
	return c, nil
}

// Accept takes the handoff socket in the new process from fds (an
// *tableflip.Fds). It returns ErrNoHandoff when there is none. tableflip
// keeps the inherited descriptor in Fds for the life of the process;
// FromFile replaces that copy by /dev/null.
func Accept(fds FileGetter) (*Conn, error) {
	f, err := fds.File(FileName)
	if err != nil {
		return nil, fmt.Errorf("handoff: inherited socket: %w", err)
	}
	if f == nil {
		return nil, ErrNoHandoff
	}
	return FromFile(f)
}
