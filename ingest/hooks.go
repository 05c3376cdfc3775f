package ingest

// Webhooks (package webhook) at the points of a session's life: on_publish
// and on_play decide whether a publish or a play may start, the *_done
// events and on_record_done notify. A decision runs off the session's
// goroutine, so that the session keeps parking for upgrades and answering
// pings while the receiver thinks; an upgrade in the middle of one carries
// the pending command to the new process, which asks again
// (state.Session.Pending).

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/ingest/webhook"
	"github.com/mediad/mediad/state"
)

// hooked reports whether ev has a webhook to call.
func (s *Server) hooked(ev webhook.Event) bool {
	return s != nil && s.cfg.Hooks != nil && s.cfg.Hooks.Configured(ev)
}

func (s *Server) notify(ev webhook.Event, sub webhook.Subject, fields map[string]any) {
	if s.hooked(ev) {
		s.cfg.Hooks.Notify(ev, sub, fields)
	}
}

// decision is an on_publish or on_play call in flight for a session.
type decision struct {
	play   bool
	msid   uint32
	name   string // the stream name as the client sent it: KEY?query
	cancel context.CancelFunc
	// Set by the caller's goroutine before it hands the decision back.
	allowed bool
	err     error
}

func (s *session) subject(key, query string) webhook.Subject {
	return webhook.Subject{App: s.app, Key: key, Query: query, Addr: s.conn.RemoteAddr().String(), StreamID: s.id}
}

func splitName(name string) (key, query string) {
	key, query, _ = strings.Cut(name, "?")
	return key, query
}

// startDecision asks the webhook whether the publish or play of name may
// start. The answer comes back through s.decided, and a read deadline in
// the past wakes the session to act on it (serve).
func (s *session) startDecision(play bool, msid uint32, name string) {
	ev := webhook.EventPublish
	if play {
		ev = webhook.EventPlay
	}
	ctx, cancel := context.WithCancel(s.srv.ctx)
	d := &decision{play: play, msid: msid, name: name, cancel: cancel}
	s.pending = d
	key, query := splitName(name)
	sub := s.subject(key, query)
	s.srv.wg.Add(1)
	go func() {
		defer s.srv.wg.Done()
		d.allowed, d.err = s.srv.cfg.Hooks.Decide(ctx, ev, sub)
		s.decided.Store(d)
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	}()
}

// finishDecision acts on a webhook's answer, on the session's goroutine.
func (s *session) finishDecision(d *decision) error {
	if s.pending != d {
		// Asked before a park that rolled back, and asked again since.
		return nil
	}
	s.pending = nil
	d.cancel()
	key, query := splitName(d.name)
	what := "publish"
	if d.play {
		what = "play"
	}
	if !d.allowed {
		code := "NetStream.Publish.Unauthorized"
		if d.play {
			code = "NetStream.Play.Failed"
		}
		_ = s.onStatus(d.msid, "error", code, what+" of "+s.app+"/"+key+" refused by the on_"+what+" webhook")
		return &hookRefusedError{what: what, app: s.app, key: key, err: d.err}
	}
	if d.err != nil {
		s.log.Warn().Err(d.err).Str("key", key).Msg("on_" + what + " webhook failed; allowed (fail-open)")
	}
	if d.play {
		return s.beginPlay(d.msid, key, query)
	}
	q, _ := url.ParseQuery(query)
	return s.beginPublish(d.msid, key, q, query)
}

// dropDecision forgets a call in flight: the session ends, or moves to a
// process that asks again.
func (s *session) dropDecision() {
	if s.pending != nil {
		s.pending.cancel()
		s.pending = nil
	}
}

// pendingState is the command waiting for its webhook, for the state.
func (s *session) pendingState() *state.PendingCommand {
	if s.pending == nil {
		return nil
	}
	return &state.PendingCommand{Play: s.pending.play, Msid: s.pending.msid, Name: s.pending.name}
}

type hookRefusedError struct {
	what, app, key string
	err            error
}

func (e *hookRefusedError) Error() string {
	msg := e.what + " " + e.app + "/" + e.key + ": refused by the on_" + e.what + " webhook"
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

func (e *hookRefusedError) Unwrap() error { return e.err }

// recordDone returns the callback that reports a stream's finished
// recording files.
func (st *Stream) recordDone(srv *Server) func(flv.SegmentDone) {
	if !srv.hooked(webhook.EventRecordDone) {
		return nil
	}
	sub := webhook.Subject{App: st.App, Key: st.Key, Query: st.query, Addr: st.pubAddr, StreamID: st.pubID}
	return func(sd flv.SegmentDone) {
		fields := webhook.RecordFields(sd.Path, sd.Start, sd.Duration)
		fields["bytes"] = sd.Bytes
		srv.notify(webhook.EventRecordDone, sub, fields)
	}
}

// publishDone reports the end of a broadcast; st.mu is held.
func (st *Stream) publishDoneLocked(srv *Server) {
	if !srv.hooked(webhook.EventPublishDone) {
		return
	}
	sub := webhook.Subject{App: st.App, Key: st.Key, Query: st.query, Addr: st.pubAddr, StreamID: st.pubID}
	srv.notify(webhook.EventPublishDone, sub, map[string]any{
		"duration_s":   time.Since(st.started).Seconds(),
		"bytes_in":     st.stats.BytesIn,
		"video_frames": st.stats.VideoFrames,
		"audio_frames": st.stats.AudioFrames,
	})
}

// playDone reports the end of a play, RTMP or HTTP-FLV.
func (s *session) playDone() {
	if s.stream == nil || !s.srv.hooked(webhook.EventPlayDone) {
		return
	}
	proto := "rtmp"
	if s.role == roleFLVPlayer {
		proto = "http-flv"
	}
	sub := webhook.Subject{App: s.stream.App, Key: s.stream.Key, Query: s.playQuery, Addr: s.conn.RemoteAddr().String(), StreamID: s.id}
	s.srv.notify(webhook.EventPlayDone, sub, map[string]any{"protocol": proto, "bytes_out": s.written.Load()})
}
