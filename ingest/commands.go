package ingest

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/webhook"
)

// Window and bandwidth we announce at connect: large enough that clients
// never wait for our acknowledgements.
const announcedWindow = 2_500_000

// errUnknownCommand marks a command no client we serve sends.
var errUnknownCommand = errors.New("unknown command")

// commandArgs is a decoded AMF command: name, transaction id, the rest.
type commandArgs struct {
	name string
	txn  float64
	args []any // after the transaction id; args[0] is the command object
}

func (c *commandArgs) arg(i int) any {
	if i < len(c.args) {
		return c.args[i]
	}
	return nil
}

func (c *commandArgs) stringArg(i int) (string, bool) {
	v, ok := c.arg(i).(string)
	return v, ok
}

func decodeCommand(m *chunk.Message) (commandArgs, error) {
	p := m.Payload
	if m.TypeID == chunk.TypeCommandAMF3 {
		// An AMF3 command message opens with a format byte; real clients
		// then encode the command itself in AMF0.
		if len(p) == 0 {
			return commandArgs{}, errors.New("empty AMF3 command")
		}
		p = p[1:]
	}
	vals, err := amf0.DecodeAll(p)
	if err != nil {
		return commandArgs{}, fmt.Errorf("decode command: %w", err)
	}
	if len(vals) == 0 {
		return commandArgs{}, errors.New("empty command")
	}
	name, ok := vals[0].(string)
	if !ok {
		return commandArgs{}, fmt.Errorf("command name is %T, not a string", vals[0])
	}
	c := commandArgs{name: name}
	if len(vals) > 1 {
		c.txn, _ = vals[1].(float64)
		c.args = vals[2:]
	}
	return c, nil
}

func (s *session) handleCommand(m *chunk.Message) error {
	c, err := decodeCommand(m)
	if err != nil {
		return err
	}
	if !s.connected && c.name != "connect" {
		return fmt.Errorf("command %q before connect", c.name)
	}
	switch c.name {
	case "connect":
		return s.onConnect(&c)
	case "createStream":
		msid := s.nextMsid
		s.nextMsid++
		return s.command(0, "_result", c.txn, nil, float64(msid))
	case "getStreamLength":
		// A live stream has no length; ffmpeg wants a number here.
		return s.command(0, "_result", c.txn, nil, 0.0)
	case "releaseStream", "FCPublish", "FCUnpublish", "FCSubscribe", "FCUnsubscribe":
		if c.name == "FCUnpublish" && s.role == rolePublisher {
			s.endPublish()
		}
		// Clients treat these as courtesy calls; a null result keeps the
		// ones that count transactions happy.
		if c.txn != 0 {
			return s.command(0, "_result", c.txn, nil, amf0.Undefined{})
		}
		return nil
	case "publish":
		return s.onPublish(m.StreamID, &c)
	case "play":
		return s.onPlay(m.StreamID, &c)
	case "deleteStream", "closeStream":
		s.endRole()
		return nil
	case "_checkbw", "receiveAudio", "receiveVideo", "pause", "seek", "_result", "_error", "onBWDone", "setDataFrame":
		// Bandwidth probes, replies to our own calls and player controls
		// that mean nothing for a live stream.
		return nil
	}
	_ = s.command(0, "_error", c.txn, nil, statusObject("error", "NetConnection.Call.Failed", "unknown command "+c.name))
	return fmt.Errorf("%w %q", errUnknownCommand, c.name)
}

func statusObject(level, code, desc string) amf0.Object {
	return amf0.Object{{Key: "level", Value: level}, {Key: "code", Value: code}, {Key: "description", Value: desc}}
}

func (s *session) command(msid uint32, vals ...any) error {
	p, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		return fmt.Errorf("encode %v: %w", vals[0], err)
	}
	return s.send(csidCommand, chunk.TypeCommandAMF0, msid, 0, p)
}

func (s *session) onStatus(msid uint32, level, code, desc string) error {
	return s.command(msid, "onStatus", 0.0, nil, statusObject(level, code, desc))
}

