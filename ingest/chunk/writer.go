package chunk

import (
	"encoding/binary"
	"fmt"

	"github.com/mediad/mediad/state"
)

// Message type ids (RTMP §5.4, §7.1).
const (
	TypeSetChunkSize     uint8 = 1
	TypeAbort            uint8 = 2
	TypeAck              uint8 = 3
	TypeUserControl      uint8 = 4
	TypeWindowAckSize    uint8 = 5
	TypeSetPeerBandwidth uint8 = 6
	TypeAudio            uint8 = 8
	TypeVideo            uint8 = 9
	TypeDataAMF3         uint8 = 15
	TypeCommandAMF3      uint8 = 17
	TypeDataAMF0         uint8 = 18
	TypeCommandAMF0      uint8 = 20
	TypeAggregate        uint8 = 22
)

// AckDue reports whether read bytes call for an Acknowledgement, given the
// peer's window and the count last acknowledged, and returns its payload:
// the byte count modulo 2^32 (RTMP §5.4.3). A zero window asks for none.
func AckDue(read, lastAck uint64, window uint32) (payload [4]byte, due bool) {
	if window == 0 || read-lastAck < uint64(window) {
		return payload, false
	}
	binary.BigEndian.PutUint32(payload[:], uint32(read))
	return payload, true
}

// Writer frames outbound messages as chunks. Every message opens with a
// format-0 header and continues with format-3 chunks, so the only state is
// the chunk size; this costs a few header bytes per message and makes the
// outbound side trivially transferable.
type Writer struct {
	chunkSize uint32
}

// NewWriter returns a writer at the protocol's default chunk size.
func NewWriter() *Writer { return &Writer{chunkSize: DefaultChunkSize} }

// RestoreWriter rebuilds a writer from exported state.
func RestoreWriter(st state.ChunkWriter) (*Writer, error) {
	if st.ChunkSize == 0 || st.ChunkSize > maxChunkSize {
		return nil, fmt.Errorf("restore chunk writer: %w: %d", ErrBadChunkSize, st.ChunkSize)
	}
	return &Writer{chunkSize: st.ChunkSize}, nil
}

// State exports the writer.
func (w *Writer) State() state.ChunkWriter { return state.ChunkWriter{ChunkSize: w.chunkSize} }

// ChunkSize is the size used for outbound chunks.
func (w *Writer) ChunkSize() uint32 { return w.chunkSize }

// SetChunkSize changes the outbound chunk size. The caller must first send
// the Set Chunk Size message (framed at the old size) announcing it.
func (w *Writer) SetChunkSize(n uint32) error {
	if n == 0 || n > maxChunkSize {
		return fmt.Errorf("%w: %d", ErrBadChunkSize, n)
	}
	w.chunkSize = n
	return nil
}

// HeaderSpace is how many header bytes AppendHeaders needs at most for a
// payload of n bytes.
func (w *Writer) HeaderSpace(n int) int {
	chunks := 1
	if n > 0 {
		chunks = (n + int(w.chunkSize) - 1) / int(w.chunkSize)
	}
	return maxHeader + (chunks-1)*(3+4)
}

// Append frames m into dst, copying the payload. Use it for small messages
// (commands, control); media goes through Buffers to avoid the copy.
func (w *Writer) Append(dst []byte, m *Message) []byte {
	dst = w.appendHeader(dst, m, 0)
	p := m.Payload
	first := true
	for first || len(p) > 0 {
		if !first {
			dst = w.appendHeader(dst, m, 3)
		}
		first = false
		n := min(len(p), int(w.chunkSize))
		dst = append(dst, p[:n]...)
		p = p[n:]
	}
	return dst
}

// Buffers frames m as a list of slices for a vectored write: chunk headers
// are appended to scratch, payload slices are m.Payload itself. It returns
// the extended buffers and scratch; scratch must have capacity for
// HeaderSpace(len(m.Payload)) more bytes, or the earlier header slices would
// be left pointing at a stale array.
func (w *Writer) Buffers(bufs [][]byte, scratch []byte, m *Message) ([][]byte, []byte) {
	p := m.Payload
	first := true
	for first || len(p) > 0 {
		start := len(scratch)
		if first {
			scratch = w.appendHeader(scratch, m, 0)
		} else {
			scratch = w.appendHeader(scratch, m, 3)
		}
		first = false
		bufs = append(bufs, scratch[start:len(scratch):len(scratch)])
		n := min(len(p), int(w.chunkSize))
		if n > 0 {
			bufs = append(bufs, p[:n:n])
		}
		p = p[n:]
	}
	return bufs, scratch
}

func (w *Writer) appendHeader(dst []byte, m *Message, format uint8) []byte {
	switch {
	case m.CSID < 64:
		dst = append(dst, format<<6|uint8(m.CSID))
	case m.CSID < 64+256:
		dst = append(dst, format<<6, uint8(m.CSID-64))
	default:
		dst = append(dst, format<<6|1, uint8(m.CSID-64), uint8((m.CSID-64)>>8))
	}
	extended := m.Timestamp >= 0xFFFFFF
	if format == 0 {
		ts := min(m.Timestamp, 0xFFFFFF)
		n := uint32(len(m.Payload))
		dst = append(dst, byte(ts>>16), byte(ts>>8), byte(ts), byte(n>>16), byte(n>>8), byte(n), m.TypeID)
		dst = binary.LittleEndian.AppendUint32(dst, m.StreamID)
	}
	if extended {
		// Format-3 continuation chunks repeat the extended timestamp: ffmpeg
		// and the spec read it there.
		dst = binary.BigEndian.AppendUint32(dst, m.Timestamp)
	}
	return dst
}
