package main

// mediad as PID 1 of a container.
//
// A live upgrade ends with the old process exiting (DESIGN.md §4). When that
// process is PID 1 of a PID namespace, its exit ends the namespace, and the
// kernel kills the new process with it: the container dies at its first
// upgrade. So when mediad finds itself PID 1 it does not serve; it becomes a
// tiny init that
//
//   - starts the real mediad as its child, from the same path with the same
//     arguments, marked with MEDIAD_INIT=off so that it serves;
//   - forwards SIGTERM, SIGINT and SIGHUP to the process that serves now:
//     after an upgrade that is a process it did not start, named by the PID
//     file (the user's --pidfile, or a private one it passes to the child);
//   - reaps every process that ends in the namespace: each old process of
//     an upgrade is re-parented to PID 1 when its parent exits, and so is
//     each new one;
//   - exits, with the serving process's exit status, once no process is
//     left, never when an old one exits after handing over.
//
// MEDIAD_INIT=on makes mediad do this whatever its PID (under a parent that
// does not reap, say); MEDIAD_INIT=off never (when a real init, such as
// tini or docker --init, runs as PID 1).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// initEnv chooses whether mediad runs as init: "auto" (or unset) when it is
// PID 1, "on" always, "off" never.
const initEnv = "MEDIAD_INIT"

// initWanted decides from the value of initEnv and this process's PID.
func initWanted(mode string, pid int) (bool, error) {
	switch strings.ToLower(mode) {
	case "", "auto":
		return pid == 1, nil
	case "on", "1", "true":
		return true, nil
	case "off", "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%s=%q: want auto, on or off", initEnv, mode)
}

// maybeInit runs mediad as init when that is wanted, and says whether it
// did; the status is then the process's exit status.
func maybeInit(args []string, o options, log zerolog.Logger) (int, bool) {
	want, err := initWanted(os.Getenv(initEnv), os.Getpid())
	if err != nil {
		log.Error().Err(err).Msg("mediad init")
		return 2, true
	}
	if !want {
		return 0, false
	}
	return runInit(args, o.pidfile, log), true
}

// runInit is the init: it starts mediad with args, forwards signals to
// whichever process serves, reaps every child, and returns the exit status
// of the last serving process once no child is left.
func runInit(args []string, pidfile string, log zerolog.Logger) int {
	log = log.With().Str("role", "init").Logger()
	// SIGCHLD before the child starts, so that no exit goes unseen.
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGCHLD)
	defer signal.Stop(sig)

	if pidfile == "" {
		dir, err := os.MkdirTemp("", "mediad-init-")
		if err != nil {
			log.Error().Err(err).Msg("mediad init needs --pidfile or a writable temporary directory to follow upgrades")
			return 1
		}
		defer os.RemoveAll(dir)
		pidfile = filepath.Join(dir, "mediad.pid")
		// First, so that it cannot follow a "--" and count as an argument.
		args = append([]string{"--pidfile", pidfile}, args...)
	} else if err := os.Remove(pidfile); err != nil && !errors.Is(err, os.ErrNotExist) {
		// One left by an earlier run could name a process of this fresh
		// namespace that does not serve.
		log.Warn().Err(err).Str("pidfile", pidfile).Msg("cannot remove a stale PID file")
	}

	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(withoutEnv(os.Environ(), initEnv), initEnv+"=off")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A process group of its own: a terminal's ^C reaches this process only,
	// and is forwarded once, to the serving process alone, never to a new
	// process still taking over or an old one draining.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Error().Err(err).Msg("mediad init: starting mediad")
		return 1
	}
	t := tracker{pidfile: pidfile, serving: cmd.Process.Pid, status: -1}
	// Every child is reaped by wait4(-1) below, never through cmd.
	_ = cmd.Process.Release()
	log.Info().Int("child", t.serving).Str("pidfile", pidfile).Msg("mediad init started mediad")

	for s := range sig {
		t.refresh()
		if s != syscall.SIGCHLD {
			t.forward(s.(syscall.Signal), log)
			continue
		}
		if code, done := t.reap(log); done {
			log.Info().Int("status", code).Msg("mediad init exiting: no mediad process left")
			return code
		}
	}
	return 1 // not reached: sig is never closed
}

// tracker follows the serving process through upgrades.
type tracker struct {
	pidfile string
	serving int  // the process that serves, as last established
	named   bool // the PID file has named a process: one is ready
	status  int  // exit status of the serving process, once reaped; -1 before
	last    int  // exit status of the last process reaped
}

// refresh reads the PID file. A new process writes it when it becomes ready,
// before the old one lets go; the serving process removes it as it stops,
// so a missing file leaves the last one named.
func (t *tracker) refresh() {
	pid, err := readPID(t.pidfile)
	if err != nil || pid <= 1 || unix.Kill(pid, 0) != nil {
		return
	}
	t.serving, t.named = pid, true
}

// forward passes s on to the serving process. An upgrade asked for before
// any process is ready would find nothing to hand over, and would kill a
// process that has not yet set up its signal handlers: it is dropped.
func (t *tracker) forward(s syscall.Signal, log zerolog.Logger) {
	if s == syscall.SIGHUP && !t.named {
		log.Warn().Str("signal", s.String()).Msg("mediad init: no mediad is ready yet, signal dropped")
		return
	}
	if err := unix.Kill(t.serving, s); err != nil {
		log.Warn().Err(err).Int("to", t.serving).Str("signal", s.String()).Msg("mediad init: forwarding signal")
		return
	}
	log.Info().Int("to", t.serving).Str("signal", s.String()).Msg("mediad init forwarded signal")
}

// reap collects every child that has exited. done is true once no child
// is left; code is then the serving process's exit status, or the last
// one reaped when the serving process was not a child (it ended while its
// predecessor still drained, which reaped it).
func (t *tracker) reap(log zerolog.Logger) (code int, done bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			if t.status >= 0 {
				return t.status, true
			}
			return t.last, true
		case err != nil:
			log.Error().Err(err).Msg("mediad init: wait4")
			return 0, false
		case pid == 0:
			return 0, false
		}
		t.last = exitCode(ws)
		if pid == t.serving {
			t.status = t.last
		}
		log.Info().Int("child", pid).Int("status", t.last).Bool("serving", pid == t.serving).Msg("mediad init reaped a process")
	}
}

// exitCode is a wait status as a shell reports it.
func exitCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 1
}

// withoutEnv drops every setting of name from env.
func withoutEnv(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
