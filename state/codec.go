package state

import (
	"encoding/binary"
	"math"
)

// Hand-written msgpack for what an upgrade parks by the thousand: the
// session kinds, the stream (with its recorder and LL-HLS index) and the
// envelope (issue 13 §3). Reflection-based msgpack.Marshal costs tens of
// microseconds per publisher and grows its buffer several times; on the
// upgrade path that is stall, paid once per session. These encoders write
// exactly the bytes msgpack.Marshal writes (the wire format and the golden
// blobs do not change, codec_test.go holds them to that), in two passes
// over the value: one that only counts, then one that appends into a
// buffer of that size, so a payload costs one allocation whatever it
// holds.
//
// What msgpack/v5 does by default, and so what they do: a struct is a map
// of its fields in declaration order under their tag names; fixed-width
// integers keep their width (uint32 is always 0xce and four bytes) while
// int is written in the fewest bytes; a nil slice or pointer is nil, an
// empty one an empty array or bin; omitempty leaves out a nil pointer and
// an empty string.
//
// A field added to one of these types must be added here too: the tests
// fail until it is. decode.go reads what these write.

// enc writes msgpack, or with dry set only counts its bytes into n.
type enc struct {
	b   []byte
	n   int
	dry bool
}

// encodeFast encodes v if it points to a type written here, with one
// allocation; ok is false for any other type and for a nil pointer.
func encodeFast(v any) (b []byte, ok bool) {
	w := enc{dry: true}
	if !w.value(v) {
		return nil, false
	}
	w.b, w.dry = make([]byte, 0, w.n), false
	w.value(v)
	return w.b, true
}

func (w *enc) value(v any) bool {
	switch x := v.(type) {
	case *Publisher:
		if x == nil {
			return false
		}
		w.publisher(x)
	case *Player:
		if x == nil {
			return false
		}
		w.player(x)
	case *Session:
		if x == nil {
			return false
		}
		w.session(x)
	case *Relay:
		if x == nil {
			return false
		}
		w.relay(x)
	case *FLVPlayer:
		if x == nil {
			return false
		}
		w.flvPlayer(x)
	case *HTTPConn:
		if x == nil {
			return false
		}
		w.httpConn(x)
	case *Stream:
		if x == nil {
			return false
		}
		w.stream(x)
	default:
		return false
	}
	return true
}

// Primitives.

func (w *enc) code(c byte) {
	if w.dry {
		w.n++
		return
	}
	w.b = append(w.b, c)
}

func (w *enc) code8(c, v byte) {
	if w.dry {
		w.n += 2
		return
	}
	w.b = append(w.b, c, v)
}

func (w *enc) code16(c byte, v uint16) {
	if w.dry {
		w.n += 3
		return
	}
	w.b = binary.BigEndian.AppendUint16(append(w.b, c), v)
}

func (w *enc) code32(c byte, v uint32) {
	if w.dry {
		w.n += 5
		return
	}
	w.b = binary.BigEndian.AppendUint32(append(w.b, c), v)
}

func (w *enc) code64(c byte, v uint64) {
	if w.dry {
		w.n += 9
		return
	}
	w.b = binary.BigEndian.AppendUint64(append(w.b, c), v)
}

func (w *enc) raw(p []byte) {
	if w.dry {
		w.n += len(p)
		return
	}
	w.b = append(w.b, p...)
}

func (w *enc) rawString(s string) {
	if w.dry {
		w.n += len(s)
		return
	}
	w.b = append(w.b, s...)
}

func (w *enc) nilValue() { w.code(0xc0) }

func (w *enc) bool(v bool) {
	if v {
		w.code(0xc3)
	} else {
		w.code(0xc2)
	}
}

func (w *enc) u8(v uint8)   { w.code8(0xcc, v) }
func (w *enc) u32(v uint32) { w.code32(0xce, v) }
func (w *enc) u64(v uint64) { w.code64(0xcf, v) }
func (w *enc) i32(v int32)  { w.code32(0xd2, uint32(v)) }
func (w *enc) i64(v int64)  { w.code64(0xd3, uint64(v)) }

// int writes v in the fewest bytes, as msgpack/v5 writes Go's int.
func (w *enc) int(v int) {
	n := int64(v)
	switch {
	case n >= 0:
		u := uint64(n)
		switch {
		case u <= math.MaxInt8:
			w.code(byte(u))
		case u <= math.MaxUint8:
			w.code8(0xcc, byte(u))
		case u <= math.MaxUint16:
			w.code16(0xcd, uint16(u))
		case u <= math.MaxUint32:
			w.code32(0xce, uint32(u))
		default:
			w.code64(0xcf, u)
		}
	case n >= -32:
		w.code(byte(n))
	case n >= math.MinInt8:
		w.code8(0xd0, byte(n))
	case n >= math.MinInt16:
		w.code16(0xd1, uint16(n))
	case n >= math.MinInt32:
		w.code32(0xd2, uint32(n))
	default:
		w.code64(0xd3, uint64(n))
	}
}

