package chunk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mediad/mediad/state"
)

// cat joins byte vectors written in parts, so a test vector can be read chunk
// by chunk.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// seq is n payload bytes counting up from start, so that bytes landing in
// the wrong message or the wrong place are visible.
func seq(start, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(start + i)
	}
	return p
}

func msg(csid, ts uint32, typeID uint8, msid uint32, payload []byte) Message {
	return Message{CSID: csid, Timestamp: ts, TypeID: typeID, StreamID: msid, Payload: payload}
}

// feedPieces feeds in to r in pieces whose sizes next chooses and collects
// every message until the end or the first error.
func feedPieces(r *Reader, in []byte, next func() int) ([]Message, error) {
	var got []Message
	fn := func(m *Message) error {
		got = append(got, *m)
		return nil
	}
	for len(in) > 0 {
		n := min(max(next(), 1), len(in))
		if err := r.Feed(in[:n], fn); err != nil {
			return got, err
		}
		in = in[n:]
	}
	return got, nil
}

func whole() int { return 1 << 62 }

func oneByte() int { return 1 }

// randomSizes returns piece sizes from 1 to limit.
func randomSizes(rng *rand.Rand, limit int) func() int {
	return func() int { return 1 + rng.IntN(limit) }
}

func sameMessage(a, b *Message) bool {
	return a.CSID == b.CSID && a.Timestamp == b.Timestamp && a.TypeID == b.TypeID &&
		a.StreamID == b.StreamID && bytes.Equal(a.Payload, b.Payload)
}

// diffMessages describes the first difference between two message lists, or
// returns "" when they are equal.
func diffMessages(got, want []Message) string {
	for i := range min(len(got), len(want)) {
		if !sameMessage(&got[i], &want[i]) {
			return fmt.Sprintf("message %d:\n got  %s\n want %s", i, describe(&got[i]), describe(&want[i]))
		}
	}
	switch {
	case len(got) > len(want):
		return fmt.Sprintf("%d extra messages, first %s", len(got)-len(want), describe(&got[len(want)]))
	case len(got) < len(want):
		return fmt.Sprintf("%d missing messages, first %s", len(want)-len(got), describe(&want[len(got)]))
	}
	return ""
}

func describe(m *Message) string {
	p := m.Payload
	more := ""
	if len(p) > 16 {
		p, more = p[:16], "…"
	}
	return fmt.Sprintf("{csid %d ts %#x type %d msid %d len %d % x%s}", m.CSID, m.Timestamp, m.TypeID, m.StreamID, len(m.Payload), p, more)
}

// viaMsgpack sends a reader state through the encoding a live upgrade uses.
func viaMsgpack(t testing.TB, st state.ChunkReader) state.ChunkReader {
	t.Helper()
	b, err := msgpack.Marshal(&st)
	if err != nil {
		t.Fatalf("encode chunk reader state: %v", err)
	}
	var out state.ChunkReader
	if err := msgpack.Unmarshal(b, &out); err != nil {
		t.Fatalf("decode chunk reader state: %v", err)
	}
	return out
}

// normalState makes empty and nil slices alike, which msgpack does not
// preserve and which carry the same meaning.
func normalState(st state.ChunkReader) state.ChunkReader {
	if len(st.Header) == 0 {
		st.Header = nil
	}
	if len(st.Streams) == 0 {
		st.Streams = nil
	}
	st.Streams = append([]state.ChunkStream(nil), st.Streams...)
	for i := range st.Streams {
		if len(st.Streams[i].Partial) == 0 {
			st.Streams[i].Partial = nil
		}
	}
	return st
}

// chunkHdr is one chunk header as a peer writes it. The tests use it to build
// streams the Writer never produces: formats 1 and 2, interleaving, aborts.
type chunkHdr struct {
	fmt  uint8
	csid uint32
	// ts is the timestamp field: absolute for format 0, a delta for 1 and 2;
	// from 0xFFFFFF up it goes in the extended field. For format 3 it is the
	// extended field's value when ext is set.
	ts     uint32
	length uint32
	typeID uint8
	msid   uint32
	ext    bool
}

func (h chunkHdr) extended() bool {
	if h.fmt < 3 {
		return h.ts >= 0xFFFFFF
	}
	return h.ext
}

func appendChunk(dst []byte, h chunkHdr, body []byte) []byte {
	switch {
	case h.csid < 64:
		dst = append(dst, h.fmt<<6|byte(h.csid))
	case h.csid < 64+256:
		dst = append(dst, h.fmt<<6, byte(h.csid-64))
	default:
		dst = append(dst, h.fmt<<6|1, byte(h.csid-64), byte((h.csid-64)>>8))
	}
	if h.fmt < 3 {
		field := min(h.ts, 0xFFFFFF)
		dst = append(dst, byte(field>>16), byte(field>>8), byte(field))
	}
	if h.fmt < 2 {
		dst = append(dst, byte(h.length>>16), byte(h.length>>8), byte(h.length), h.typeID)
	}
	if h.fmt == 0 {
		dst = binary.LittleEndian.AppendUint32(dst, h.msid)
	}
	if h.extended() {
		dst = binary.BigEndian.AppendUint32(dst, h.ts)
	}
	return append(dst, body...)
}

// streamBuilder writes a peer's byte stream chunk by chunk.
type streamBuilder struct {
	b         []byte
	chunkSize int
}

func newStreamBuilder() *streamBuilder { return &streamBuilder{chunkSize: DefaultChunkSize} }

func (sb *streamBuilder) chunk(h chunkHdr, body []byte) {
	sb.b = appendChunk(sb.b, h, body)
}

// message writes a whole message: h opens it and format-3 chunks, repeating
// its extended timestamp if it has one, carry the rest.
func (sb *streamBuilder) message(h chunkHdr, p []byte) {
	cont := chunkHdr{fmt: 3, csid: h.csid, ts: h.ts, ext: h.extended()}
	n := min(len(p), sb.chunkSize)
	sb.chunk(h, p[:n])
	for p = p[n:]; len(p) > 0; p = p[n:] {
		n = min(len(p), sb.chunkSize)
		sb.chunk(cont, p[:n])
	}
}

// setChunkSize announces a chunk size on chunk stream 2 and uses it from then
// on.
func (sb *streamBuilder) setChunkSize(n uint32) Message {
	p := binary.BigEndian.AppendUint32(nil, n)
	sb.chunk(chunkHdr{fmt: 0, csid: 2, length: 4, typeID: TypeSetChunkSize}, p)
	sb.chunkSize = int(n)
	return msg(2, 0, TypeSetChunkSize, 0, p)
}
