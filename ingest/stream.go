package ingest

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/ingest/hls"
)

// ErrStreamBusy refuses a publish to a key that is live.
var ErrStreamBusy = errors.New("stream is already being published")

// Registry maps APP/KEY to streams. A stream exists while it has a publisher
// or at least one player waiting for one.
type Registry struct {
	// mu comes first in the lock order: registry, then stream (Stream.mu),
	// then player (player.mu). Publish and play hold all three at once to
	// attach a player to its stream without a gap in the fan-out; taking
	// them in any other order could deadlock against that.
	mu      sync.Mutex
	streams map[string]*Stream
	// gop bounds the streams' GOP caches (gopcache.go).
	gop gopBudget
	// pastHLS holds LL-HLS muxers of broadcasts that ended or moved away,
	// by stream name; closed is set once the server closes.
	pastHLS map[string]*pastHLS
	closed  bool
}

func newRegistry(gopPerStream, gopTotal int64) *Registry {
	r := &Registry{streams: make(map[string]*Stream), pastHLS: make(map[string]*pastHLS)}
	r.gop.perStream, r.gop.total = gopPerStream, gopTotal
	return r
}

// GOPCacheBytes is what the streams' GOP caches hold in all.
func (r *Registry) GOPCacheBytes() int64 { return r.gop.used.Load() }

func streamName(app, key string) string { return app + "/" + key }

// lookupLocked returns the stream app/key, creating it if needed. r.mu is
// held.
func (r *Registry) lookupLocked(app, key string) *Stream {
	name := streamName(app, key)
	st := r.streams[name]
	if st == nil {
		st = &Stream{App: app, Key: key, reg: r}
		r.streams[name] = st
	}
	return st
}

func (r *Registry) publish(app, key string, pub *session) (*Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.lookupLocked(app, key)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != nil {
		return nil, ErrStreamBusy
	}
	st.publisher = pub
	st.started = time.Now()
	st.stats = StreamStats{TracksSince: st.started}
	st.gop.reset(&r.gop)
	// Players already waiting learn that the stream is back and start over
	// at its first keyframe.
	for _, p := range st.players {
		p.enqueueStatus("NetStream.Play.PublishNotify", app+"/"+key+" is now published")
		p.resync()
	}
	return st, nil
}

func (r *Registry) play(app, key string, p *player, preamble []outMsg) *Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.lookupLocked(app, key)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.players = append(st.players, p)
	p.resync()
	for _, m := range preamble {
		p.enqueue(m)
	}
	if st.publisher != nil {
		// Metadata and sequence headers, then the current GOP from its
		// keyframe: all under st.mu, as the fan-out, so the live frames
		// follow the cached ones with no gap and no repeat.
		st.sendConfigLocked(p)
		st.gop.replay(p)
	}
	return st
}

// releaseIfIdle forgets a stream with neither publisher nor players.
func (r *Registry) releaseIfIdle(st *Stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.mu.Lock()
	idle := st.publisher == nil && len(st.players) == 0
	st.mu.Unlock()
	if idle && r.streams[streamName(st.App, st.Key)] == st {
		delete(r.streams, streamName(st.App, st.Key))
	}
}

// restorePublisher registers a stream rebuilt from an old process.
func (r *Registry) restorePublisher(st *Stream, pub *session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := streamName(st.App, st.Key)
	if old := r.streams[name]; old != nil {
		old.mu.Lock()
		busy := old.publisher != nil
		old.mu.Unlock()
		if busy {
			return fmt.Errorf("stream %s restored twice", name)
		}
		// Players restored before would have created it; keep theirs.
		st.players = old.players
	}
	st.publisher = pub
	r.streams[name] = st
	return nil
}

// attachPlayer adds a restored player to its stream as it stood: no
// resync, no configuration resent, since its queue carries on from where
// it was.
func (r *Registry) attachPlayer(app, key string, p *player) *Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.lookupLocked(app, key)
	st.mu.Lock()
	st.players = append(st.players, p)
	st.mu.Unlock()
	return st
}

// forget drops st from the registry without telling anyone: its
// connections now live in another process.
func (r *Registry) forget(st *Stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streams[streamName(st.App, st.Key)] == st {
		delete(r.streams, streamName(st.App, st.Key))
	}
}

