package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
)

// Transaction ids of a player's commands.
const (
	txnPlayConnect = 1 + iota
	txnPlayCreateStream
	txnPlayDeleteStream
)

// playerBufferMs is the buffer length a player announces, as Flash and
// ffmpeg do (3 s).
const playerBufferMs = 3000

// player plays one stream and counts what arrives.
type player struct {
	r   *runner
	rep *PlayerReport
	c   *rtmpConn

	setup
	playing   bool
	playSent  time.Time
	sawConfig bool // a video sequence header arrived
	ended     bool // the server said the stream stopped
	stream    int
	gaps      gapSeries
}

// startPlayers launches the players of stream i once its publisher is live,
// so that they test fan-out rather than waiting for a publisher.
func (r *runner) startPlayers(i int) {
	if i >= r.cfg.playerStreams {
		return
	}
	for j := range r.cfg.players {
		k := i*r.cfg.players + j
		r.wg.Go(func() {
			if r.waitJoin() {
				r.runPlayer(k)
			}
		})
	}
}

func (r *runner) runPlayer(k int) {
	rep := &r.players[k]
	p := &player{r: r, rep: rep, stream: k / r.cfg.players}
	err := p.run()
	rep.finish(err)
	if err != nil && r.cfg.verbose {
		r.logf("player %d of %s: %v", k%r.cfg.players, rep.Key, err)
	}
}

func (p *player) run() error {
	r := p.r
	start := time.Now()
	c, err := dial(r.hard, r.cfg.playAddr, start.Add(r.cfg.setupTimeout), playerReadBuf)
	if err != nil {
		return err
	}
	defer c.Close()
	p.c = c
	defer func() { p.rep.Bytes = c.r.BytesRead() }()
	defer context.AfterFunc(r.hard, func() { _ = c.nc.SetDeadline(time.Now()) })()
	c.onCommand = p.onCommand
	c.onMessage = p.onMessage

	if err := c.connect(r.cfg.playApp, r.cfg.playTCURL, "LNX 9,0,124,2 (rtmpload)", false); err != nil {
		return err
	}
	if err := c.until(func() bool { return p.connected }); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := c.command(0, "createStream", float64(txnPlayCreateStream), nil); err != nil {
		return err
	}
	if err := c.until(func() bool { return p.created }); err != nil {
		return fmt.Errorf("createStream: %w", err)
	}
	p.playSent = time.Now()
	p.rep.PlayAfterTriggerMs = r.msAfterTrigger(p.playSent)
	// Start -1000: live only, as Flash and librtmp ask for a live stream.
	if err := c.command(p.msid, "play", 0.0, nil, p.rep.Key, -1000.0); err != nil {
		return err
	}
	if err := c.setBufferLength(p.msid, playerBufferMs); err != nil {
		return err
	}
	if err := c.until(func() bool { return p.playing }); err != nil {
		return fmt.Errorf("play: %w", err)
	}
	p.rep.Started = true
	if err := clearDeadline(c, r.hard); err != nil {
		return err
	}

	for {
		err := c.readOnce()
		stopping := r.stop.Err() != nil
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && stopping:
			// The hard stop: the server never said the stream ended.
			return nil
		case errors.Is(err, io.EOF):
			return errors.New("server closed the connection")
		default:
			return err
		}
		if p.ended && stopping {
			p.rep.StopSeen = true
			if err := c.command(0, "deleteStream", float64(txnPlayDeleteStream), nil, float64(p.msid)); err != nil {
				return err
			}
			if err := c.drain(); err != nil {
				return fmt.Errorf("closing: %w", err)
			}
			return nil
		}
	}
}

func (p *player) onCommand(cmd *command) error {
	if p.playing {
		p.rep.Messages++
	}
	if ok, err := p.reply(cmd, txnPlayConnect, txnPlayCreateStream); ok {
		return err
	}
	switch cmd.name {
	case "onStatus":
		code, level, desc := cmd.info()
		switch {
		case code == "NetStream.Play.Start":
			p.playing = true
		case code == "NetStream.Play.Stop", code == "NetStream.Play.UnpublishNotify":
			p.ended = true
		case code == "NetStream.Play.PublishNotify":
			p.ended = false
		case level == "error" && !p.playing:
			return &RefusedError{Command: "play", Code: code, Desc: desc}
		case level == "error":
			return fmt.Errorf("server status %s (%s)", code, desc)
		}
	}
	return nil
}

func (p *player) onMessage(m *chunk.Message) error {
	if !p.playing {
		return nil
	}
	rep := p.rep
	rep.Messages++
	switch m.TypeID {
	case chunk.TypeVideo:
		rep.VideoFrames++
		rep.MediaBytes += uint64(len(m.Payload))
		switch {
		case flv.IsSequenceHeader(flv.TagVideo, m.Payload):
			p.sawConfig = true
		case flv.IsVideoKeyframe(m.Payload):
			rep.Keyframes++
			if rep.FirstKeyframeMs < 0 {
				rep.FirstKeyframeMs = msSince(p.playSent)
				rep.ConfigFirst = p.sawConfig
			}
		}
		if !flv.IsSequenceHeader(flv.TagVideo, m.Payload) {
			p.r.delivered(p.stream, p.playSent, m.Timestamp)
		}
		p.arrived()
	case chunk.TypeAudio:
		p.r.delivered(p.stream, p.playSent, m.Timestamp)
		p.arrived()
		rep.AudioFrames++
		rep.MediaBytes += uint64(len(m.Payload))
	case chunk.TypeUserControl:
		if len(m.Payload) >= 2 && binary.BigEndian.Uint16(m.Payload) == ucStreamEOF {
			p.ended = true
		}
	}
	return nil
}

// arrived notes a media message for the gap series (-gaps).
func (p *player) arrived() {
	if !p.r.cfg.gaps {
		return
	}
	p.gaps.add(time.Now())
	p.rep.GapsFromUnixS, p.rep.GapsMs = p.gaps.from, p.gaps.ms
}

// maxGapSeconds bounds a gap series: a day of seconds, 344 KiB.
const maxGapSeconds = 86400

// gapSeries keeps, for every wall-clock second, the longest silence
// between two arrivals of which the later fell in that second. Seconds
// of the wall clock rather than of the run, so that a script can line
// them up with what it timed (an upgrade's start and end).
type gapSeries struct {
	last time.Time
	from int64
	ms   []uint32
}

func (g *gapSeries) add(now time.Time) {
	last := g.last
	g.last = now
	if last.IsZero() {
		return
	}
	sec := now.Unix()
	if g.ms == nil {
		g.from = sec
	}
	k := sec - g.from
	if k < 0 || k >= maxGapSeconds {
		return // the wall clock stepped back, or a run of more than a day
	}
	for int64(len(g.ms)) <= k {
		g.ms = append(g.ms, 0)
	}
	// Rounded up: a gap of 0.4 ms is not "no gap".
	d := uint32((now.Sub(last) + time.Millisecond - 1) / time.Millisecond)
	g.ms[k] = max(g.ms[k], d)
}