func (s *session) onConnect(c *commandArgs) error {
	if s.connected {
		return errors.New("second connect on one connection")
	}
	obj, _ := c.arg(0).(amf0.Object)
	app, _ := obj.GetString("app")
	s.tcURL, _ = obj.GetString("tcUrl")
	s.flashVer, _ = obj.GetString("flashVer")
	// Some clients carry a query string in the app ("live?token=x").
	app, _, _ = strings.Cut(app, "?")
	app = strings.Trim(app, "/")
	if !validName(app) {
		_ = s.command(0, "_error", c.txn, nil, statusObject("error", "NetConnection.Connect.Rejected", "invalid application name"))
		return fmt.Errorf("connect: invalid application name %q", app)
	}
	s.app = app
	var win [4]byte
	putU32(win[:], announcedWindow)
	if err := s.send(csidControl, chunk.TypeWindowAckSize, 0, 0, win[:]); err != nil {
		return err
	}
	bw := append(win[:], 2) // limit type dynamic
	if err := s.send(csidControl, chunk.TypeSetPeerBandwidth, 0, 0, bw); err != nil {
		return err
	}
	if err := s.setChunkSize(s.srv.cfg.ChunkSize); err != nil {
		return err
	}
	props := amf0.Object{{Key: "fmsVer", Value: "FMS/3,0,1,123"}, {Key: "capabilities", Value: 31.0}}
	info := statusObject("status", "NetConnection.Connect.Success", "Connection succeeded.")
	info = append(info, amf0.Property{Key: "objectEncoding", Value: 0.0})
	if err := s.command(0, "_result", c.txn, props, info); err != nil {
		return err
	}
	s.connected = true
	s.log = s.log.With().Str("app", app).Logger()
	return nil
}

// parseStreamName splits "KEY?query" as sent in publish and play.
func parseStreamName(name string) (key string, query url.Values) {
	key, rawQuery, _ := strings.Cut(name, "?")
	query, _ = url.ParseQuery(rawQuery)
	return key, query
}

// validName accepts the app and key names that are safe as path elements.
func validName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

func (s *session) onPublish(msid uint32, c *commandArgs) error {
	name, _ := c.stringArg(1)
	key, query := parseStreamName(name)
	if s.role != roleNone || s.pending != nil {
		_ = s.onStatus(msid, "error", "NetStream.Publish.BadName", "connection already has a stream")
		return fmt.Errorf("publish %s/%s: connection is already a %s", s.app, key, s.role)
	}
	if !validName(key) {
		_ = s.onStatus(msid, "error", "NetStream.Publish.BadName", "invalid stream key")
		return fmt.Errorf("publish %s/%q: invalid stream key", s.app, key)
	}
	if !s.srv.cfg.Auth.Allowed(s.app, key, query) {
		_ = s.onStatus(msid, "error", "NetStream.Publish.Unauthorized", "publishing to "+s.app+"/"+key+" is not authorised")
		return fmt.Errorf("publish %s/%s: not authorised", s.app, key)
	}
	if s.srv.hooked(webhook.EventPublish) {
		s.startDecision(false, msid, name)
		return nil
	}
	_, rawQuery := splitName(name)
	return s.beginPublish(msid, key, query, rawQuery)
}

// beginPublish starts a publish that has been allowed.
func (s *session) beginPublish(msid uint32, key string, query url.Values, rawQuery string) error {
	st, err := s.srv.registry.publish(s.app, key, s)
	if err != nil {
		_ = s.onStatus(msid, "error", "NetStream.Publish.BadName", "stream "+s.app+"/"+key+" is already being published")
		return fmt.Errorf("publish %s/%s: %w", s.app, key, err)
	}
	st.mu.Lock()
	st.query, st.pubAddr, st.pubID = rawQuery, s.conn.RemoteAddr().String(), s.id
	st.mu.Unlock()
	s.setRole(rolePublisher)
	s.pubMsid = msid
	s.stream = st
	s.log = s.log.With().Str("key", key).Logger()
	if err := s.userControl(ucStreamBegin, msid); err != nil {
		return err
	}
	if err := s.onStatus(msid, "status", "NetStream.Publish.Start", s.app+"/"+key+" is now published"); err != nil {
		return err
	}
	st.startRecording(s.srv, s.log)
	st.startHLS(s.srv)
	st.startPush(s.srv, nil)
	s.publishBase()
	s.log.Info().Str("encoder", s.flashVer).Msg("publish started")
	return nil
}

func (s *session) onPlay(msid uint32, c *commandArgs) error {
	name, _ := c.stringArg(1)
	key, _ := parseStreamName(name)
	if s.role != roleNone || s.pending != nil {
		_ = s.onStatus(msid, "error", "NetStream.Play.Failed", "connection already has a stream")
		return fmt.Errorf("play %s/%s: connection is already a %s", s.app, key, s.role)
	}
	if !validName(key) {
		_ = s.onStatus(msid, "error", "NetStream.Play.StreamNotFound", "invalid stream key")
		return fmt.Errorf("play %s/%q: invalid stream key", s.app, key)
	}
	if s.srv.hooked(webhook.EventPlay) {
		s.startDecision(true, msid, name)
		return nil
	}
	_, rawQuery := splitName(name)
	return s.beginPlay(msid, key, rawQuery)
}