// StreamInfo describes a stream for the admin API.
type StreamInfo struct {
	App     string    `json:"app"`
	Key     string    `json:"key"`
	Live    bool      `json:"live"`
	Started time.Time `json:"started,omitzero"`
	// DurationS is how long the broadcast has run, across upgrades.
	DurationS float64 `json:"duration_s,omitempty"`
	// Players counts every viewer, RTMP and HTTP-FLV; FLVPlayers those of
	// them on HTTP-FLV.
	Players    int         `json:"players"`
	FLVPlayers int         `json:"flv_players"`
	Recording  string      `json:"recording,omitempty"`
	Stats      StreamStats `json:"stats"`
	// Relays are the stream's push targets (push.go).
	Relays []RelayInfo `json:"relays,omitempty"`
}

// List describes every stream, sorted by name.
func (r *Registry) List() []StreamInfo {
	r.mu.Lock()
	streams := make([]*Stream, 0, len(r.streams))
	for _, st := range r.streams {
		streams = append(streams, st)
	}
	r.mu.Unlock()
	out := make([]StreamInfo, 0, len(streams))
	for _, st := range streams {
		out = append(out, st.Info())
	}
	slices.SortFunc(out, func(a, b StreamInfo) int {
		if a.App != b.App {
			if a.App < b.App {
				return -1
			}
			return 1
		}
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return out
}

// Stream is one APP/KEY: its publisher, its players, what a joining player
// needs first (metadata and sequence headers) and its recording.
type Stream struct {
	App, Key string
	reg      *Registry

	// mu is taken after Registry.mu and before player.mu and pushLink.mu
	// (see Registry.mu): the fan-out, a publish and a move to a new process
	// reach into the stream's players and relays while holding it.
	mu        sync.Mutex
	publisher *session
	players   []*player
	metadata  []byte // "onMetaData" + properties, AMF0
	videoSeq  []byte
	audioSeq  []byte
	started   time.Time
	stats     StreamStats
	// gop is the current GOP for joining players; it stays in this
	// process (see gopcache.go).
	gop gopCache
	// push holds the stream's relays while it is live here (push.go).
	push []*pushLink
	// The publish's query, the publisher's address and session id, for
	// the webhooks; set when the publish starts.
	query, pubAddr string
	pubID          uint64

	// rec is written only by the publisher's goroutine (unpublish is called
	// from it too); st.mu guards replacing it, and recPath mirrors its
	// current segment for readers of Info.
	// hls, like rec, is written by the publisher's goroutine; st.mu
	// guards replacing it, for the HTTP handlers that look it up.
	hls *hls.Muxer

	rec        *flv.Recorder
	recPath    string
	recFailing bool
	log        zerolog.Logger
}

// Info snapshots the stream.
func (st *Stream) Info() StreamInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	info := StreamInfo{App: st.App, Key: st.Key, Live: st.publisher != nil, Stats: st.stats}
	for _, p := range st.players {
		switch {
		case p.relay:
			continue
		case p.flv:
			info.FLVPlayers++
		}
		info.Players++
	}
	info.Relays = st.relayInfoLocked()
	info.Stats.GOPCacheBytes = st.gop.bytes
	now := time.Now()
	info.Stats.BitrateKbps = st.stats.rate.kbps(now.Unix())
	if info.Live {
		info.Started = st.started
		info.DurationS = now.Sub(st.started).Seconds()
		info.Recording = st.recPath
	}
	return info
}

// startHLS starts the stream's LL-HLS muxer, fed the sequence headers
// the stream already has (a stream restored from a build without HLS).
func (st *Stream) startHLS(srv *Server) {
	if srv.cfg.HLSDir == "" {
		return
	}
	cfg := srv.cfg.HLS
	cfg.Log = st.log
	// A directory per broadcast: a republish must not reuse the names of
	// files that viewers of the last one may still fetch.
	m, err := hls.New(cfg, filepath.Join(srv.cfg.HLSDir, st.App, st.Key, strconv.FormatInt(time.Now().UnixNano(), 36)))
	if err != nil {
		st.log.Error().Err(err).Msg("hls: cannot start; the stream goes on without HLS")
		return
	}
	st.mu.Lock()
	vs, as := st.videoSeq, st.audioSeq
	st.hls = m
	st.mu.Unlock()
	now := time.Now()
	if vs != nil {
		m.Write(chunk.TypeVideo, 0, vs, now)
	}
	if as != nil {
		m.Write(chunk.TypeAudio, 0, as, now)
	}
}

// HLS returns the LL-HLS muxer of a stream: the live one, else the last
// broadcast's for a while after it ended (its playlist ends with ENDLIST)
// or after it moved to a new process (its playlist is what this process
// last had); nil if none.
func (r *Registry) HLS(app, key string) *hls.Muxer {
	name := streamName(app, key)
	r.mu.Lock()
	st := r.streams[name]
	r.mu.Unlock()
	if st != nil {
		st.mu.Lock()
		m := st.hls
		if st.publisher == nil {
			m = nil
		}
		st.mu.Unlock()
		if m != nil {
			return m
		}
	}
	// Looked up after the live stream: a muxer leaves the stream (ended
	// or moved) only once it is kept here, so one that was just let go is
	// found, not answered 404.
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pastHLS[name]; p != nil {
		return p.m
	}
	return nil
}

// pastHLS is a muxer no longer live here. An ended one has a timer that
// removes its files.
type pastHLS struct {
	m     *hls.Muxer
	timer *time.Timer
}

// keepHLS keeps a muxer that ended (files removed after its Keep) or
// moved (files owned by the new process) reachable by name.
func (r *Registry) keepHLS(app, key string, m *hls.Muxer, ended bool) {
	name := streamName(app, key)
	p := &pastHLS{m: m}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		if ended {
			m.Remove()
		}
		return
	}
	if old := r.pastHLS[name]; old != nil && old.timer != nil && old.timer.Stop() {
		old.m.Remove()
	}
	if ended {
		p.timer = time.AfterFunc(m.Keep(), func() {
			r.mu.Lock()
			if r.pastHLS[name] == p {
				delete(r.pastHLS, name)
			}
			r.mu.Unlock()
			m.Remove()
		})
	}
	r.pastHLS[name] = p
}

