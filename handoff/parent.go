package handoff

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

// ReadHello waits for the new process's Hello until deadline (zero: none).
//
// Once the Hello has arrived the child holds its own end of the socket, so
// ReadHello then replaces every copy of the child end left in this process
// (the one tableflip's Fds.AddFile keeps) by /dev/null: from here on the
// child's death shows as ErrPeerClosed. Before the Hello it cannot: run
// tableflip's Upgrade concurrently and Close the Conn if it fails.
func (c *Conn) ReadHello(deadline time.Time) (Hello, error) {
	m, _, err := c.recv(deadline)
	if err != nil {
		return Hello{}, fmt.Errorf("handoff: read hello: %w", err)
	}
	var h Hello
	switch m := m.(type) {
	case Hello:
		h = m
	case rejectMsg: // a child that failed before it could say hello
		return Hello{}, &RejectError{Reason: m.reason}
	default:
		return Hello{}, unexpected("Hello", m)
	}
	if err := c.ChildGone(); err != nil {
		return Hello{}, err
	}
	c.peer = &h
	return h, nil
}

// SendPlan tells the new process that the handoff goes ahead, with the
// state version and the exact totals that SendItems will send, or, in an
// open Plan (OpenPlanFor), their bounds.
func (c *Conn) SendPlan(p Plan) error {
	if c.plan != nil {
		return errors.New("handoff: plan already sent")
	}
	if p.Open && (c.peer == nil || !c.peer.OpenPlan) {
		return errors.New("handoff: an open plan for a new process that did not say it takes one")
	}
	if p.Items < 0 || p.FDs < 0 || p.Items > maxCount || p.FDs > maxCount {
		return fmt.Errorf("handoff: plan of %d items and %d descriptors is out of range", p.Items, p.FDs)
	}
	if err := c.send(p); err != nil {
		// A child that rejected right after Hello has closed its end; its
		// Reject may be waiting to be read.
		return c.peerError(err)
	}
	c.plan = &p
	return nil
}

// SendRefuse turns the new process away after its Hello.
func (c *Conn) SendRefuse(reason string) error { return c.send(refuseMsg{reason}) }

// batchBytes is the body size SendItems aims for: large enough that the
// per-frame cost vanishes, small enough that the receiver's buffers stay
// modest. One larger item still travels alone.
const batchBytes = 8 << 20

// SendItems sends items in Batch frames of at most MaxFDsPerFrame
// descriptors each; the kernel passes the receiver its own copies. It does
// not close the caller's files, which must stay open until it returns.
// Every item is checked against the plan and the limits before anything is
// sent. If the child closed the socket and left a Reject, the error is that
// *RejectError.
func (c *Conn) SendItems(items []Item) error {
	if c.plan == nil {
		return errors.New("handoff: SendItems before SendPlan")
	}
	nfds := 0
	for i, it := range items {
		if it.NumFDs() > MaxFDsPerFrame {
			return fmt.Errorf("handoff: item %d (%s) has %d descriptors, limit %d", i, it.Envelope.Kind, it.NumFDs(), MaxFDsPerFrame)
		}
		if it.Envelope.Kind == "" {
			return fmt.Errorf("handoff: item %d has no kind", i)
		}
		if size := itemSize(it); size > MaxFrameSize-batchItemOverhead {
			return fmt.Errorf("handoff: item %d (%s) is %d bytes, limit %d", i, it.Envelope.Kind, size, MaxFrameSize-batchItemOverhead)
		}
		for j, fd := range it.Borrowed {
			if fd < 0 {
				return fmt.Errorf("handoff: item %d (%s) borrowed descriptor %d is %d", i, it.Envelope.Kind, j, fd)
			}
		}
		for j, f := range it.Files {
			if f == nil {
				return fmt.Errorf("handoff: item %d (%s) file %d is nil", i, it.Envelope.Kind, j)
			}
		}
		nfds += it.NumFDs()
	}
	if c.sentItems+len(items) > c.plan.Items || c.sentFDs+nfds > c.plan.FDs {
		return fmt.Errorf("handoff: sending %d items and %d descriptors would exceed the plan of %d and %d (%d and %d sent)",
			len(items), nfds, c.plan.Items, c.plan.FDs, c.sentItems, c.sentFDs)
	}
	fds := make([]int, 0, MaxFDsPerFrame)
	for i := 0; i < len(items); {
		j, n, size := i, 0, 0
		for j < len(items) {
			f, s := items[j].NumFDs(), itemSize(items[j])
			if j > i && (n+f > MaxFDsPerFrame || size+s > batchBytes) {
				break
			}
			n, size, j = n+f, size+s, j+1
		}
		if err := c.sendBatch(items[i:j], fds[:0]); err != nil {
			return c.peerError(err)
		}
		c.sentItems += j - i
		c.sentFDs += n
		i = j
	}
	return nil
}

func itemSize(it Item) int {
	return len(it.Envelope.Kind) + len(it.Envelope.Payload) + batchItemOverhead
}

