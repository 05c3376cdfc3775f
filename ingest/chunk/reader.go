package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/mediad/mediad/state"
)

// DefaultChunkSize is the chunk size both directions start with (RTMP §5.4.1).
const DefaultChunkSize = 128

// DefaultMaxMessageSize bounds one message's length unless configured.
const DefaultMaxMessageSize = 16 << 20

// maxChunkSize is the largest chunk size the protocol can express: Set Chunk
// Size carries 31 bits.
const maxChunkSize = 0x7FFFFFFF

// maxHeader is the longest chunk header: 3-byte basic header, 11-byte message
// header, 4-byte extended timestamp.
const maxHeader = 18

// initialPartial is the most a message's buffer reserves before its bytes
// arrive; larger messages grow as they come.
const initialPartial = 64 << 10

// maxInflightMessages bounds the bytes of incomplete messages across all
// chunk streams of a connection, in units of the message size limit. Real
// clients interleave two or three streams.
const maxInflightMessages = 2

// maxStreams bounds the chunk streams one peer may open, so a client cycling
// through csids cannot grow the reader without limit.
const maxStreams = 256

// Errors a caller may want to tell apart. Each is wrapped with detail.
var (
	ErrNoPreviousHeader = errors.New("compressed header on a chunk stream with no previous header")
	ErrMessageTooLarge  = errors.New("message length above limit")
	ErrBadChunkSize     = errors.New("invalid chunk size")
	ErrTooManyStreams   = errors.New("too many chunk streams")
	ErrInterleaved      = errors.New("new message header while a message is incomplete")
	ErrTooMuchInflight  = errors.New("too much incomplete message data")
)

// Message is one complete RTMP message.
type Message struct {
	CSID      uint32
	Timestamp uint32
	TypeID    uint8
	StreamID  uint32
	Payload   []byte
}

// Reader turns an inbound byte stream into messages. It is push-driven: the
// caller feeds whatever the socket returned, so the reader's whole state —
// including half a chunk header — is plain data that State exports at any
// byte offset.
//
// The reader applies Set Chunk Size and Abort itself because they change how
// the following bytes parse; it still passes them on to the caller.
type Reader struct {
	chunkSize uint32
	maxMsg    uint32
	streams   []*stream
	header    [maxHeader]byte
	nheader   int
	body      *stream // chunk whose body is being read, nil between chunks
	bodyLeft  uint32
	bytesRead uint64
	inflight  uint64 // bytes held in incomplete messages
	msg       Message
	// last and prev are the chunk streams looked up last and the one
	// before, which lookup tries first.
	last, prev *stream
}

type stream struct {
	state.ChunkStream
}

// NewReader returns a reader at the start of a chunk stream. maxMessageSize
// 0 means DefaultMaxMessageSize.
func NewReader(maxMessageSize uint32) *Reader {
	if maxMessageSize == 0 {
		maxMessageSize = DefaultMaxMessageSize
	}
	return &Reader{chunkSize: DefaultChunkSize, maxMsg: maxMessageSize}
}

// ChunkSize is the peer's current chunk size.
func (r *Reader) ChunkSize() uint32 { return r.chunkSize }

// BytesRead counts every byte fed so far, for acknowledgements.
func (r *Reader) BytesRead() uint64 { return r.bytesRead }

// Feed parses p and calls fn for every message completed. The *Message is
// reused after fn returns; its Payload is the caller's to keep. Feed stops at
// the first error, from the stream or from fn; the reader must then be
// discarded, since the bytes after a protocol error cannot be trusted.
func (r *Reader) Feed(p []byte, fn func(*Message) error) error {
	// A zero-length message has a header and no body: bodyLeft is 0 and it
	// completes without consuming input.
	for len(p) > 0 || r.body != nil && r.bodyLeft == 0 {
		if r.body != nil {
			n := min(uint32(len(p)), r.bodyLeft)
			s := r.body
			if r.inflight+uint64(n) > uint64(r.maxMsg)*maxInflightMessages {
				return fmt.Errorf("chunk stream %d: %w: %d bytes of incomplete messages", s.CSID, ErrTooMuchInflight, r.inflight+uint64(n))
			}
			if s.Partial == nil && n == s.Length {
				// The whole message at once, as most media messages come:
				// one allocation of its size, not cleared before the copy.
				s.Partial = append([]byte(nil), p[:n]...)
			} else {
				if s.Partial == nil {
					// Memory follows the bytes that arrive, not the length
					// a peer declares: a few kilobytes of headers must not
					// reserve gigabytes.
					s.Partial = make([]byte, 0, min(s.Length, initialPartial))
				}
				s.Partial = append(s.Partial, p[:n]...)
			}
			r.inflight += uint64(n)
			p = p[n:]
			r.bytesRead += uint64(n)
			r.bodyLeft -= n
			if r.bodyLeft > 0 {
				return nil
			}
			r.body = nil
			if uint32(len(s.Partial)) == s.Length {
				if err := r.complete(s, fn); err != nil {
					return err
				}
			}
			continue
		}
		if r.nheader == 0 {
			n, err := r.header1(p)
			if err != nil {
				return err
			}
			if n == 0 {
				// Header incomplete: keep what we have for the next feed.
				r.nheader = copy(r.header[:], p)
				r.bytesRead += uint64(len(p))
				return nil
			}
			r.bytesRead += uint64(n)
			p = p[n:]
			continue
		}
		// Complete a header that straddled two feeds one byte at a time: it
		// is at most 18 bytes and this path is rare.
		for len(p) > 0 {
			r.header[r.nheader] = p[0]
			r.nheader++
			p = p[1:]
			r.bytesRead++
			n, err := r.header1(r.header[:r.nheader])
			if err != nil {
				return err
			}
			if n > 0 {
				r.nheader = 0
				break
			}
		}
	}
	return nil
}

