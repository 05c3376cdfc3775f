package main

import (
	"fmt"
	"net"
	"os"

	"github.com/rs/zerolog"
)

// notifyReady tells systemd (Type=notify) that this process serves. A failed
// notification is logged, not fatal: the listeners are already serving, and
// a supervisor that misses it times the start out on its own.
func notifyReady(log zerolog.Logger) {
	if err := sdNotify("READY=1"); err != nil {
		log.Warn().Err(err).Msg("notifying the service manager")
	}
}

// sdNotify sends state (e.g. "READY=1") to the service manager that started
// this process, when there is one: systemd's Type=notify waits for it before
// it calls a start done. Outside systemd ($NOTIFY_SOCKET unset) it does
// nothing, so the same call serves every way mediad is run.
//
// After an upgrade the new process sends it too: it is harmless when systemd
// is not waiting (the unit is already active), and it keeps any supervisor
// that does wait for each new main process satisfied.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// A leading '@' names a socket in the abstract namespace; Go spells
	// those with the same '@' and turns it into the leading NUL itself.
	if path[0] != '@' && path[0] != '/' {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET %q is neither absolute nor abstract", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: dial %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: send %q to %s: %w", state, path, err)
	}
	return nil
}