// closePast removes the files of ended broadcasts now: the server stops.
func (r *Registry) closePast() {
	r.mu.Lock()
	r.closed = true
	past := r.pastHLS
	r.pastHLS = nil
	r.mu.Unlock()
	for _, p := range past {
		if p.timer != nil && p.timer.Stop() {
			p.m.Remove()
		}
	}
}

func (st *Stream) startRecording(srv *Server, log zerolog.Logger) {
	st.log = log
	if srv.cfg.RecordDir == "" {
		return
	}
	st.rec = flv.NewRecorder(flv.RecorderConfig{
		Dir:             filepath.Join(srv.cfg.RecordDir, st.App, st.Key),
		SegmentDuration: srv.cfg.SegmentDuration,
		OnSegmentDone:   st.recordDone(srv),
	})
}

// media records and fans out one audio or video message. It runs on the
// publisher's goroutine and never blocks on a player.
func (st *Stream) media(typ uint8, ts uint32, payload []byte) {
	seq := flv.IsSequenceHeader(typ, payload)
	key := typ == chunk.TypeVideo && flv.IsVideoKeyframe(payload) && !seq
	if st.rec != nil {
		// The broadcast is worth more than its recording: on a write error
		// the recorder drops the broken segment and opens a new one at the
		// next keyframe, while relaying goes on. One line per outage.
		if err := st.rec.Write(typ, ts, payload); err != nil {
			if !st.recFailing {
				st.log.Error().Err(err).Msg("recording failed; the stream stays live and recording resumes at the next keyframe that can be written")
			}
			st.recFailing = true
		} else if st.recFailing {
			st.recFailing = false
			st.log.Info().Str("segment", st.rec.Path()).Msg("recording resumed")
		}
	}
	now := time.Now()
	if st.hls != nil && (typ == chunk.TypeVideo || typ == chunk.TypeAudio) {
		st.hls.Write(typ, ts, payload, now)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.rec != nil {
		st.recPath = st.rec.Path()
	}
	n := uint64(len(payload))
	st.stats.BytesIn += n
	st.stats.rate.add(now.Unix(), n)
	if typ == chunk.TypeVideo {
		st.stats.VideoBytes += n
	} else {
		st.stats.AudioBytes += n
	}
	m := outMsg{typ: typ, ts: ts, payload: payload, key: key}
	switch {
	case seq && typ == chunk.TypeVideo:
		st.videoSeq = payload
		m.kind = kindConfig
		// Frames cached before a new sequence header may not decode with
		// it: cache again from the next keyframe.
		st.gop.reset(&st.reg.gop)
	case seq:
		st.audioSeq = payload
		m.kind = kindConfig
		st.gop.reset(&st.reg.gop)
	case typ == chunk.TypeVideo:
		st.stats.VideoFrames++
		if key {
			st.stats.Keyframes++
		}
	default:
		st.stats.AudioFrames++
	}
	if m.kind == kindMedia {
		st.gop.add(&st.reg.gop, m)
	}
	for _, p := range st.players {
		p.enqueue(m)
	}
}

func (st *Stream) setMetadata(data []byte) {
	if st.rec != nil {
		st.rec.SetMetadata(data)
	}
	encoder := metadataEncoder(data)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.metadata = data
	st.stats.Encoder = encoder
	for _, p := range st.players {
		p.enqueue(outMsg{typ: chunk.TypeDataAMF0, payload: data, kind: kindConfig})
	}
}

func (st *Stream) relayData(ts uint32, data []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	m := outMsg{typ: chunk.TypeDataAMF0, ts: ts, payload: data, kind: kindMedia}
	st.gop.add(&st.reg.gop, m)
	for _, p := range st.players {
		p.enqueue(m)
	}
}

// sendConfigLocked queues what a player needs before any frame.
func (st *Stream) sendConfigLocked(p *player) {
	if st.metadata != nil {
		p.enqueue(outMsg{typ: chunk.TypeDataAMF0, payload: st.metadata, kind: kindConfig})
	}
	if st.videoSeq != nil {
		p.enqueue(outMsg{typ: chunk.TypeVideo, payload: st.videoSeq, kind: kindConfig})
	}
	if st.audioSeq != nil {
		p.enqueue(outMsg{typ: chunk.TypeAudio, payload: st.audioSeq, kind: kindConfig})
	}
}

func (st *Stream) closeRecording() {
	if st.rec == nil {
		return
	}
	if err := st.rec.Close(); err != nil {
		st.log.Error().Err(err).Msg("closing recording")
	} else if segs := st.rec.Segments(); len(segs) > 0 {
		st.log.Info().Strs("segments", segs).Msg("recording finalised")
	}
	st.rec = nil
	st.recPath = ""
}

// unpublish ends the broadcast of pub: the recording is finalised and every
// player is told, after the frames already queued for it.
func (st *Stream) unpublish(pub *session) {
	st.mu.Lock()
	if st.publisher != pub {
		st.mu.Unlock()
		return
	}
	st.closeRecording()
	if st.hls != nil {
		st.hls.End()
		st.reg.keepHLS(st.App, st.Key, st.hls, true)
		st.hls = nil
	}
	st.endPushLocked()
	st.publishDoneLocked(pub.srv)
	st.publisher = nil
	st.metadata, st.videoSeq, st.audioSeq = nil, nil, nil
	st.gop.reset(&st.reg.gop)
	for _, p := range st.players {
		p.enqueueStatus("NetStream.Play.UnpublishNotify", st.App+"/"+st.Key+" is now unpublished")
		p.enqueueStatus("NetStream.Play.Stop", "stopped playing "+st.Key)
		p.enqueueUserControl(ucStreamEOF)
		p.endOfStream()
	}
	st.mu.Unlock()
	st.reg.releaseIfIdle(st)
}

func (st *Stream) removePlayer(p *player) {
	st.mu.Lock()
	if i := slices.Index(st.players, p); i >= 0 {
		st.players = slices.Delete(st.players, i, i+1)
	}
	st.mu.Unlock()
	st.reg.releaseIfIdle(st)
}
