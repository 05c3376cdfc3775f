package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/mediad/mediad/state"
)

type writerCase struct {
	name      string
	chunkSize uint32
	m         Message
	want      []byte
}

var writerCases = []writerCase{
	{
		name:      "one chunk",
		chunkSize: 128,
		m:         msg(3, 1000, 20, 0, []byte("abc")),
		want:      []byte{0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x14, 0x00, 0x00, 0x00, 0x00, 'a', 'b', 'c'},
	},
	{
		name:      "format 3 continuations",
		chunkSize: 4,
		m:         msg(4, 0x123456, 9, 0x01020304, seq(0, 10)),
		want: cat(
			[]byte{0x04, 0x12, 0x34, 0x56, 0x00, 0x00, 0x0A, 0x09, 0x04, 0x03, 0x02, 0x01}, seq(0, 4),
			[]byte{0xC4}, seq(4, 4),
			[]byte{0xC4}, seq(8, 2),
		),
	},
	{
		name:      "default chunk size",
		chunkSize: 128,
		m:         msg(6, 0, 9, 1, seq(0, 200)),
		want: cat(
			[]byte{0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC8, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 128),
			[]byte{0xC6}, seq(128, 72),
		),
	},
	{
		name:      "payload of exactly one chunk",
		chunkSize: 4,
		m:         msg(4, 0, 9, 1, seq(0, 4)),
		want:      cat([]byte{0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4)),
	},
	{
		name:      "empty payload",
		chunkSize: 4,
		m:         msg(5, 7, 18, 1, nil),
		want:      []byte{0x05, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x12, 0x01, 0x00, 0x00, 0x00},
	},
	{
		name:      "extended timestamp on every chunk",
		chunkSize: 4,
		m:         msg(4, 0x01020304, 9, 1, seq(0, 6)),
		want: cat(
			[]byte{0x04, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x06, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04}, seq(0, 4),
			[]byte{0xC4, 0x01, 0x02, 0x03, 0x04}, seq(4, 2),
		),
	},
	{
		name:      "timestamp 0xFFFFFF is extended",
		chunkSize: 128,
		m:         msg(4, 0xFFFFFF, 9, 1, []byte("a")),
		want:      []byte{0x04, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 'a'},
	},
	{
		name:      "timestamp 0xFFFFFE is not",
		chunkSize: 128,
		m:         msg(4, 0xFFFFFE, 9, 1, []byte("a")),
		want:      []byte{0x04, 0xFF, 0xFF, 0xFE, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 'a'},
	},
	{
		name:      "csid 63 in one byte",
		chunkSize: 4,
		m:         msg(63, 0, 8, 1, seq(0, 6)),
		want: cat(
			[]byte{0x3F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0xFF}, seq(4, 2),
		),
	},
	{
		name:      "csid 64 in two bytes",
		chunkSize: 4,
		m:         msg(64, 0, 8, 1, seq(0, 6)),
		want: cat(
			[]byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0xC0, 0x00}, seq(4, 2),
		),
	},
	{
		name:      "csid 319 in two bytes",
		chunkSize: 4,
		m:         msg(319, 0, 8, 1, seq(0, 6)),
		want: cat(
			[]byte{0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0xC0, 0xFF}, seq(4, 2),
		),
	},
	{
		name:      "csid 320 in three bytes",
		chunkSize: 4,
		m:         msg(320, 0, 8, 1, seq(0, 6)),
		want: cat(
			[]byte{0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0xC1, 0x00, 0x01}, seq(4, 2),
		),
	},
	{
		name:      "csid 65599 in three bytes, extended",
		chunkSize: 4,
		m:         msg(65599, 0xFFFFFFFF, 8, 1, seq(0, 6)),
		want: cat(
			[]byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF}, seq(0, 4),
			[]byte{0xC1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, seq(4, 2),
		),
	},
}

func newWriterAt(t testing.TB, size uint32) *Writer {
	t.Helper()
	w := NewWriter()
	if err := w.SetChunkSize(size); err != nil {
		t.Fatal(err)
	}
	return w
}