// key writes a field name: always shorter than 32 bytes, so a fixstr.
func (w *enc) key(k string) {
	if w.dry {
		w.n += 1 + len(k)
		return
	}
	w.b = append(append(w.b, 0xa0|byte(len(k))), k...)
}

func (w *enc) str(s string) {
	switch l := len(s); {
	case l < 32:
		w.code(0xa0 | byte(l))
	case l < 256:
		w.code8(0xd9, byte(l))
	case l <= math.MaxUint16:
		w.code16(0xda, uint16(l))
	default:
		w.code32(0xdb, uint32(l))
	}
	w.rawString(s)
}

func (w *enc) bin(p []byte) {
	if p == nil {
		w.nilValue()
		return
	}
	switch l := len(p); {
	case l < 256:
		w.code8(0xc4, byte(l))
	case l <= math.MaxUint16:
		w.code16(0xc5, uint16(l))
	default:
		w.code32(0xc6, uint32(l))
	}
	w.raw(p)
}

func (w *enc) arrayLen(l int) {
	switch {
	case l < 16:
		w.code(0x90 | byte(l))
	case l <= math.MaxUint16:
		w.code16(0xdc, uint16(l))
	default:
		w.code32(0xdd, uint32(l))
	}
}

func (w *enc) mapLen(l int) {
	switch {
	case l < 16:
		w.code(0x80 | byte(l))
	case l <= math.MaxUint16:
		w.code16(0xde, uint16(l))
	default:
		w.code32(0xdf, uint32(l))
	}
}

// Types, field by field in declaration order.

func (w *enc) session(s *Session) {
	n := 15
	if s.Pending != nil {
		n++
	}
	w.mapLen(n)
	w.key("id")
	w.u64(s.ID)
	w.key("peer")
	w.str(s.Peer)
	w.key("hs_phase")
	w.u8(s.HandshakePhase)
	w.key("hs_partial")
	w.bin(s.HandshakePartial)
	w.key("reader")
	w.chunkReader(&s.Reader)
	w.key("writer")
	w.mapLen(1)
	w.key("chunk_size")
	w.u32(s.Writer.ChunkSize)
	w.key("out")
	w.bin(s.Out)
	w.key("connected")
	w.bool(s.Connected)
	w.key("app")
	w.str(s.App)
	w.key("tc_url")
	w.str(s.TCURL)
	w.key("flash_ver")
	w.str(s.FlashVer)
	w.key("next_msid")
	w.u32(s.NextMsid)
	w.key("ack_window")
	w.u32(s.AckWindow)
	w.key("last_ack")
	w.u64(s.LastAck)
	w.key("last_read")
	w.i64(s.LastRead)
	if p := s.Pending; p != nil {
		w.key("pending")
		w.mapLen(3)
		w.key("play")
		w.bool(p.Play)
		w.key("msid")
		w.u32(p.Msid)
		w.key("name")
		w.str(p.Name)
	}
}

func (w *enc) chunkReader(r *ChunkReader) {
	w.mapLen(7)
	w.key("chunk_size")
	w.u32(r.ChunkSize)
	w.key("max_msg")
	w.u32(r.MaxMessageSize)
	w.key("streams")
	if r.Streams == nil {
		w.nilValue()
	} else {
		w.arrayLen(len(r.Streams))
		for i := range r.Streams {
			cs := &r.Streams[i]
			w.mapLen(9)
			w.key("csid")
			w.u32(cs.CSID)
			w.key("ts")
			w.u32(cs.Timestamp)
			w.key("delta")
			w.u32(cs.Delta)
			w.key("len")
			w.u32(cs.Length)
			w.key("type")
			w.u8(cs.TypeID)
			w.key("msid")
			w.u32(cs.StreamID)
			w.key("ext")
			w.bool(cs.Extended)
			w.key("active")
			w.bool(cs.Active)
			w.key("partial")
			w.bin(cs.Partial)
		}
	}
	w.key("header")
	w.bin(r.Header)
	w.key("body_csid")
	w.u32(r.BodyCSID)
	w.key("body_left")
	w.u32(r.BodyLeft)
	w.key("bytes_read")
	w.u64(r.BytesRead)
}

