package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
)

// runConfig is a parsed command line.
type runConfig struct {
	url       string
	addr      string // host:port
	app       string
	tcURL     string
	keyPrefix string
	n         int
	players   int // per stream
	// playerStreams: only streams 0 .. playerStreams-1 get players.
	playerStreams int
	// Where players play: -play-url, or the publishers' server.
	playAddr, playApp, playTCURL string
	gaps                         bool // players keep their gap series
	source                       string

	duration     time.Duration
	ramp         time.Duration
	grace        time.Duration // after the stop, before connections are cut
	setupTimeout time.Duration
	chunkSize    uint32
	verbose      bool
	// joinAfter and joinWithin spread the players' joins (join.go); both
	// zero: players join as their publisher goes live.
	joinAfter, joinWithin time.Duration
	// trigger, if not nil, holds every player back until it fires
	// (trigger.go).
	trigger *joinTrigger
	// delaySettle: a player's delivery delays count from this long after
	// its play command (delay.go).
	delaySettle time.Duration
}

// runner holds one run's shared, read-only inputs and its per-connection
// results. Each result slot is written by one connection's goroutine only,
// and read after all of them have ended.
type runner struct {
	cfg       *runConfig
	clip      *Clip
	dataFrame []byte // "@setDataFrame" + clip.Metadata
	log       io.Writer
	logMu     sync.Mutex

	stop context.Context // done at the end of -duration or on a signal
	hard context.Context // done -grace after stop: connections are cut

	wg      sync.WaitGroup
	pubs    []PublisherReport
	players []PlayerReport
	// pubStart is each stream's pacing start, Unix nanoseconds (0: not
	// yet), and delays what its players measured from it (delay.go).
	pubStart []atomic.Int64
	delays   delayHist
}

// Report is what a run sent and received.
type Report struct {
	URL              string  `json:"url"`
	Source           string  `json:"source"`
	ClipBitrate      float64 `json:"clip_bitrate_bps"`
	Streams          int     `json:"streams"`
	PlayersPerStream int     `json:"players_per_stream"`
	Started          int     `json:"started"`
	Refused          int     `json:"refused"`
	Failed           int     `json:"failed"`
	Skipped          int     `json:"skipped"`
	ElapsedS         float64 `json:"elapsed_s"`
	// BytesSent counts chunk-layer bytes after the handshakes; MediaBytes
	// the audio and video payloads among them.
	BytesSent    uint64 `json:"bytes_sent"`
	MessagesSent uint64 `json:"messages_sent"`
	MediaBytes   uint64 `json:"media_bytes_sent"`
	// BitrateBps sums each stream's media payload rate over the time it
	// streamed: the load the server carried in steady state.
	BitrateBps float64 `json:"bitrate_bps"`
	// MaxLagMs is the latest a tag left after its due time: a generator
	// that cannot keep up shows here.
	MaxLagMs float64 `json:"max_lag_ms"`
	// GeneratorCPUS is the CPU time rtmpload itself used.
	GeneratorCPUS float64           `json:"generator_cpu_s"`
	Players       PlayerTotals      `json:"players"`
	Publishers    []PublisherReport `json:"publishers"`
	PlayerList    []PlayerReport    `json:"player_list,omitempty"`
}

// Connection outcomes.
const (
	stateOK      = "ok"
	stateRefused = "refused"
	stateFailed  = "failed"
	stateSkipped = "skipped" // the run stopped before its turn in the ramp
)

// PublisherReport is one publisher's result.
type PublisherReport struct {
	Key     string  `json:"key"`
	State   string  `json:"state"`
	Started bool    `json:"started"`
	Error   string  `json:"error,omitempty"`
	Status  string  `json:"status,omitempty"` // last onStatus code
	SetupMs float64 `json:"setup_ms"`
	ActiveS float64 `json:"active_s"`
	// Bytes and Messages count everything sent after the handshake;
	// the Media fields only audio and video.
	Bytes         uint64 `json:"bytes"`
	Messages      uint64 `json:"messages"`
	MediaMessages uint64 `json:"media_messages"`
	MediaBytes    uint64 `json:"media_bytes"`
	VideoFrames   uint64 `json:"video_frames"`
	AudioFrames   uint64 `json:"audio_frames"`
	Keyframes     uint64 `json:"keyframes"`
	Loops         uint64 `json:"loops"`
	LastTS        uint32 `json:"last_ts"`
	// CRC32 is the IEEE CRC-32 of every audio and video payload sent, in
	// order, sequence headers included: what a recording of the broadcast
	// must hash to (see -checksum).
	CRC32      string  `json:"crc32"`
	BitrateBps float64 `json:"bitrate_bps"`
	MaxLagMs   float64 `json:"max_lag_ms"`
}

