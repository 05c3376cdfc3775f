package handoff

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/state"
)

// The test binary plays the other process too: TestMain reads the role
// from the environment. The child gets its end of the socket as fd 3.
const (
	envRole     = "HANDOFF_TEST_ROLE"
	envScenario = "HANDOFF_TEST_SCENARIO"
	envDir      = "HANDOFF_TEST_DIR"
)

// Child exit statuses the tests tell apart.
const (
	exitOK       = 0
	exitFailed   = 1 // a check failed; the reason went to stderr and, if possible, a Reject
	exitScripted = 2 // the scenario said to exit here
	exitCrash    = 3 // fault injection's crash
	exitRefused  = 5
	exitAborted  = 6
	exitLeak     = 7 // descriptors left open
)

// Item kinds of the test: what the child checks and does with each.
const (
	kindTCP  state.Kind = "tcp"  // payload: socket inode; after commit, echo a line
	kindFile state.Kind = "file" // payload: file inode; after commit, append "child\n"
	kindPipe state.Kind = "pipe" // payload: pipe inode
	kindBlob state.Kind = "blob" // payload: sha256 of the rest, then the rest
)

func TestMain(m *testing.M) {
	switch role := os.Getenv(envRole); role {
	case "":
		os.Exit(m.Run())
	case "child":
		os.Exit(runChild())
	case "tableflip":
		os.Exit(runTableflip())
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		os.Exit(100)
	}
}

const childDeadline = 60 * time.Second // a bound against hangs, not a threshold

func deadline() time.Time { return time.Now().Add(childDeadline) }

// runChild is the new process of the process tests.
func runChild() int {
	scenario := os.Getenv(envScenario)
	c, err := FromFile(os.NewFile(3, "handoff"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
	return childFlow(c, scenario, nil)
}

// childFlow runs the new process's side of the protocol as the scenario
// says. ready, if set, is called on Commit before any item is used.
func childFlow(c *Conn, scenario string, ready func() error) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		_ = c.SendReject(err.Error())
		return exitFailed
	}
	if scenario == "exit-before-hello" {
		return exitScripted
	}
	if scenario == "silent" {
		// Never say hello; leave when the parent gives up.
		_, _, err := c.recv(time.Time{})
		fmt.Fprintln(os.Stderr, "child: silent:", err)
		return exitScripted
	}
	h, err := LocalHello("test-child", 1, 3)
	if err != nil {
		return fail(err)
	}
	if err := c.SendHello(h); err != nil {
		return fail(err)
	}
	plan, err := c.ReadPlan(deadline())
	var refused *RefusedError
	if errors.As(err, &refused) {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitRefused
	}
	if err != nil {
		return fail(err)
	}
	switch scenario {
	case "exit-after-plan":
		return exitScripted
	case "reject-early":
		// Refuse the plan without reading a single batch.
		_ = c.SendReject("plan refused")
		return exitFailed
	case "exit-mid-items":
		// Take one batch, then die holding it.
		if _, _, err := c.recv(deadline()); err != nil {
			return fail(err)
		}
		return exitScripted
	}
	items, err := c.ReadItems(deadline())
	var aborted *AbortedError
	if errors.As(err, &aborted) {
		return leakCheck(h, exitAborted)
	}
	if err != nil {
		return fail(err)
	}
	if err := checkItems(items); err != nil {
		CloseItems(items)
		return fail(err)
	}
	if len(items) != plan.Items {
		CloseItems(items)
		return fail(fmt.Errorf("%d items, plan said %d", len(items), plan.Items))
	}
	if scenario == "reject" {
		CloseItems(items)
		_ = c.SendReject("scenario says no")
		return leakCheck(h, exitFailed)
	}
	if err := c.SendPrepared(len(items)); err != nil {
		CloseItems(items)
		return fail(err)
	}
	ok, err := c.WaitCommit(deadline())
	if !ok {
		CloseItems(items)
		if errors.As(err, &aborted) {
			return leakCheck(h, exitAborted)
		}
		return fail(err)
	}
	if ready != nil {
		n0, err := OpenFDCount()
		if err == nil {
			err = ready()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: ready:", err)
			return exitFailed
		}
		n1, err := OpenFDCount()
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return exitFailed
		}
		h.OpenFDs += n1 - n0 // tableflip's Ready closes its notification pipe
	}
	err = useItems(items)
	CloseItems(items)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
	return leakCheck(h, exitOK)
}

// leakCheck compares the open descriptors with those counted at hello,
// after every received one was closed.
func leakCheck(h Hello, code int) int {
	n, err := OpenFDCount()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
	if n != h.OpenFDs {
		fmt.Fprintf(os.Stderr, "child: %d descriptors open, %d at hello\n", n, h.OpenFDs)
		return exitLeak
	}
	return code
}