func buffersBytes(w *Writer, m *Message) ([][]byte, []byte) {
	scratch := make([]byte, 0, w.HeaderSpace(len(m.Payload)))
	bufs, _ := w.Buffers(nil, scratch, m)
	return bufs, bytes.Join(bufs, nil)
}

func TestWriterAppend(t *testing.T) {
	for _, tc := range writerCases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriterAt(t, tc.chunkSize)
			if got := w.Append(nil, &tc.m); !bytes.Equal(got, tc.want) {
				t.Fatalf("Append\n got  % x\n want % x", got, tc.want)
			}
			prefix := []byte("prefix")
			if got := w.Append(prefix, &tc.m); !bytes.Equal(got, cat(prefix, tc.want)) {
				t.Fatalf("Append after a prefix\n got  % x\n want % x", got, cat(prefix, tc.want))
			}
			if space, headers := w.HeaderSpace(len(tc.m.Payload)), len(tc.want)-len(tc.m.Payload); headers > space {
				t.Fatalf("HeaderSpace %d, headers take %d", space, headers)
			}
		})
	}
}

func TestWriterBuffers(t *testing.T) {
	for _, tc := range writerCases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriterAt(t, tc.chunkSize)
			bufs, got := buffersBytes(w, &tc.m)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("Buffers\n got  % x\n want % x", got, tc.want)
			}
			// Payload goes out in place, and no slice can be appended to
			// over its neighbour.
			off := 0
			for _, b := range bufs {
				if cap(b) != len(b) {
					t.Errorf("slice of len %d has cap %d", len(b), cap(b))
				}
				if off < len(tc.m.Payload) && len(b) > 0 && &b[0] == &tc.m.Payload[off] {
					off += len(b)
				}
			}
			if off != len(tc.m.Payload) {
				t.Errorf("%d of %d payload bytes sent in place", off, len(tc.m.Payload))
			}
		})
	}
}

// TestWriterVectorsRead reads each writer vector back.
func TestWriterVectorsRead(t *testing.T) {
	for _, tc := range writerCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Restore(state.ChunkReader{ChunkSize: tc.chunkSize})
			if err != nil {
				t.Fatal(err)
			}
			got, err := feedPieces(r, tc.want, whole)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffMessages(got, []Message{tc.m}); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestWriterChunkSize(t *testing.T) {
	w := NewWriter()
	if w.ChunkSize() != DefaultChunkSize {
		t.Fatalf("initial chunk size %d", w.ChunkSize())
	}
	for _, n := range []uint32{0, 0x80000000, 0xFFFFFFFF} {
		if err := w.SetChunkSize(n); !errors.Is(err, ErrBadChunkSize) {
			t.Errorf("SetChunkSize(%#x): %v, want %v", n, err, ErrBadChunkSize)
		}
		if _, err := RestoreWriter(state.ChunkWriter{ChunkSize: n}); !errors.Is(err, ErrBadChunkSize) {
			t.Errorf("RestoreWriter(%#x): %v, want %v", n, err, ErrBadChunkSize)
		}
	}
	if w.ChunkSize() != DefaultChunkSize {
		t.Fatalf("chunk size %d after refused changes", w.ChunkSize())
	}
	if err := w.SetChunkSize(0x7FFFFFFF); err != nil {
		t.Fatal(err)
	}
	w2, err := RestoreWriter(w.State())
	if err != nil || w2.ChunkSize() != 0x7FFFFFFF {
		t.Fatalf("restored writer: %v, chunk size %d", err, w2.ChunkSize())
	}
}

// TestWriterReaderRandom: whatever the writer frames, at whatever chunk
// sizes, the reader reads back.
func TestWriterReaderRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := []uint32{1, 2, 3, 7, 60, 128, 129, 4096, 65536, 0x7FFFFFFF}
	for iter := range 40 {
		w := NewWriter()
		var out []byte
		var want []Message
		for range 60 {
			var m Message
			if rng.IntN(8) == 0 {
				// Announce a new size at the old one, then switch.
				size := sizes[rng.IntN(len(sizes))]
				if rng.IntN(2) == 0 {
					size = 1 + rng.Uint32N(10000)
				}
				m = msg(2, 0, TypeSetChunkSize, 0, binary.BigEndian.AppendUint32(nil, size))
				out = w.Append(out, &m)
				if err := w.SetChunkSize(size); err != nil {
					t.Fatal(err)
				}
			} else {
				m = randomMessage(rng, int(min(w.ChunkSize(), 3000)))
				if rng.IntN(2) == 0 {
					out = w.Append(out, &m)
				} else {
					_, b := buffersBytes(w, &m)
					out = append(out, b...)
				}
			}
			want = append(want, m)
		}
		r := NewReader(0)
		got, err := feedPieces(r, out, randomSizes(rng, 1+rng.IntN(5000)))
		if err != nil {
			t.Fatalf("stream %d: %v", iter, err)
		}
		if d := diffMessages(got, want); d != "" {
			t.Fatalf("stream %d: %s", iter, d)
		}
		if r.ChunkSize() != w.ChunkSize() {
			t.Fatalf("stream %d: reader chunk size %d, writer %d", iter, r.ChunkSize(), w.ChunkSize())
		}
	}
}