func (r *PublisherReport) finish(err error) {
	r.State = outcome(err)
	if err != nil {
		r.Error = err.Error()
	}
	if r.ActiveS > 0 {
		r.BitrateBps = float64(r.MediaBytes) * 8 / r.ActiveS
	}
}

// PlayerReport is one player's result.
type PlayerReport struct {
	Key         string `json:"key"`
	State       string `json:"state"`
	Started     bool   `json:"started"`
	Error       string `json:"error,omitempty"`
	Bytes       uint64 `json:"bytes"`
	Messages    uint64 `json:"messages"`
	MediaBytes  uint64 `json:"media_bytes"`
	VideoFrames uint64 `json:"video_frames"`
	AudioFrames uint64 `json:"audio_frames"`
	Keyframes   uint64 `json:"keyframes"`
	// FirstKeyframeMs is from play to the first video keyframe, -1 if none
	// came; ConfigFirst says the sequence header preceded it.
	FirstKeyframeMs float64 `json:"first_keyframe_ms"`
	ConfigFirst     bool    `json:"config_first"`
	// PlayAfterTriggerMs is from the join trigger to the play command, -1
	// without a trigger or a play command (-join-on-signal).
	PlayAfterTriggerMs float64 `json:"play_after_trigger_ms"`
	// StopSeen: the server announced the end of the stream.
	StopSeen bool `json:"stop_seen"`
	// With -gaps, GapsMs[k] is the longest silence between two media
	// messages (audio or video) of which the later arrived in the
	// wall-clock second GapsFromUnixS+k: a script lines it up with the
	// moments of an upgrade to see what a viewer saw of it.
	GapsFromUnixS int64    `json:"gaps_from_unix_s,omitempty"`
	GapsMs        []uint32 `json:"gaps_ms,omitempty"`
}

func (r *PlayerReport) finish(err error) {
	r.State = outcome(err)
	if err != nil {
		r.Error = err.Error()
	}
}

// PlayerTotals sums the players.
type PlayerTotals struct {
	Count       int    `json:"count"`
	OK          int    `json:"ok"`
	Refused     int    `json:"refused"`
	Failed      int    `json:"failed"`
	Skipped     int    `json:"skipped"`
	SawKeyframe int    `json:"saw_keyframe"`
	Bytes       uint64 `json:"bytes"`
	Messages    uint64 `json:"messages"`
	MediaBytes  uint64 `json:"media_bytes"`
	// Time from play to the first video keyframe over the players that got
	// one, in ms (nearest rank; -1 when none did).
	FirstKeyframeP50Ms float64 `json:"first_keyframe_p50_ms"`
	FirstKeyframeP99Ms float64 `json:"first_keyframe_p99_ms"`
	FirstKeyframeMaxMs float64 `json:"first_keyframe_max_ms"`
	// Delivery delay of media messages, from the publisher's due time to
	// a player (delay.go), in ms; -1 when none was measured.
	DelayCount uint64  `json:"delay_count"`
	DelayP50Ms float64 `json:"delay_p50_ms"`
	DelayP99Ms float64 `json:"delay_p99_ms"`
	DelayMaxMs float64 `json:"delay_max_ms"`
}

func outcome(err error) string {
	var refused *RefusedError
	switch {
	case err == nil:
		return stateOK
	case errors.As(err, &refused):
		return stateRefused
	}
	return stateFailed
}

