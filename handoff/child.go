package handoff

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/mediad/mediad/state"
)

// SendHello introduces the new process; fill h with LocalHello.
func (c *Conn) SendHello(h Hello) error {
	if err := Fault(FaultBeforeHello); err != nil {
		return err
	}
	if err := c.send(h); err != nil {
		return err
	}
	c.hello = &h
	return Fault(FaultAfterHello)
}

// ReadPlan waits until deadline (zero: none) for the old process's answer
// to Hello. A Refuse is a *RefusedError. A plan whose version lies outside
// the range announced in Hello is an error.
func (c *Conn) ReadPlan(deadline time.Time) (Plan, error) {
	m, _, err := c.recv(deadline)
	if err != nil {
		return Plan{}, fmt.Errorf("handoff: read plan: %w", err)
	}
	switch m := m.(type) {
	case Plan:
		if c.hello != nil && (m.Version < c.hello.ReadsMin || m.Version > c.hello.ReadsMax) {
			return Plan{}, fmt.Errorf("handoff: plan sends state v%d, this build reads v%d..v%d", m.Version, c.hello.ReadsMin, c.hello.ReadsMax)
		}
		if m.Open && (c.hello == nil || !c.hello.OpenPlan) {
			return Plan{}, errors.New("handoff: an open plan, which this process did not say it takes")
		}
		c.got = &m
		return m, Fault(FaultAfterPlan)
	case refuseMsg:
		return Plan{}, &RefusedError{Reason: m.reason}
	case abortMsg:
		return Plan{}, &AbortedError{Reason: m.reason}
	}
	return Plan{}, unexpected("Plan or Refuse", m)
}

// ReadItems receives batches until End, before deadline (zero: none), and
// returns the items with their files, which are close-on-exec and owned by
// the caller. Envelope payloads alias the received frames' buffers. The
// stream must match the plan exactly. On any error, including an Abort
// (*AbortedError), every descriptor received so far is closed.
func (c *Conn) ReadItems(deadline time.Time) ([]Item, error) {
	var items []Item
	err := c.ReadBatches(deadline, func(batch []Item) error {
		items = append(items, batch...)
		return nil
	}, nil)
	if err != nil {
		CloseItems(items)
		return nil, err
	}
	return items, nil
}

// ReadBatches receives batches until End, before deadline (zero: none),
// and hands each batch's items to each as it arrives, so that the caller
// can rebuild them while the rest are on their way. The files of the items
// handed to each are close-on-exec and each's to own from the call on,
// whatever follows; envelope payloads alias the received frames' buffers.
// The stream must match the plan exactly: a batch that goes past it is
// closed unseen, and an End short of it is an error. An open plan's
// totals are bounds, and its End says what was sent. An error from each
// ends the read with it. On any error, including an Abort
// (*AbortedError), what was already handed over stays the caller's.
//
// At a Sync, built (if not nil) returns once every item handed to each so
// far is built, and the old process is told so (Synced); an error from it
// ends the read.
func (c *Conn) ReadBatches(deadline time.Time, each func([]Item) error, built func() error) error {
	if c.got == nil {
		return errors.New("handoff: ReadItems before ReadPlan")
	}
	plan := *c.got
	nitems, nfds := 0, 0
	parkSeen := false
	for {
		m, fds, err := c.recv(deadline)
		if err != nil {
			return fmt.Errorf("handoff: read items: %w", err)
		}
		switch m := m.(type) {
		case batchMsg:
			if nitems+len(m.items) > plan.Items || nfds+len(fds) > plan.FDs {
				closeFDs(fds)
				return fmt.Errorf("handoff: batch brings %d items and %d descriptors past the plan of %d and %d",
					nitems+len(m.items), nfds+len(fds), plan.Items, plan.FDs)
			}
			batch := appendItems(make([]Item, 0, len(m.items)), m.items, fds)
			nitems += len(batch)
			nfds += len(fds)
			// The fault point is in the middle of the park: bases went
			// ahead of it.
			if !parkSeen && !AllBases(batch) {
				parkSeen = true
				if err := Fault(FaultMidItems); err != nil {
					CloseItems(batch)
					return err
				}
			}
			if err := each(batch); err != nil {
				return err
			}
		case endMsg:
			want, wantFDs := plan.Items, plan.FDs
			if plan.Open {
				if !m.open {
					return errors.New("handoff: end of an open plan without its totals")
				}
				want, wantFDs = m.items, m.fds
			}
			if nitems != want || nfds != wantFDs {
				return fmt.Errorf("handoff: end after %d items and %d descriptors, the plan promised %d and %d",
					nitems, nfds, want, wantFDs)
			}
			return nil
		case syncMsg:
			if m.items != nitems {
				return fmt.Errorf("handoff: sync after %d items, %d came", m.items, nitems)
			}
			if built != nil {
				if err := built(); err != nil {
					return err
				}
			}
			if err := c.send(syncedMsg{nitems}); err != nil {
				return fmt.Errorf("handoff: synced: %w", err)
			}
		case abortMsg:
			return &AbortedError{Reason: m.reason}
		default:
			return unexpected("Batch, Sync or End", m)
		}
	}
}

// AllBases says batch holds only bases (state version 8), which go ahead
// of the park.
func AllBases(batch []Item) bool {
	for _, it := range batch {
		if it.Envelope.Kind != state.KindBase {
			return false
		}
	}
	return true
}

// appendItems gives each item its descriptors, in order; decodeBody has
// checked that the items account for exactly len(fds).
func appendItems(items []Item, batch []wireItem, fds []int) []Item {
	for _, w := range batch {
		var files []*os.File
		if w.nfiles > 0 {
			files = make([]*os.File, w.nfiles)
			for k := range files {
				files[k] = os.NewFile(uintptr(fds[k]), "handoff:"+string(w.env.Kind)+":"+strconv.Itoa(fds[k]))
			}
			fds = fds[w.nfiles:]
		}
		items = append(items, Item{Envelope: w.env, Files: files})
	}
	return items
}

// SendPrepared reports that n items are decoded and rebuilt, ready to
// resume on Commit.
func (c *Conn) SendPrepared(n int) error {
	if err := Fault(FaultBeforePrepared); err != nil {
		return err
	}
	return c.send(preparedMsg{items: n})
}

// SendReject tells the old process to roll back; reason ends up in its
// log. The caller should then close the Conn and every file received.
func (c *Conn) SendReject(reason string) error { return c.send(rejectMsg{reason}) }

// SendReport sends the stall figures of a committed upgrade.
func (c *Conn) SendReport(r Report) error { return c.send(r) }

// WaitCommit waits until deadline (zero: none) for the old process's
// verdict after Prepared. It returns true on Commit: the sessions are now
// this process's; under tableflip call Upgrader.Ready before resuming any of
// them (see the package documentation). It returns false with an
// *AbortedError on Abort, and false with another error if the old process
// went away (ErrPeerClosed) or the deadline passed; in every false case the
// received files must be closed untouched.
func (c *Conn) WaitCommit(deadline time.Time) (bool, error) {
	if err := Fault(FaultAfterPrepared); err != nil {
		return false, err
	}
	m, _, err := c.recv(deadline)
	if err != nil {
		return false, fmt.Errorf("handoff: wait for commit: %w", err)
	}
	switch m := m.(type) {
	case commitMsg:
		return true, nil
	case abortMsg:
		return false, &AbortedError{Reason: m.reason}
	}
	return false, unexpected("Commit or Abort", m)
}
