package main

import (
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
)

// pollInterval is how often a publisher looks at what the server sent.
// Servers send publishers next to nothing once publishing (pings, acks), and
// a ping answered within a quarter second is answered in time.
const pollInterval = 250 * time.Millisecond

// maxBatchIov bounds one vectored write; the kernel takes at most 1024
// slices per writev anyway.
const maxBatchIov = 512

// Transaction ids of a publisher's commands, in the order FMLE and OBS
// send them.
const (
	txnConnect = 1 + iota
	txnReleaseStream
	txnFCPublish
	txnCreateStream
	txnPublish
	txnFCUnpublish
	txnDeleteStream
)

// publisher replays the clip on one connection.
type publisher struct {
	r   *runner
	rep *PublisherReport
	c   *rtmpConn

	setup
	published bool
	index     int // the stream's

	hdr []byte // chunk headers of the batch being built
	crc uint32
}

func (r *runner) runPublisher(i int) {
	rep := &r.pubs[i]
	p := &publisher{r: r, rep: rep, index: i}
	err := p.run(i)
	rep.finish(err)
	if err != nil && r.cfg.verbose {
		r.logf("%s: %v", rep.Key, err)
	}
}

func (p *publisher) run(i int) error {
	r := p.r
	start := time.Now()
	// Dialling is bounded by the setup timeout and the hard stop only: a
	// stream that was starting when the run ended finishes its setup and
	// unpublishes at once rather than counting as failed.
	c, err := dial(r.hard, r.cfg.addr, start.Add(r.cfg.setupTimeout), publisherReadBuf)
	if err != nil {
		return err
	}
	defer c.Close()
	p.c = c
	defer func() {
		p.rep.Bytes, p.rep.Messages = c.bytesOut, c.msgsOut
		p.rep.CRC32 = fmt.Sprintf("%08x", p.crc)
	}()
	defer context.AfterFunc(r.hard, func() { _ = c.nc.SetDeadline(time.Now()) })()
	c.onCommand = p.onCommand
	c.onMessage = ignoreMessage

	key := p.rep.Key
	if err := c.setChunkSize(r.cfg.chunkSize); err != nil {
		return err
	}
	if err := c.connect(r.cfg.app, r.cfg.tcURL, "FMLE/3.0 (compatible; rtmpload)", true); err != nil {
		return err
	}
	if err := c.until(func() bool { return p.connected }); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := c.command(0, "releaseStream", float64(txnReleaseStream), nil, key); err != nil {
		return err
	}
	if err := c.command(0, "FCPublish", float64(txnFCPublish), nil, key); err != nil {
		return err
	}
	if err := c.command(0, "createStream", float64(txnCreateStream), nil); err != nil {
		return err
	}
	if err := c.until(func() bool { return p.created }); err != nil {
		return fmt.Errorf("createStream: %w", err)
	}
	if err := c.command(p.msid, "publish", float64(txnPublish), nil, key, "live"); err != nil {
		return err
	}
	if err := c.until(func() bool { return p.published }); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p.rep.Started = true
	p.rep.SetupMs = msSince(start)
	if err := clearDeadline(c, r.hard); err != nil {
		return err
	}
	if r.stop.Err() != nil {
		return p.unpublish()
	}
	r.startPlayers(i)

	t0 := time.Now()
	err = p.stream()
	p.rep.ActiveS = time.Since(t0).Seconds()
	if err != nil {
		return err
	}
	return p.unpublish()
}

// clearDeadline lifts the setup deadline, unless the hard stop has already
// set one that must stay.
func clearDeadline(c *rtmpConn, hard context.Context) error {
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear deadline: %w", err)
	}
	// The hard stop's callback runs after its context is done: if that is
	// not yet visible here, the callback has not run and will set its
	// deadline after ours.
	if hard.Err() != nil {
		_ = c.nc.SetDeadline(time.Now())
	}
	return nil
}

func ignoreMessage(*chunk.Message) error { return nil }

func (p *publisher) onCommand(cmd *command) error {
	if ok, err := p.reply(cmd, txnConnect, txnCreateStream); ok {
		return err
	}
	switch cmd.name {
	// An _error to releaseStream or FCPublish is no refusal: they are
	// courtesy calls some servers do not know.
	case "onStatus":
		code, level, desc := cmd.info()
		p.rep.Status = code
		switch {
		case code == "NetStream.Publish.Start":
			p.published = true
		case level == "error" && !p.published:
			return &RefusedError{Command: "publish", Code: code, Desc: desc}
		case level == "error":
			return fmt.Errorf("server status %s (%s)", code, desc)
		}
	}
	return nil
}