// run opens the connections, ramping them up evenly, streams until the
// duration ends or ctx is cancelled, and reports.
func run(ctx context.Context, cfg *runConfig, clip *Clip, log io.Writer) (*Report, error) {
	dataFrame, err := amf0.Append(nil, "@setDataFrame")
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg:       cfg,
		clip:      clip,
		dataFrame: append(dataFrame, clip.Metadata...),
		log:       log,
		pubs:      make([]PublisherReport, cfg.n),
		players:   make([]PlayerReport, cfg.playerStreams*cfg.players),
		pubStart:  make([]atomic.Int64, cfg.n),
	}
	for i := range r.pubs {
		r.pubs[i] = PublisherReport{Key: streamKey(cfg.keyPrefix, i), State: stateSkipped, CRC32: "00000000"}
		if i >= cfg.playerStreams {
			continue
		}
		for j := range cfg.players {
			r.players[i*cfg.players+j] = PlayerReport{Key: r.pubs[i].Key, State: stateSkipped, FirstKeyframeMs: -1, PlayAfterTriggerMs: -1}
		}
	}
	cpu0 := cpuTime()
	start := time.Now()
	stop, cancelStop := context.WithTimeout(ctx, cfg.duration)
	defer cancelStop()
	hard, cancelHard := context.WithCancel(context.Background())
	defer cancelHard()
	r.stop, r.hard = stop, hard
	stopGrace := context.AfterFunc(stop, func() { time.AfterFunc(cfg.grace, cancelHard) })
	defer stopGrace()

	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
launch:
	for i := range cfg.n {
		if at := time.Duration(int64(cfg.ramp) * int64(i) / int64(cfg.n)); at > 0 {
			wait.Reset(time.Until(start.Add(at)))
			select {
			case <-wait.C:
			case <-stop.Done():
				break launch
			}
		}
		r.wg.Go(func() { r.runPublisher(i) })
	}
	r.wg.Wait()
	return r.report(time.Since(start), cpuTime()-cpu0), nil
}

func streamKey(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }

func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.log, "rtmpload: "+format+"\n", args...)
}

func (r *runner) report(elapsed, cpu time.Duration) *Report {
	rep := &Report{
		URL:              r.cfg.url,
		Source:           r.cfg.source,
		ClipBitrate:      r.clip.Bitrate(),
		Streams:          r.cfg.n,
		PlayersPerStream: r.cfg.players,
		ElapsedS:         elapsed.Seconds(),
		GeneratorCPUS:    cpu.Seconds(),
		Publishers:       r.pubs,
	}
	for i := range r.pubs {
		p := &r.pubs[i]
		switch p.State {
		case stateRefused:
			rep.Refused++
		case stateFailed:
			rep.Failed++
		case stateSkipped:
			rep.Skipped++
		}
		if p.Started {
			rep.Started++
		}
		rep.BytesSent += p.Bytes
		rep.MessagesSent += p.Messages
		rep.MediaBytes += p.MediaBytes
		rep.BitrateBps += p.BitrateBps
		rep.MaxLagMs = max(rep.MaxLagMs, p.MaxLagMs)
	}
	t := &rep.Players
	for i := range r.players {
		p := &r.players[i]
		t.Count++
		switch p.State {
		case stateOK:
			t.OK++
		case stateRefused:
			t.Refused++
		case stateFailed:
			t.Failed++
		case stateSkipped:
			t.Skipped++
		}
		if p.FirstKeyframeMs >= 0 {
			t.SawKeyframe++
		}
		t.Bytes += p.Bytes
		t.Messages += p.Messages
		t.MediaBytes += p.MediaBytes
	}
	t.firstKeyframeStats(r.players)
	t.delayStats(&r.delays)
	if len(r.players) > 0 {
		rep.PlayerList = r.players
	}
	return rep
}

// failures lists the connections that did not end well, publishers first.
func (rep *Report) failures() []string {
	var out []string
	for _, p := range rep.Publishers {
		if p.State == stateRefused || p.State == stateFailed {
			out = append(out, fmt.Sprintf("publisher %s: %s: %s", p.Key, p.State, p.Error))
		}
	}
	for _, p := range rep.PlayerList {
		if p.State == stateRefused || p.State == stateFailed {
			out = append(out, fmt.Sprintf("player of %s: %s: %s", p.Key, p.State, p.Error))
		}
	}
	return slices.Clip(out)
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
