package handoff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cloudflare/tableflip"
)

// The real thing: a process using tableflip upgrades to a copy of itself
// three times: to a child that dies before hello, to one that refuses
// before hello, then to one that takes the handoff. The test runs that
// process (role "tableflip"), and tableflip starts its children from the
// same binary with the same environment.
func TestTableflip(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=tableflip", envDir+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The successful child shares the output pipe and exits after the
	// parent; Wait returns once both are gone.
	cmd.WaitDelay = childDeadline
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v; output:\n%s", err, &out)
	}
	if !bytes.Contains(out.Bytes(), []byte("child: exit 0\n")) {
		t.Fatalf("the new process did not finish cleanly; output:\n%s", &out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rec"))
	if err != nil || string(b) != "parent\nchild\n" {
		t.Fatalf("recording holds %q, %v; output:\n%s", b, err, &out)
	}
	t.Logf("output:\n%s", &out)
}

func runTableflip() int {
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: childDeadline})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tableflip:", err)
		return exitFailed
	}
	if upg.HasParent() {
		return tableflipChild(upg)
	}
	if err := tableflipParent(upg); err != nil {
		fmt.Fprintln(os.Stderr, "parent:", err)
		return exitFailed
	}
	return exitOK
}

// tableflipParent checks where copies of the child end live at each step.
func tableflipParent(upg *tableflip.Upgrader) error {
	if err := upg.Ready(); err != nil {
		return err
	}
	copies := func(c *Conn) []int {
		fds, err := socketCopies(c.childIno, -1)
		if err != nil {
			panic(err)
		}
		return fds
	}

	// Attempt 1: the child exits before hello.
	os.Setenv(envScenario, "exit-before-hello")
	c, err := Offer(upg.Fds)
	if err != nil {
		return err
	}
	kept := copies(c)
	if len(kept) != 1 {
		return fmt.Errorf("after Offer: copies of the child end %v, want tableflip's one", kept)
	}
	fmt.Fprintf(os.Stderr, "parent: after Offer, tableflip's Fds holds the child end as fd %d\n", kept[0])
	if err := upg.Upgrade(); err == nil {
		return errors.New("upgrade to a child that exits succeeded")
	} else {
		fmt.Fprintln(os.Stderr, "parent: failed attempt:", err)
	}
	if left := copies(c); len(left) != 1 || left[0] != kept[0] {
		return fmt.Errorf("after the failed attempt: copies %v, want tableflip's %d still there", left, kept[0])
	}
	if err := c.Close(); err != nil {
		return err
	}
	if left := copies(c); len(left) != 0 {
		return fmt.Errorf("after Close: copies %v remain", left)
	}
	if target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(kept[0])); err != nil || target != os.DevNull {
		return fmt.Errorf("tableflip's fd %d names %q, %v; want %s", kept[0], target, err, os.DevNull)
	}

	// Attempt 2: the child says why it cannot take over and exits, and the
	// parent reads only after tableflip has reported the exit, as a loaded
	// parent may: ChildGone must keep the reason readable and then let the
	// read end instead of waiting for the deadline.
	os.Setenv(envScenario, "reject-before-hello")
	c, err = Offer(upg.Fds)
	if err != nil {
		return err
	}
	if err := upg.Upgrade(); err == nil {
		return errors.New("upgrade to a child that refuses succeeded")
	}
	if err := c.ChildGone(); err != nil {
		return err
	}
	if left := copies(c); len(left) != 0 {
		return fmt.Errorf("after ChildGone: copies %v remain", left)
	}
	start := time.Now()
	_, err = c.ReadHello(deadline())
	var re *RejectError
	if !errors.As(err, &re) || re.Reason != "bad config" {
		return fmt.Errorf("read after the child exited: %v, want its reject %q", err, "bad config")
	}
	if _, err := c.ReadHello(deadline()); !errors.Is(err, ErrPeerClosed) {
		return fmt.Errorf("second read after the child exited: %v (after %v), want end of stream", err, time.Since(start))
	}
	fmt.Fprintln(os.Stderr, "parent: reject read after the child exited:", re.Reason)
	if err := c.Close(); err != nil {
		return err
	}

	// Attempt 3: the handoff goes through.
	os.Setenv(envScenario, "ok")
	c, err = Offer(upg.Fds)
	if err != nil {
		return err
	}
	defer c.Close()
	result := make(chan error, 1)
	go func() { result <- upg.Upgrade() }()
	h, err := c.ReadHello(deadline())
	if err != nil {
		return err
	}
	if left := copies(c); len(left) != 0 {
		return fmt.Errorf("after hello: copies %v remain", left)
	}
	rec, err := os.Create(filepath.Join(os.Getenv(envDir), "rec"))
	if err != nil {
		return err
	}
	defer rec.Close()
	if _, err := rec.WriteString("parent\n"); err != nil {
		return err
	}
	ino, err := fileInode(rec)
	if err != nil {
		return err
	}
	it := Item{Files: []*os.File{rec}}
	it.Envelope.Kind, it.Envelope.Payload = kindFile, []byte(strconv.FormatUint(ino, 10))
	if err := CheckFDBudget(h, 1); err != nil {
		return err
	}
	steps := []func() error{
		func() error { return c.SendPlan(Plan{Version: 3, Items: 1, FDs: 1}) },
		func() error { return c.SendItems([]Item{it}) },
		c.SendEnd,
		func() error { _, err := c.WaitPrepared(deadline()); return err },
		c.Commit,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	select {
	case err := <-result:
		if err != nil {
			return fmt.Errorf("upgrade after commit: %w", err)
		}
	case <-time.After(childDeadline):
		return errors.New("no readiness from the child")
	}
	if left := copies(c); len(left) != 0 {
		return fmt.Errorf("after the upgrade: copies %v remain", left)
	}
	fmt.Fprintln(os.Stderr, "parent: upgrade committed, no copy of the child end left")
	return nil
}

func tableflipChild(upg *tableflip.Upgrader) int {
	scenario := os.Getenv(envScenario)
	if scenario == "exit-before-hello" {
		return exitScripted
	}
	c, err := Accept(upg.Fds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
	if scenario == "reject-before-hello" {
		_ = c.SendReject("bad config")
		c.Close()
		return exitFailed
	}
	defer c.Close()
	fd, err := fileFD(c.f)
	if err == nil {
		var ino uint64
		if ino, err = socketInode(fd); err == nil {
			var others []int
			if others, err = socketCopies(ino, fd); err == nil && len(others) > 0 {
				err = fmt.Errorf("copies %v of the handoff socket besides the Conn's %d", others, fd)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		_ = c.SendReject(err.Error())
		return exitFailed
	}
	code := childFlow(c, scenario, upg.Ready)
	if code == 0 {
		// Stay until the parent has seen Ready and exited, as a real new
		// process would: exiting at once races tableflip's ready signal
		// against the child's exit status in the parent.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = upg.WaitForParent(ctx)
		cancel()
	}
	fmt.Fprintf(os.Stderr, "child: exit %d\n", code)
	return code
}