func (w *enc) publisher(p *Publisher) {
	w.mapLen(3)
	w.key("session")
	w.session(&p.Session)
	w.key("msid")
	w.u32(p.Msid)
	w.key("stream")
	w.stream(&p.Stream)
}

func (w *enc) stream(s *Stream) {
	n := 17
	if s.HLS != nil {
		n++
	}
	if s.Query != "" {
		n++
	}
	if s.PublisherAddr != "" {
		n++
	}
	w.mapLen(n)
	w.key("app")
	w.str(s.App)
	w.key("key")
	w.str(s.Key)
	w.key("metadata")
	w.bin(s.Metadata)
	w.key("video_seq")
	w.bin(s.VideoSeq)
	w.key("audio_seq")
	w.bin(s.AudioSeq)
	w.key("started")
	w.i64(s.Started)
	w.key("bytes_in")
	w.u64(s.BytesIn)
	w.key("video_frames")
	w.u64(s.VideoFrames)
	w.key("audio_frames")
	w.u64(s.AudioFrames)
	w.key("keyframes")
	w.u64(s.Keyframes)
	w.key("recorder")
	if s.Recorder == nil {
		w.nilValue()
	} else {
		w.recorder(s.Recorder)
	}
	w.key("video_bytes")
	w.u64(s.VideoBytes)
	w.key("audio_bytes")
	w.u64(s.AudioBytes)
	w.key("encoder")
	w.str(s.Encoder)
	w.key("tracks_since")
	w.i64(s.TracksSince)
	w.key("rate_buckets")
	if s.RateBuckets == nil {
		w.nilValue()
	} else {
		w.arrayLen(len(s.RateBuckets))
		for _, b := range s.RateBuckets {
			w.u64(b)
		}
	}
	w.key("rate_second")
	w.i64(s.RateSecond)
	if s.HLS != nil {
		w.key("hls")
		w.hls(s.HLS)
	}
	if s.Query != "" {
		w.key("query")
		w.str(s.Query)
	}
	if s.PublisherAddr != "" {
		w.key("publisher_addr")
		w.str(s.PublisherAddr)
	}
}

func (w *enc) recorder(r *Recorder) {
	w.mapLen(12)
	w.key("dir")
	w.str(r.Dir)
	w.key("segment_ns")
	w.i64(r.SegmentDuration)
	w.key("path")
	w.str(r.Path)
	w.key("offset")
	w.i64(r.Offset)
	w.key("segment_start_ts")
	w.u32(r.SegmentStartTS)
	w.key("started")
	w.bool(r.Started)
	w.key("saw_video")
	w.bool(r.SawVideo)
	w.key("metadata")
	w.bin(r.Metadata)
	w.key("video_seq")
	w.bin(r.VideoSeq)
	w.key("audio_seq")
	w.bin(r.AudioSeq)
	w.key("segments")
	if r.Segments == nil {
		w.nilValue()
	} else {
		w.arrayLen(len(r.Segments))
		for _, s := range r.Segments {
			w.str(s)
		}
	}
	w.key("has_file")
	w.bool(r.HasFile)
}

func (w *enc) hls(h *HLS) {
	n := 10
	if h.PendingFile != "" {
		n++
	}
	if h.PendingOffset != 0 {
		n++
	}
	w.mapLen(n)
	w.key("dir")
	w.str(h.Dir)
	w.key("init")
	w.u32(h.Init)
	w.key("init_stale")
	w.bool(h.InitStale)
	w.key("next_seq")
	w.u32(h.NextSeq)
	w.key("removed")
	w.u64(h.Removed)
	w.key("segments")
	if h.Segments == nil {
		w.nilValue()
	} else {
		w.arrayLen(len(h.Segments))
		for i := range h.Segments {
			s := &h.Segments[i]
			w.mapLen(6)
			w.key("msn")
			w.u64(s.MSN)
			w.key("start")
			w.i64(s.Start)
			w.key("init")
			w.u32(s.Init)
			w.key("parts")
			w.hlsParts(s.Parts)
			w.key("closed")
			w.bool(s.Closed)
			w.key("discontinuity")
			w.bool(s.Discontinuity)
		}
	}
	w.key("gone")
	if h.Gone == nil {
		w.nilValue()
	} else {
		w.arrayLen(len(h.Gone))
		for i := range h.Gone {
			g := &h.Gone[i]
			w.mapLen(3)
			w.key("msn")
			w.u64(g.MSN)
			w.key("expiry")
			w.i64(g.Expiry)
			w.key("parts")
			w.hlsParts(g.Parts)
		}
	}
	w.key("pending")
	if h.Pending == nil {
		w.nilValue()
	} else {
		w.arrayLen(len(h.Pending))
		for i := range h.Pending {
			s := &h.Pending[i]
			w.mapLen(5)
			w.key("track")
			w.u8(s.Track)
			w.key("dts")
			w.i64(s.DTS)
			w.key("cts")
			w.i32(s.CTS)
			w.key("key")
			w.bool(s.Key)
			w.key("size")
			w.u32(s.Size)
		}
	}
	if h.PendingFile != "" {
		w.key("pending_file")
		w.str(h.PendingFile)
	}
	if h.PendingOffset != 0 {
		w.key("pending_offset")
		w.i64(h.PendingOffset)
	}
	w.key("tracks")
	w.arrayLen(len(h.Tracks))
	for i := range h.Tracks {
		t := &h.Tracks[i]
		w.mapLen(4)
		w.key("seen")
		w.bool(t.Seen)
		w.key("last_ts")
		w.u32(t.LastTS)
		w.key("epoch")
		w.i64(t.Epoch)
		w.key("last_dts")
		w.i64(t.LastDTS)
	}
	w.key("part_start")
	w.i64(h.PartStart)
}