// unpublish ends the broadcast as an encoder does and waits for the server
// to close, so that its recording is final when the run returns.
func (p *publisher) unpublish() error {
	c := p.c
	if err := c.command(0, "FCUnpublish", float64(txnFCUnpublish), nil, p.rep.Key); err != nil {
		return err
	}
	if err := c.command(0, "deleteStream", float64(txnDeleteStream), nil, float64(p.msid)); err != nil {
		return err
	}
	if err := c.drain(); err != nil {
		return fmt.Errorf("closing: %w", err)
	}
	return nil
}

// stream sends metadata and sequence headers, then the clip's body in a loop
// at real time until the run stops. Each wake-up sends every tag that is due
// in one vectored write whose payload slices are the shared clip data, so
// the steady state allocates nothing.
func (p *publisher) stream() error {
	r := p.r
	c := p.c
	clip := r.clip
	p.hdr = make([]byte, 0, 4<<10)
	c.iov = make(net.Buffers, 0, 64)

	if err := c.send(csidData, chunk.TypeDataAMF0, p.msid, 0, r.dataFrame); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for i := range clip.Headers {
		p.add(&clip.Headers[i], 0)
	}
	if err := p.flush(); err != nil {
		return err
	}

	body := clip.Body
	done := r.stop.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	t0 := time.Now()
	r.pubStart[p.index].Store(t0.UnixNano())
	nextPoll := pollInterval
	var base uint64 // media time of the current pass's start, ms
	j := 0
	for {
		select {
		case <-done:
			return nil
		default:
		}
		el := time.Since(t0)
		if el >= nextPoll {
			if err := c.poll(); err != nil {
				return err
			}
			nextPoll = el + pollInterval
		}
		var due time.Duration
		for {
			t := &body[j]
			mt := base + uint64(t.TS)
			due = time.Duration(mt) * time.Millisecond
			if due > el {
				break
			}
			if len(c.iov) == 0 {
				p.rep.MaxLagMs = max(p.rep.MaxLagMs, float64(el-due)/1e6)
			}
			if !p.add(t, uint32(mt)) {
				if err := p.flush(); err != nil {
					return err
				}
				// An empty batch grows its header space to fit.
				p.add(t, uint32(mt))
			}
			if len(c.iov) >= maxBatchIov {
				if err := p.flush(); err != nil {
					return err
				}
			}
			if j++; j == len(body) {
				j = 0
				base += uint64(clip.Loop)
				p.rep.Loops++
			}
		}
		if err := p.flush(); err != nil {
			return err
		}
		if wait := due - time.Since(t0); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-done:
				return nil
			}
		}
	}
}

// add frames one tag into the pending batch. It returns false, adding
// nothing, when the header buffer cannot take it; flush and retry then.
func (p *publisher) add(t *Tag, ts uint32) bool {
	w := p.c.w
	need := w.HeaderSpace(len(t.Data))
	if cap(p.hdr)-len(p.hdr) < need {
		if len(p.hdr) > 0 {
			return false
		}
		p.hdr = make([]byte, 0, need)
	}
	csid := uint32(csidAudio)
	if t.Type == flv.TagVideo {
		csid = csidVideo
	}
	p.c.iov, p.hdr = w.Buffers(p.c.iov, p.hdr, &chunk.Message{CSID: csid, Timestamp: ts, TypeID: t.Type, StreamID: p.msid, Payload: t.Data})

	p.c.msgsOut++
	rep := p.rep
	rep.MediaMessages++
	rep.MediaBytes += uint64(len(t.Data))
	rep.LastTS = ts
	if t.Type == flv.TagVideo {
		rep.VideoFrames++
		if flv.IsVideoKeyframe(t.Data) {
			rep.Keyframes++
		}
	} else {
		rep.AudioFrames++
	}
	p.crc = crc32.Update(p.crc, crcTable, t.Data)
	return true
}

// flush writes the pending batch.
func (p *publisher) flush() error {
	c := p.c
	if len(c.iov) == 0 {
		return nil
	}
	keep := c.iov[:0]
	// WriteTo consumes the slice it is called on, setting each slice it
	// wrote to nil; the backing array is reused for the next batch.
	n, err := c.iov.WriteTo(c.nc)
	c.bytesOut += uint64(n)
	c.iov = keep
	p.hdr = p.hdr[:0]
	if err != nil {
		return fmt.Errorf("write media: %w", err)
	}
	return nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / 1e6 }