// randomMessage draws csids from all three basic header forms, timestamps on
// both sides of 0xFFFFFF, and payloads up to a few chunks of size unit.
func randomMessage(rng *rand.Rand, unit int) Message {
	var m Message
	switch rng.IntN(3) {
	case 0:
		m.CSID = 3 + rng.Uint32N(61)
	case 1:
		m.CSID = 64 + rng.Uint32N(256)
	default:
		m.CSID = 320 + rng.Uint32N(65600-320)
	}
	switch rng.IntN(3) {
	case 0:
		m.Timestamp = rng.Uint32N(0x1000000)
	case 1:
		m.Timestamp = 0xFFFFF0 + rng.Uint32N(0x20)
	default:
		m.Timestamp = rng.Uint32()
	}
	// Any type but the two control messages the reader acts on.
	m.TypeID = uint8(3 + rng.IntN(253))
	m.StreamID = rng.Uint32()
	n := rng.IntN(3*unit + 2)
	if rng.IntN(10) == 0 {
		n = 0
	}
	m.Payload = make([]byte, n)
	for i := range m.Payload {
		m.Payload[i] = byte(rng.Uint32())
	}
	return m
}

func TestWriterBuffersAllocs(t *testing.T) {
	w := newWriterAt(t, 4096)
	video := msg(6, 0x01000000, TypeVideo, 1, make([]byte, 9000))
	audio := msg(4, 0x01000000, TypeAudio, 1, make([]byte, 200))
	bufs := make([][]byte, 0, 16)
	scratch := make([]byte, 0, w.HeaderSpace(9000)+w.HeaderSpace(200))
	allocs := testing.AllocsPerRun(10, func() {
		b, s := w.Buffers(bufs[:0], scratch[:0], &video)
		w.Buffers(b, s, &audio)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}

func TestAckDue(t *testing.T) {
	for _, tc := range []struct {
		read, last uint64
		window     uint32
		due        bool
		seq        uint32
	}{
		{read: 1000, window: 0},
		{read: 2_499_999, window: 2_500_000},
		{read: 2_500_000, window: 2_500_000, due: true, seq: 2_500_000},
		{read: 5_000_001, last: 2_500_000, window: 2_500_000, due: true, seq: 5_000_001},
		{read: 1<<32 + 7, last: 1<<32 - 10, window: 10, due: true, seq: 7}, // the sequence number wraps
	} {
		p, due := AckDue(tc.read, tc.last, tc.window)
		if due != tc.due || due && binary.BigEndian.Uint32(p[:]) != tc.seq {
			t.Errorf("AckDue(%d, %d, %d) = %v, %d; want %v, %d", tc.read, tc.last, tc.window, due, binary.BigEndian.Uint32(p[:]), tc.due, tc.seq)
		}
	}
}