// beginPlay starts a play that has been allowed.
func (s *session) beginPlay(msid uint32, key, rawQuery string) error {
	s.playQuery = rawQuery
	s.log = s.log.With().Str("key", key).Logger()
	s.setRole(rolePlayer)
	s.player = newPlayer(s, msid)
	// The replies go through the player's queue, ahead of anything the
	// stream sends, so a client never sees a frame before Play.Start.
	var preamble []outMsg
	for _, code := range []string{"NetStream.Play.Reset", "NetStream.Play.Start"} {
		p, err := amf0.AppendAll(nil, "onStatus", 0.0, nil, statusObject("status", code, code[len("NetStream.Play."):]+" "+key))
		if err != nil {
			return err
		}
		preamble = append(preamble, outMsg{typ: chunk.TypeCommandAMF0, kind: kindControl, csid: csidCommand, payload: p})
	}
	sample, err := amf0.AppendAll(nil, "|RtmpSampleAccess", true, true)
	if err != nil {
		return err
	}
	preamble = append(preamble, outMsg{typ: chunk.TypeDataAMF0, kind: kindControl, csid: csidData, payload: sample})
	if err := s.userControl(ucStreamBegin, msid); err != nil {
		return err
	}
	s.stream = s.srv.registry.play(s.app, key, s.player, preamble)
	s.publishBase()
	s.log.Info().Msg("play started")
	return nil
}

// endRole handles deleteStream/closeStream: a publisher's broadcast ends, a
// player stops receiving; the connection itself stays open.
func (s *session) endRole() {
	switch s.role {
	case rolePublisher:
		s.endPublish()
	case rolePlayer:
		s.base.Store(nil)
		s.stream.removePlayer(s.player)
		s.player.stop()
		s.playDone()
		s.stream, s.player = nil, nil
		s.setRole(roleNone)
	}
}

func (s *session) endPublish() {
	if c := s.srv.coalesce; c != nil {
		// The connection stays, to send commands that want answers now.
		c.reset(s)
		c.forget(s)
	}
	s.base.Store(nil)
	s.stream.unpublish(s)
	s.log.Info().Msg("publish ended")
	s.stream = nil
	s.setRole(roleNone)
}

func (s *session) handleData(m *chunk.Message) error {
	if s.role != rolePublisher || m.StreamID != s.pubMsid {
		return nil
	}
	p := m.Payload
	if m.TypeID == chunk.TypeDataAMF3 {
		if len(p) == 0 {
			return nil
		}
		p = p[1:]
	}
	first, n, err := amf0.Decode(p)
	if err != nil {
		return fmt.Errorf("data message: %w", err)
	}
	switch first {
	case "@setDataFrame":
		// What is stored and relayed is the frame without the setter:
		// "onMetaData" followed by its properties.
		s.stream.setMetadata(p[n:])
	case "onMetaData":
		s.stream.setMetadata(p)
	default:
		s.stream.relayData(m.Timestamp, p)
	}
	return nil
}

func (s *session) handleMedia(m *chunk.Message) error {
	if s.role != rolePublisher || m.StreamID != s.pubMsid {
		// Media outside a publish has nowhere to go.
		return nil
	}
	s.stream.media(m.TypeID, m.Timestamp, m.Payload)
	return nil
}

// handleAggregate unpacks an aggregate message: FLV-style tags whose
// timestamps are rebased on the message's own.
func (s *session) handleAggregate(m *chunk.Message) error {
	if s.role != rolePublisher || m.StreamID != s.pubMsid {
		return nil
	}
	p := m.Payload
	var base uint32
	first := true
	for len(p) > 0 {
		if len(p) < 11 {
			return fmt.Errorf("aggregate: %d trailing bytes", len(p))
		}
		typ := p[0]
		size := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		ts := uint32(p[4])<<16 | uint32(p[5])<<8 | uint32(p[6]) | uint32(p[7])<<24
		if len(p) < 11+size+4 {
			return fmt.Errorf("aggregate: sub-message of %d bytes overruns", size)
		}
		if first {
			base, first = ts, false
		}
		body := p[11 : 11+size]
		sub := chunk.Message{CSID: m.CSID, Timestamp: m.Timestamp + (ts - base), TypeID: typ, StreamID: m.StreamID, Payload: body}
		switch typ {
		case chunk.TypeAudio, chunk.TypeVideo:
			if err := s.handleMedia(&sub); err != nil {
				return err
			}
		case chunk.TypeDataAMF0:
			if err := s.handleData(&sub); err != nil {
				return err
			}
		}
		p = p[11+size+4:]
	}
	return nil
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// ValidName says whether s may be an app or key: a safe path element.
func ValidName(s string) bool { return validName(s) }