// header1 parses one chunk header at the start of b and applies it. It
// returns 0, nil when b holds only part of a header.
func (r *Reader) header1(b []byte) (int, error) {
	if len(b) < 1 {
		return 0, nil
	}
	format := b[0] >> 6
	csid := uint32(b[0] & 0x3F)
	n := 1
	switch csid {
	case 0:
		if len(b) < 2 {
			return 0, nil
		}
		csid = 64 + uint32(b[1])
		n = 2
	case 1:
		if len(b) < 3 {
			return 0, nil
		}
		csid = 64 + uint32(b[1]) + uint32(b[2])<<8
		n = 3
	}
	s := r.lookup(csid)
	if s == nil && format != 0 {
		return 0, fmt.Errorf("chunk stream %d, format %d: %w", csid, format, ErrNoPreviousHeader)
	}
	mh := [4]int{11, 7, 3, 0}[format]
	if len(b) < n+mh {
		return 0, nil
	}
	h := b[n : n+mh]
	n += mh
	var field uint32
	if format < 3 {
		field = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	}
	extended := field == 0xFFFFFF || (format == 3 && s.Extended)
	var ext uint32
	if extended {
		if len(b) < n+4 {
			return 0, nil
		}
		ext = binary.BigEndian.Uint32(b[n:])
		n += 4
	}
	// The header is complete: from here on it is applied.
	if s == nil {
		if len(r.streams) >= maxStreams {
			return 0, fmt.Errorf("chunk stream %d: %w (%d)", csid, ErrTooManyStreams, maxStreams)
		}
		s = &stream{}
		s.CSID = csid
		r.streams = append(r.streams, s)
	}
	if format < 3 && s.Active {
		return 0, fmt.Errorf("chunk stream %d: %w (%d of %d bytes)", csid, ErrInterleaved, len(s.Partial), s.Length)
	}
	if format < 3 {
		value := field
		if field == 0xFFFFFF {
			value = ext
		}
		s.Extended = field == 0xFFFFFF
		s.Delta = value
		if format == 0 {
			s.Timestamp = value
			s.Length = uint32(h[3])<<16 | uint32(h[4])<<8 | uint32(h[5])
			s.TypeID = h[6]
			s.StreamID = binary.LittleEndian.Uint32(h[7:11])
		} else {
			s.Timestamp += value // wraps mod 2^32 as RTMP timestamps do
			if format == 1 {
				s.Length = uint32(h[3])<<16 | uint32(h[4])<<8 | uint32(h[5])
				s.TypeID = h[6]
			}
		}
	} else if !s.Active {
		// Format 3 opening a new message repeats the previous delta; when
		// the previous header was extended the extended field restates it.
		if s.Extended {
			s.Delta = ext
		}
		s.Timestamp += s.Delta
	}
	if !s.Active {
		if s.Length > r.maxMsg {
			return 0, fmt.Errorf("chunk stream %d: %w: %d > %d", csid, ErrMessageTooLarge, s.Length, r.maxMsg)
		}
		s.Active = true
		// The payload's buffer is allocated when its first bytes come
		// (Feed).
		s.Partial = nil
	}
	r.body = s
	r.bodyLeft = min(s.Length-uint32(len(s.Partial)), r.chunkSize)
	return n, nil
}

// complete hands a finished message out after applying protocol control.
func (r *Reader) complete(s *stream, fn func(*Message) error) error {
	s.Active = false
	payload := s.Partial
	if payload == nil {
		payload = []byte{} // a zero-length message: a payload all the same
	}
	r.msg = Message{CSID: s.CSID, Timestamp: s.Timestamp, TypeID: s.TypeID, StreamID: s.StreamID, Payload: payload}
	r.inflight -= uint64(len(s.Partial))
	s.Partial = nil
	if err := r.control(&r.msg); err != nil {
		return err
	}
	return fn(&r.msg)
}