// sendBatch sends items as one Batch frame. The envelopes' payloads go to
// the kernel from where the sessions exported them: copying them into one
// buffer first took memory the old process touched for the first time,
// zeroed and faulted in page by page, while every session waited (the
// largest part of the old process's send at 1,000 streams).
func (c *Conn) sendBatch(items []Item, fds []int) error {
	for _, it := range items {
		fds = append(fds, it.Borrowed...)
		for _, f := range it.Files {
			fd, err := fileFD(f)
			if err != nil {
				return fmt.Errorf("handoff: item %s: %w", it.Envelope.Kind, err)
			}
			fds = append(fds, fd)
		}
	}
	c.buf.Reset()
	parts, err := encodeBatchParts(&c.buf, items, c.parts)
	if err != nil {
		return err
	}
	c.parts = parts
	err = writeFrameParts(c, c.hdr[:], typeBatch, parts, fds)
	clear(c.parts)
	// The numbers in fds are only valid while the files are open.
	runtime.KeepAlive(items)
	return err
}

// fileFD returns f's descriptor without f.Fd(), which would switch a
// pollable file (a socket taken from a net.Conn) to blocking mode, and
// with it the connection that shares its open file description.
func fileFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("file %s: %w", f.Name(), err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, fmt.Errorf("file %s: %w", f.Name(), err)
	}
	return fd, nil
}

// peerError improves a send error: a child that rejected the state and
// exited has left its Reject queued behind it.
func (c *Conn) peerError(err error) error {
	if !errors.Is(err, ErrPeerClosed) {
		return err
	}
	c.noWait = true
	m, _, rerr := c.recv(time.Time{})
	c.noWait = false
	if rerr != nil {
		// Nothing pending: the peer just went away.
		return err
	}
	if r, ok := m.(rejectMsg); ok {
		return &RejectError{Reason: r.reason}
	}
	return err
}

// SendEnd closes the stream of batches; the items and descriptors sent must
// match a closed plan. After an open plan it tells the totals sent.
func (c *Conn) SendEnd() error {
	if c.plan == nil {
		return errors.New("handoff: SendEnd before SendPlan")
	}
	end := endMsg{open: c.plan.Open, items: c.sentItems, fds: c.sentFDs}
	if !c.plan.Open && (c.sentItems != c.plan.Items || c.sentFDs != c.plan.FDs) {
		return fmt.Errorf("handoff: %d items and %d descriptors sent, the plan promised %d and %d",
			c.sentItems, c.sentFDs, c.plan.Items, c.plan.FDs)
	}
	if err := c.send(end); err != nil {
		return c.peerError(err)
	}
	return nil
}

// WaitPrepared waits until deadline (zero: none) for the new process to
// report every item prepared, and returns how many it prepared (always the
// number sent). A Reject is a *RejectError; the child's exit is
// ErrPeerClosed; the deadline is os.ErrDeadlineExceeded.
func (c *Conn) WaitPrepared(deadline time.Time) (int, error) {
	m, _, err := c.recv(deadline)
	if err != nil {
		return 0, fmt.Errorf("handoff: wait for prepared: %w", err)
	}
	switch m := m.(type) {
	case preparedMsg:
		if m.items != c.sentItems {
			return 0, fmt.Errorf("handoff: new process prepared %d items, %d were sent", m.items, c.sentItems)
		}
		return m.items, nil
	case rejectMsg:
		return 0, &RejectError{Reason: m.reason}
	}
	return 0, unexpected("Prepared or Reject", m)
}

// Sync asks the new process to finish building every item sent so far and
// waits, until deadline (zero: none), for it to say it has: what was sent
// ahead of the park is then built before anything parks, instead of on
// the cores the park needs. Only after an open Plan, and only to a child
// that reads state version 8 or later (which sent the items it builds). A
// Reject is a *RejectError; the child's exit is ErrPeerClosed.
func (c *Conn) Sync(deadline time.Time) error {
	if c.plan == nil || !c.plan.Open {
		return errors.New("handoff: Sync without an open plan")
	}
	if err := c.send(syncMsg{c.sentItems}); err != nil {
		return c.peerError(err)
	}
	m, _, err := c.recv(deadline)
	if err != nil {
		return fmt.Errorf("handoff: wait for synced: %w", err)
	}
	switch m := m.(type) {
	case syncedMsg:
		if m.items != c.sentItems {
			return fmt.Errorf("handoff: new process built %d items, %d were sent", m.items, c.sentItems)
		}
		return nil
	case rejectMsg:
		return &RejectError{Reason: m.reason}
	}
	return unexpected("Synced or Reject", m)
}

// Commit tells the new process to take over every session.
func (c *Conn) Commit() error { return c.send(commitMsg{}) }

// Abort tells the new process to give up: it must close what it received
// and touch none of it. The old process then resumes its sessions.
func (c *Conn) Abort(reason string) error { return c.send(abortMsg{reason}) }
