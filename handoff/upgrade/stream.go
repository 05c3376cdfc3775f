package upgrade

import (
	"fmt"
	"sync"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// streamer sends sessions to a new process that takes an open plan as they
// park, while the rest are still parking: the old process's send and the
// new process's rebuild then overlap the park instead of following it,
// which is what every session waits through.
//
// Park calls send on its own goroutines and waits for it, so no send is in
// flight once Park returns, and none while it resumes what it parked on a
// failure: the descriptors a send lends are the sessions' own, valid only
// while they stay parked.
type streamer struct {
	conn    ParentConn
	convert func(state.Envelope, uint32) (state.Envelope, error)
	ver     uint32
	hello   handoff.Hello

	// mu serializes the sends of Park's goroutines (the sessions', the
	// HTTP connections').
	mu sync.Mutex
	// What was sent.
	items, fds, bytes int
	// err is the first failure: nothing is sent after it.
	err error
}

// send migrates items to the version sent and sends them, or fails; after
// a failure every later send fails with it.
func (s *streamer) send(items []handoff.Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.err = s.sendLocked(items)
	return s.err
}

func (s *streamer) sendLocked(items []handoff.Item) error {
	batch, n, size, err := migrateItems(s.convert, items, s.ver)
	if err != nil {
		return err
	}
	// The bound checked before the park covers what it exports, unless a
	// session arrived in between: the running count is checked too.
	if err := handoff.CheckFDBudget(s.hello, s.fds+n); err != nil {
		return err
	}
	if err := s.conn.SendItems(batch); err != nil {
		return &sendError{err}
	}
	s.items += len(batch)
	s.fds += n
	s.bytes += size
	return nil
}

// migrateItems is items in state version ver, their descriptors alongside,
// with how many descriptors and envelope bytes they carry.
func migrateItems(convert func(state.Envelope, uint32) (state.Envelope, error), items []handoff.Item, ver uint32) (out []handoff.Item, fds, bytes int, err error) {
	out = make([]handoff.Item, len(items), len(items)+1)
	for i, it := range items {
		env, err := convert(it.Envelope, ver)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("migrate %s to v%d: %w", it.Envelope.Kind, ver, err)
		}
		out[i] = handoff.Item{Envelope: env, Borrowed: it.Borrowed, Files: it.Files}
		fds += it.NumFDs()
		bytes += len(env.Payload)
	}
	return out, fds, bytes, nil
}

// sent is what went, and the first failure.
func (s *streamer) sent() (items, fds, bytes int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items, s.fds, s.bytes, s.err
}

// sendError is a failure of the socket, which the attempt names with what
// it knows of the child.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }
