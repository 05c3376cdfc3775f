package handoff

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OpenFDCount counts this process's open descriptors in /proc/self/fd,
// leaving out the one it opens to read that directory.
func OpenFDCount() (int, error) {
	n := 0
	err := eachFD(func(int) { n++ })
	return n, err
}

// eachFD calls fn with every open descriptor of this process except the
// one used for the listing.
func eachFD(fn func(fd int)) error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("handoff: list descriptors: %w", err)
	}
	defer d.Close()
	self := int(d.Fd())
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("handoff: list descriptors: %w", err)
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == self {
			continue
		}
		fn(fd)
	}
	return nil
}

// socketInode returns the inode that names socket fd in /proc.
func socketInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("handoff: fstat socket: %w", err)
	}
	return st.Ino, nil
}

// socketCopies lists this process's descriptors, other than except, that
// refer to the socket with inode ino. readlink of /proc/self/fd/N names a
// socket "socket:[ino]" without touching the file itself, so this never
// blocks on an odd descriptor.
func socketCopies(ino uint64, except int) ([]int, error) {
	var fds []int
	err := eachFD(func(fd int) {
		if fd != except && isCopy(fd, ino) {
			fds = append(fds, fd)
		}
	})
	return fds, err
}

// dropCopies neutralises every other descriptor of this process that refers
// to the socket with inode ino: each is atomically replaced by /dev/null
// (dup3), never closed. The copies belong to someone else (tableflip's
// Fds), who will close them later; closing a number behind its owner's back
// would let that later close hit whatever reused the number.
//
// Callers must own every copy that can be closed concurrently; the copies
// found here are ones nobody closes while the handoff runs.
func dropCopies(ino uint64, except int) error {
	fds, err := socketCopies(ino, except)
	if err != nil {
		return err
	}
	return nullOver(fds)
}

// nullOver replaces each of fds by /dev/null (dropCopies).
func nullOver(fds []int) error {
	if len(fds) == 0 {
		return nil
	}
	null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("handoff: open %s: %w", os.DevNull, err)
	}
	defer unix.Close(null)
	for _, fd := range fds {
		if err := unix.Dup3(null, fd, unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("handoff: replace copy %d of the handoff socket: %w", fd, err)
		}
	}
	return nil
}

// isCopy says whether descriptor fd refers to the socket with inode ino,
// by the name /proc gives it (socketCopies).
func isCopy(fd int, ino uint64) bool {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && target == "socket:["+strconv.FormatUint(ino, 10)+"]"
}

// replaceCopies is dropCopies for copies whose numbers are known: each is
// replaced by /dev/null; a number that no longer names the socket sends it
// back to looking through every descriptor.
func replaceCopies(ino uint64, fds []int) error {
	for _, fd := range fds {
		if !isCopy(fd, ino) {
			return dropCopies(ino, -1)
		}
	}
	return nullOver(fds)
}