// control applies the two messages that change how later bytes parse.
func (r *Reader) control(m *Message) error {
	// The spec puts protocol control on chunk stream 2, message stream 0;
	// the type id alone decides here, as it does for ffmpeg and librtmp.
	switch m.TypeID {
	case TypeSetChunkSize:
		if len(m.Payload) < 4 {
			return fmt.Errorf("set chunk size: %w: %d-byte payload", ErrBadChunkSize, len(m.Payload))
		}
		size := binary.BigEndian.Uint32(m.Payload)
		if size == 0 || size > maxChunkSize {
			return fmt.Errorf("set chunk size: %w: %#x", ErrBadChunkSize, size)
		}
		r.chunkSize = size
	case TypeAbort:
		if len(m.Payload) < 4 {
			return fmt.Errorf("abort: %d-byte payload", len(m.Payload))
		}
		if s := r.lookup(binary.BigEndian.Uint32(m.Payload)); s != nil && s.Active && s != r.body {
			s.Active = false
			r.inflight -= uint64(len(s.Partial))
			s.Partial = nil
		}
	}
	return nil
}

func (r *Reader) lookup(csid uint32) *stream {
	// Audio and video alternate on two chunk streams: the one used last
	// but one is the likeliest, then the last.
	if s := r.prev; s != nil && s.CSID == csid {
		r.prev, r.last = r.last, s
		return s
	}
	if s := r.last; s != nil && s.CSID == csid {
		return s
	}
	for _, s := range r.streams {
		if s.CSID == csid {
			r.prev, r.last = r.last, s
			return s
		}
	}
	return nil
}

// State exports the reader at the current byte offset. The result shares no
// memory with the reader.
func (r *Reader) State() state.ChunkReader {
	st := state.ChunkReader{
		ChunkSize:      r.chunkSize,
		MaxMessageSize: r.maxMsg,
		Header:         slices.Clone(r.header[:r.nheader]),
		BytesRead:      r.bytesRead,
	}
	if r.body != nil {
		st.BodyCSID = r.body.CSID
		st.BodyLeft = r.bodyLeft
	}
	st.Streams = make([]state.ChunkStream, len(r.streams))
	for i, s := range r.streams {
		st.Streams[i] = s.ChunkStream
		st.Streams[i].Partial = slices.Clone(s.Partial)
		if s.Active && s.Partial == nil {
			// A message whose first bytes have not come exports as it
			// did when its buffer was allocated with its header.
			st.Streams[i].Partial = []byte{}
		}
	}
	return st
}

// Restore builds a reader from exported state, checking it for consistency
// since it may come from another build.
func Restore(st state.ChunkReader) (*Reader, error) {
	if st.ChunkSize == 0 || st.ChunkSize > maxChunkSize {
		return nil, fmt.Errorf("restore chunk reader: %w: %d", ErrBadChunkSize, st.ChunkSize)
	}
	if len(st.Header) >= maxHeader {
		return nil, fmt.Errorf("restore chunk reader: %d pending header bytes", len(st.Header))
	}
	if len(st.Streams) > maxStreams {
		return nil, fmt.Errorf("restore chunk reader: %w (%d)", ErrTooManyStreams, len(st.Streams))
	}
	r := NewReader(st.MaxMessageSize)
	r.chunkSize = st.ChunkSize
	r.nheader = copy(r.header[:], st.Header)
	r.bytesRead = st.BytesRead
	for _, cs := range st.Streams {
		if r.lookup(cs.CSID) != nil {
			return nil, fmt.Errorf("restore chunk reader: chunk stream %d listed twice", cs.CSID)
		}
		s := &stream{ChunkStream: cs}
		if cs.Active {
			if uint32(len(cs.Partial)) >= cs.Length || cs.Length > r.maxMsg {
				return nil, fmt.Errorf("restore chunk reader: chunk stream %d holds %d of %d bytes", cs.CSID, len(cs.Partial), cs.Length)
			}
			s.Partial = make([]byte, len(cs.Partial), max(uint32(len(cs.Partial)), min(cs.Length, initialPartial)))
			copy(s.Partial, cs.Partial)
			r.inflight += uint64(len(cs.Partial))
		} else {
			s.Partial = nil
		}
		r.streams = append(r.streams, s)
	}
	if st.BodyLeft > 0 {
		s := r.lookup(st.BodyCSID)
		if s == nil || !s.Active || st.BodyLeft > s.Length-uint32(len(s.Partial)) || st.BodyLeft > st.ChunkSize {
			return nil, fmt.Errorf("restore chunk reader: chunk body of %d bytes on chunk stream %d does not fit", st.BodyLeft, st.BodyCSID)
		}
		r.body = s
		r.bodyLeft = st.BodyLeft
	}
	if r.nheader > 0 {
		// Feed completes a pending header byte by byte and takes it as done
		// only when the last byte arrives; a header that is already complete,
		// or one next to an unread body, would make it misplace bytes.
		if r.body != nil {
			return nil, fmt.Errorf("restore chunk reader: %d pending header bytes while a chunk body is unread", r.nheader)
		}
		n, err := r.header1(r.header[:r.nheader])
		if err != nil {
			return nil, fmt.Errorf("restore chunk reader: pending header: %w", err)
		}
		if n > 0 {
			return nil, fmt.Errorf("restore chunk reader: pending header of %d bytes is complete", r.nheader)
		}
	}
	return r, nil
}