// checkItems verifies, before Prepared, that every descriptor is
// close-on-exec and is the one its envelope names, and every blob intact.
func checkItems(items []Item) error {
	for i, it := range items {
		for _, f := range it.Files {
			fd, err := fileFD(f)
			if err != nil {
				return err
			}
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if err != nil {
				return fmt.Errorf("item %d: F_GETFD: %w", i, err)
			}
			if flags&unix.FD_CLOEXEC == 0 {
				return fmt.Errorf("item %d: received descriptor %d is not close-on-exec", i, fd)
			}
		}
		switch it.Envelope.Kind {
		case kindTCP, kindFile, kindPipe:
			if len(it.Files) != 1 {
				return fmt.Errorf("item %d (%s): %d files", i, it.Envelope.Kind, len(it.Files))
			}
			ino, err := fileInode(it.Files[0])
			if err != nil {
				return err
			}
			if want := string(it.Envelope.Payload); strconv.FormatUint(ino, 10) != want {
				return fmt.Errorf("item %d (%s): descriptor is inode %d, envelope names %s", i, it.Envelope.Kind, ino, want)
			}
		case kindBlob:
			p := it.Envelope.Payload
			if len(p) < sha256.Size {
				return fmt.Errorf("item %d: %d-byte blob", i, len(p))
			}
			if sum := sha256.Sum256(p[sha256.Size:]); !bytes.Equal(sum[:], p[:sha256.Size]) {
				return fmt.Errorf("item %d: %d-byte blob corrupted", i, len(p))
			}
		default:
			return fmt.Errorf("item %d: unknown kind %q", i, it.Envelope.Kind)
		}
	}
	return nil
}

// useItems does, after Commit, what the new process would: read and write
// the connections, append to the files.
func useItems(items []Item) error {
	for _, it := range items {
		switch it.Envelope.Kind {
		case kindTCP:
			f := it.Files[0]
			if err := f.SetReadDeadline(deadline()); err != nil {
				return fmt.Errorf("tcp: %w", err)
			}
			buf := make([]byte, 64)
			n, err := f.Read(buf)
			if err != nil {
				return fmt.Errorf("tcp read: %w", err)
			}
			if _, err := f.Write(append([]byte("echo:"), buf[:n]...)); err != nil {
				return fmt.Errorf("tcp write: %w", err)
			}
		case kindFile:
			if _, err := it.Files[0].WriteString("child\n"); err != nil {
				return fmt.Errorf("file: %w", err)
			}
		}
	}
	return nil
}

func fileInode(f *os.File) (uint64, error) {
	fd, err := fileFD(f)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("fstat: %w", err)
	}
	return st.Ino, nil
}

// inodeItem makes an item whose envelope names its one file's inode.
func inodeItem(t testing.TB, kind state.Kind, f *os.File) Item {
	t.Helper()
	ino, err := fileInode(f)
	if err != nil {
		t.Fatal(err)
	}
	return Item{Envelope: state.Envelope{Kind: kind, Version: 3, Payload: []byte(strconv.FormatUint(ino, 10))}, Files: []*os.File{f}}
}

// blobItem makes a checksummed blob of n bytes.
func blobItem(n int) Item {
	rest := make([]byte, n-sha256.Size)
	x := uint32(2463534242)
	for i := range rest {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		rest[i] = byte(x)
	}
	sum := sha256.Sum256(rest)
	return Item{Envelope: state.Envelope{Kind: kindBlob, Version: 3, Payload: append(sum[:], rest...)}}
}

// child is a running child process of a test.
type child struct {
	cmd    *exec.Cmd
	conn   *Conn
	stderr *bytes.Buffer
	done   bool
}

// startChild starts the test binary as the new process, with the socket's
// child end as fd 3, and closes this process's copy of that end.
func startChild(t *testing.T, scenario string, env ...string) *child {
	t.Helper()
	conn, end, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=child", envScenario+"="+scenario)
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = []*os.File{end}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Start()
	end.Close()
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	c := &child{cmd: cmd, conn: conn, stderr: &stderr}
	t.Cleanup(func() {
		conn.Close()
		if !c.done {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return c
}

// wait waits for the child's exit and returns its status.
func (c *child) wait(t *testing.T) int {
	t.Helper()
	err := c.cmd.Wait()
	c.done = true
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return c.cmd.ProcessState.ExitCode()
}

// expectExit waits for the child and checks its status, showing its
// stderr when it differs.
func (c *child) expectExit(t *testing.T, want int) {
	t.Helper()
	if got := c.wait(t); got != want {
		t.Errorf("child exited %d, want %d; stderr:\n%s", got, want, c.stderr)
	}
}

// procFDCount counts the descriptors of process pid.
func procFDCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func openFDs(t testing.TB) int {
	t.Helper()
	n, err := OpenFDCount()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func errorContains(err error, frag string) bool {
	return err != nil && strings.Contains(err.Error(), frag)
}