func (w *enc) hlsParts(parts []HLSPart) {
	if parts == nil {
		w.nilValue()
		return
	}
	w.arrayLen(len(parts))
	for i := range parts {
		p := &parts[i]
		w.mapLen(4)
		w.key("offset")
		w.i64(p.Offset)
		w.key("size")
		w.i64(p.Size)
		w.key("duration_ms")
		w.i64(p.DurationMS)
		w.key("independent")
		w.bool(p.Independent)
	}
}

func (w *enc) player(p *Player) {
	w.mapLen(7)
	w.key("session")
	w.session(&p.Session)
	w.key("msid")
	w.u32(p.Msid)
	w.key("app")
	w.str(p.App)
	w.key("key")
	w.str(p.Key)
	w.key("queue")
	w.queue(p.Queue)
	w.key("wait_key")
	w.bool(p.WaitKey)
	w.key("skips")
	w.int(p.Skips)
}

func (w *enc) queue(q []QueuedMessage) {
	if q == nil {
		w.nilValue()
		return
	}
	w.arrayLen(len(q))
	for i := range q {
		m := &q[i]
		w.mapLen(7)
		w.key("type")
		w.u8(m.Type)
		w.key("kind")
		w.u8(m.Kind)
		w.key("key")
		w.bool(m.Key)
		w.key("ts")
		w.u32(m.TS)
		w.key("csid")
		w.u32(m.CSID)
		w.key("msid0")
		w.bool(m.Msid0)
		w.key("payload")
		w.bin(m.Payload)
	}
}

func (w *enc) relay(r *Relay) {
	w.mapLen(12)
	w.key("session")
	w.session(&r.Session)
	w.key("app")
	w.str(r.App)
	w.key("key")
	w.str(r.Key)
	w.key("url")
	w.str(r.URL)
	w.key("msid")
	w.u32(r.Msid)
	w.key("queue")
	w.queue(r.Queue)
	w.key("wait_key")
	w.bool(r.WaitKey)
	w.key("bytes_out")
	w.u64(r.BytesOut)
	w.key("drops")
	w.u64(r.Drops)
	w.key("reconnects")
	w.u64(r.Reconnects)
	w.key("last_error")
	w.str(r.LastError)
	w.key("connected")
	w.i64(r.Connected)
}

func (w *enc) flvPlayer(p *FLVPlayer) {
	w.mapLen(9)
	w.key("id")
	w.u64(p.ID)
	w.key("peer")
	w.str(p.Peer)
	w.key("app")
	w.str(p.App)
	w.key("key")
	w.str(p.Key)
	w.key("out")
	w.bin(p.Out)
	w.key("queue")
	w.queue(p.Queue)
	w.key("wait_key")
	w.bool(p.WaitKey)
	w.key("skips")
	w.int(p.Skips)
	w.key("ending")
	w.bool(p.Ending)
}

func (w *enc) httpConn(c *HTTPConn) {
	w.mapLen(4)
	w.key("id")
	w.u64(c.ID)
	w.key("peer")
	w.str(c.Peer)
	w.key("unread")
	w.bin(c.Unread)
	w.key("fresh")
	w.bool(c.Fresh)
}

// envelope is the wire form of e.
func (w *enc) envelope(e *Envelope) {
	w.mapLen(3)
	w.key("kind")
	w.str(string(e.Kind))
	w.key("v")
	w.u32(e.Version)
	w.key("payload")
	w.bin(e.Payload)
}
