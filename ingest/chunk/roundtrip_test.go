package chunk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/mediad/mediad/state"
)

// fullRoundTrip is the stream length up to which checkRoundTrip reads to the
// end from every offset.
const fullRoundTrip = 32 << 10

// checkRoundTrip hands the reader over at every byte offset i of stream: the
// state after stream[:i], sent through msgpack, is restored into a fresh
// reader that reads stream[i:]. The messages of both halves must be exactly
// those of one uninterrupted read. The stream must read without error; it may
// end inside a message.
//
// Reading to the end from every offset is quadratic, so beyond fullRoundTrip
// bytes (a capture) the restored reader reads up to the next offset where the
// uninterrupted reader is idle — no message, header or body in flight — and
// must hold that reader's exact state there, from which equal bytes give
// equal messages; about 256 evenly spread offsets still read to the end.
func checkRoundTrip(t testing.TB, stream []byte, maxMsg uint32) {
	t.Helper()
	want, err := feedPieces(NewReader(maxMsg), stream, whole)
	if err != nil {
		t.Fatalf("uninterrupted read: %v", err)
	}
	n := len(stream)

	// A reference pass, one byte at a time, notes at which offset each
	// message is delivered, and the reader's state wherever it is idle.
	ref := NewReader(maxMsg)
	var refMsgs []Message
	doneAt := make([]int, 0, len(want))
	idleState := map[int]state.ChunkReader{0: normalState(ref.State())}
	for i := 1; i <= n; i++ {
		err := ref.Feed(stream[i-1:i], func(m *Message) error {
			refMsgs = append(refMsgs, *m)
			doneAt = append(doneAt, i)
			return nil
		})
		if err != nil {
			t.Fatalf("read byte by byte: offset %d: %v", i-1, err)
		}
		if idle(ref) {
			idleState[i] = normalState(ref.State())
		}
	}
	if d := diffMessages(refMsgs, want); d != "" {
		t.Fatalf("read byte by byte: %s", d)
	}
	finalState := normalState(ref.State())
	nextIdle := make([]int, n+1)
	nextIdle[n] = n
	for i := n - 1; i >= 0; i-- {
		nextIdle[i] = nextIdle[i+1]
		if _, ok := idleState[i+1]; ok {
			nextIdle[i] = i + 1
		}
	}
	fullEvery := 1
	if n > fullRoundTrip {
		fullEvery = n / 256
	}
	deliveredBy := func(off int) int { return sort.SearchInts(doneAt, off+1) }

	a := NewReader(maxMsg)
	delivered := 0
	for i := 0; i <= n; i++ {
		if i > 0 {
			err := a.Feed(stream[i-1:i], func(*Message) error {
				delivered++
				return nil
			})
			if err != nil {
				t.Fatalf("offset %d: %v", i-1, err)
			}
		}
		if delivered != deliveredBy(i) {
			t.Fatalf("offset %d: %d messages delivered, want %d", i, delivered, deliveredBy(i))
		}
		st := a.State()
		sent := viaMsgpack(t, st)
		if !reflect.DeepEqual(normalState(sent), normalState(st)) {
			t.Fatalf("offset %d: state changed through msgpack:\n got  %+v\n want %+v", i, sent, st)
		}
		b, err := Restore(sent)
		if err != nil {
			t.Fatalf("offset %d: restore: %v", i, err)
		}
		end := n
		if i%fullEvery != 0 {
			end = nextIdle[i]
		}
		got, err := feedPieces(b, stream[i:end], whole)
		if err != nil {
			t.Fatalf("offset %d: read restored: %v", i, err)
		}
		if d := diffMessages(got, want[delivered:deliveredBy(end)]); d != "" {
			t.Fatalf("offset %d: after restore: %s", i, d)
		}
		if b.BytesRead() != uint64(end) {
			t.Fatalf("offset %d: restored reader counts %d bytes read at offset %d", i, b.BytesRead(), end)
		}
		wantState := finalState
		if end < n {
			wantState = idleState[end]
		}
		if gotState := normalState(b.State()); !reflect.DeepEqual(gotState, wantState) {
			t.Fatalf("offset %d: restored reader at offset %d:\n got  %+v\n want %+v", i, end, gotState, wantState)
		}
	}
}

// idle tells whether r is between messages on every chunk stream.
func idle(r *Reader) bool {
	if r.body != nil || r.nheader > 0 {
		return false
	}
	for _, s := range r.streams {
		if s.Active {
			return false
		}
	}
	return true
}

// syntheticStream exercises every header format, chunk size changes, an
// abort, extended timestamps, the 32-bit wrap, zero-length messages and
// interleaving; want is what it carries.
func syntheticStream() (stream []byte, want []Message) {
	sb := newStreamBuilder()
	add := func(m ...Message) { want = append(want, m...) }

	// A command over two chunks of the default size.
	sb.message(chunkHdr{fmt: 0, csid: 3, length: 150, typeID: TypeCommandAMF0}, seq(0, 150))
	add(msg(3, 0, TypeCommandAMF0, 0, seq(0, 150)))

	add(sb.setChunkSize(16))

	// Video and audio interleaved chunk by chunk.
	v1, a1 := seq(50, 40), seq(90, 20)
	sb.chunk(chunkHdr{fmt: 0, csid: 6, length: 40, typeID: TypeVideo, msid: 1}, v1[:16])
	sb.chunk(chunkHdr{fmt: 0, csid: 4, length: 20, typeID: TypeAudio, msid: 1}, a1[:16])
	sb.chunk(chunkHdr{fmt: 3, csid: 6}, v1[16:32])
	sb.chunk(chunkHdr{fmt: 3, csid: 4}, a1[16:])
	sb.chunk(chunkHdr{fmt: 3, csid: 6}, v1[32:])
	add(msg(4, 0, TypeAudio, 1, a1), msg(6, 0, TypeVideo, 1, v1))

	// Format 2 and format 1 deltas, interleaved.
	a2, v2 := seq(110, 20), seq(130, 30)
	sb.chunk(chunkHdr{fmt: 2, csid: 4, ts: 23}, a2[:16])
	sb.chunk(chunkHdr{fmt: 1, csid: 6, ts: 33, length: 30, typeID: TypeVideo}, v2[:16])
	sb.chunk(chunkHdr{fmt: 3, csid: 4}, a2[16:])
	sb.chunk(chunkHdr{fmt: 3, csid: 6}, v2[16:])
	add(msg(4, 23, TypeAudio, 1, a2), msg(6, 33, TypeVideo, 1, v2))

	// Format 3 opening a message repeats the delta.
	sb.message(chunkHdr{fmt: 3, csid: 4}, seq(160, 20))
	add(msg(4, 46, TypeAudio, 1, seq(160, 20)))

	// A video message aborted after its first chunk.
	sb.chunk(chunkHdr{fmt: 1, csid: 6, ts: 33, length: 50, typeID: TypeVideo}, seq(200, 16))
	sb.chunk(chunkHdr{fmt: 1, csid: 2, length: 4, typeID: TypeAbort}, []byte{0, 0, 0, 6})
	add(msg(2, 0, TypeAbort, 0, []byte{0, 0, 0, 6}))
	sb.message(chunkHdr{fmt: 0, csid: 6, ts: 0xFFFFF0, length: 10, typeID: TypeVideo, msid: 1}, seq(210, 10))
	add(msg(6, 0xFFFFF0, TypeVideo, 1, seq(210, 10)))

	// Past 0xFFFFFF by a small delta.
	sb.message(chunkHdr{fmt: 2, csid: 6, ts: 0x20}, seq(220, 10))
	add(msg(6, 0x1000010, TypeVideo, 1, seq(220, 10)))

	// Extended timestamps: absolute, restated by format 3, as a delta, then
	// given up again.
	sb.message(chunkHdr{fmt: 0, csid: 6, ts: 0x01000000, length: 40, typeID: TypeVideo, msid: 1}, seq(0, 40))
	sb.message(chunkHdr{fmt: 3, csid: 6, ts: 0x01000000, ext: true}, seq(40, 40))
	sb.message(chunkHdr{fmt: 2, csid: 6, ts: 0xFFFFFF}, seq(80, 40))
	sb.message(chunkHdr{fmt: 2, csid: 6, ts: 10}, seq(120, 40))
	sb.message(chunkHdr{fmt: 3, csid: 6}, seq(160, 40))
	add(
		msg(6, 0x01000000, TypeVideo, 1, seq(0, 40)),
		msg(6, 0x02000000, TypeVideo, 1, seq(40, 40)),
		msg(6, 0x02FFFFFF, TypeVideo, 1, seq(80, 40)),
		msg(6, 0x03000009, TypeVideo, 1, seq(120, 40)),
		msg(6, 0x03000013, TypeVideo, 1, seq(160, 40)),
	)

	// The 32-bit wrap.
	sb.message(chunkHdr{fmt: 0, csid: 8, ts: 0xFFFFFFF0, length: 5, typeID: TypeDataAMF0, msid: 1}, seq(0, 5))
	sb.message(chunkHdr{fmt: 2, csid: 8, ts: 0x20}, seq(5, 5))
	sb.message(chunkHdr{fmt: 3, csid: 8}, seq(10, 5))
	add(
		msg(8, 0xFFFFFFF0, TypeDataAMF0, 1, seq(0, 5)),
		msg(8, 0x10, TypeDataAMF0, 1, seq(5, 5)),
		msg(8, 0x30, TypeDataAMF0, 1, seq(10, 5)),
	)

	// Zero-length messages, one between two chunks of another message.
	sb.message(chunkHdr{fmt: 0, csid: 9, ts: 7, typeID: TypeDataAMF0, msid: 1}, nil)
	sb.message(chunkHdr{fmt: 3, csid: 9}, nil)
	sb.chunk(chunkHdr{fmt: 0, csid: 5, length: 30, typeID: TypeVideo, msid: 1}, seq(0, 16))
	sb.chunk(chunkHdr{fmt: 3, csid: 9}, nil)
	sb.chunk(chunkHdr{fmt: 3, csid: 5}, seq(16, 14))
	add(
		msg(9, 7, TypeDataAMF0, 1, nil),
		msg(9, 14, TypeDataAMF0, 1, nil),
		msg(9, 21, TypeDataAMF0, 1, nil),
		msg(5, 0, TypeVideo, 1, seq(0, 30)),
	)

	// A large chunk size; audio between the two chunks of a video message.
	add(sb.setChunkSize(4096))
	big := seq(7, 5000)
	sb.chunk(chunkHdr{fmt: 1, csid: 6, ts: 40, length: 5000, typeID: TypeVideo}, big[:4096])
	sb.chunk(chunkHdr{fmt: 1, csid: 4, ts: 23, length: 200, typeID: TypeAudio}, seq(1, 200))
	sb.chunk(chunkHdr{fmt: 3, csid: 6}, big[4096:])
	add(msg(4, 69, TypeAudio, 1, seq(1, 200)), msg(6, 0x0300003B, TypeVideo, 1, big))

	// Two- and three-byte chunk stream ids, one with extended timestamps,
	// interleaved.
	add(sb.setChunkSize(7))
	sb.message(chunkHdr{fmt: 0, csid: 100, ts: 5, length: 20, typeID: TypeCommandAMF0}, seq(0, 20))
	sb.message(chunkHdr{fmt: 0, csid: 1000, ts: 0x01000000, length: 15, typeID: TypeDataAMF0, msid: 2}, seq(20, 15))
	add(msg(100, 5, TypeCommandAMF0, 0, seq(0, 20)), msg(1000, 0x01000000, TypeDataAMF0, 2, seq(20, 15)))
	x, y := seq(40, 20), seq(60, 15)
	ext := chunkHdr{fmt: 3, csid: 1000, ts: 0x01000000, ext: true}
	sb.chunk(chunkHdr{fmt: 2, csid: 100, ts: 1}, x[:7])
	sb.chunk(ext, y[:7])
	sb.chunk(chunkHdr{fmt: 3, csid: 100}, x[7:14])
	sb.chunk(ext, y[7:14])
	sb.chunk(chunkHdr{fmt: 3, csid: 100}, x[14:])
	sb.chunk(ext, y[14:])
	add(msg(100, 6, TypeCommandAMF0, 0, x), msg(1000, 0x02000000, TypeDataAMF0, 2, y))

	// A last command over several small chunks.
	sb.message(chunkHdr{fmt: 1, csid: 3, length: 30, typeID: TypeCommandAMF0}, seq(0, 30))
	add(msg(3, 0, TypeCommandAMF0, 0, seq(0, 30)))
	return sb.b, want
}

func TestSyntheticStream(t *testing.T) {
	in, want := syntheticStream()
	got, err := feedPieces(NewReader(0), in, whole)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffMessages(got, want); d != "" {
		t.Fatal(d)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Run("synthetic", func(t *testing.T) {
		in, _ := syntheticStream()
		checkRoundTrip(t, in, 0)
	})
	t.Run("synthetic cut short", func(t *testing.T) {
		in, _ := syntheticStream()
		checkRoundTrip(t, in[:len(in)-100], 0)
	})
	t.Run("media", func(t *testing.T) {
		// Longer than fullRoundTrip: checks the windowed mode too.
		in, _ := mediaStream(1)
		checkRoundTrip(t, in[:min(len(in), fullRoundTrip+16<<10)], 0)
	})
	for _, tc := range readerCases {
		if tc.wantErr != nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { checkRoundTrip(t, tc.in, tc.maxMsg) })
	}
}

// midStream is a reader state with two messages in flight: 4 of 10 bytes on
// chunk stream 6, and on chunk stream 4, 2 of 6 bytes with 2 more due in the
// current chunk.
func midStream(t *testing.T) state.ChunkReader {
	t.Helper()
	in := cat(
		setChunk4,
		[]byte{0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
		[]byte{0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00}, seq(100, 2),
	)
	r := NewReader(0)
	if _, err := feedPieces(r, in, whole); err != nil {
		t.Fatal(err)
	}
	st := r.State()
	if len(st.Streams) != 3 || st.Streams[1].CSID != 6 || st.Streams[2].CSID != 4 || st.BodyCSID != 4 || st.BodyLeft != 2 {
		t.Fatalf("unexpected mid-stream state %+v", st)
	}
	return st
}

// midStreamRest completes both messages of midStream.
var midStreamRest = cat(seq(102, 2), []byte{0xC6}, seq(4, 4), []byte{0xC4}, seq(104, 2), []byte{0xC6}, seq(8, 2))

var midStreamWant = []Message{msg(4, 0, 8, 1, seq(100, 6)), msg(6, 0, 9, 1, seq(0, 10))}

func TestRestore(t *testing.T) {
	st := midStream(t)
	r, err := Restore(st)
	if err != nil {
		t.Fatal(err)
	}
	// The restored reader owns its memory: the state it came from may be
	// reused.
	for _, s := range st.Streams {
		for i := range s.Partial {
			s.Partial[i] = 0xEE
		}
	}
	got, err := feedPieces(r, midStreamRest, whole)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffMessages(got, midStreamWant); d != "" {
		t.Fatal(d)
	}
}

func TestStateOwned(t *testing.T) {
	r, err := Restore(midStream(t))
	if err != nil {
		t.Fatal(err)
	}
	st := r.State()
	before := normalState(viaMsgpack(t, st))
	// Payloads are the caller's to keep, and to write over.
	err = r.Feed(midStreamRest, func(m *Message) error {
		for i := range m.Payload {
			m.Payload[i] = 0xEE
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalState(st), before) {
		t.Fatalf("exported state changed as the reader went on:\n got  %+v\n want %+v", st, before)
	}
}

func TestRestoreRejects(t *testing.T) {
	noBody := func(st *state.ChunkReader) { st.BodyCSID, st.BodyLeft = 0, 0 }
	cases := []struct {
		name    string
		edit    func(*state.ChunkReader)
		wantErr error
	}{
		{"chunk size 0", func(st *state.ChunkReader) { st.ChunkSize = 0 }, ErrBadChunkSize},
		{"chunk size with the top bit set", func(st *state.ChunkReader) { st.ChunkSize = 0x80000000 }, ErrBadChunkSize},
		{"chunk stream listed twice", func(st *state.ChunkReader) { st.Streams = append(st.Streams, st.Streams[1]) }, errAny},
		{"body longer than the rest of its message", func(st *state.ChunkReader) { st.BodyLeft = 5 }, errAny},
		{"body longer than a chunk", func(st *state.ChunkReader) { st.ChunkSize = 1 }, errAny},
		{"body on an unknown chunk stream", func(st *state.ChunkReader) { st.BodyCSID = 9 }, errAny},
		{"body on an idle chunk stream", func(st *state.ChunkReader) { st.BodyCSID = 2 }, errAny},
		{"partial longer than its message", func(st *state.ChunkReader) { st.Streams[1].Partial = seq(0, 11) }, errAny},
		{"partial as long as its message", func(st *state.ChunkReader) { st.Streams[1].Partial = seq(0, 10) }, errAny},
		{"message above the limit", func(st *state.ChunkReader) { st.MaxMessageSize = 8 }, errAny},
		{"too many chunk streams", func(st *state.ChunkReader) {
			for csid := uint32(10); len(st.Streams) <= maxStreams; csid++ {
				st.Streams = append(st.Streams, state.ChunkStream{CSID: csid})
			}
		}, ErrTooManyStreams},
		{"pending header of 18 bytes", func(st *state.ChunkReader) {
			noBody(st)
			st.Header = bytes.Repeat([]byte{0x03}, maxHeader)
		}, errAny},
		{"pending header along with a body", func(st *state.ChunkReader) { st.Header = []byte{0x02, 0x00} }, errAny},
		{"pending header already complete", func(st *state.ChunkReader) {
			noBody(st)
			st.Header = []byte{0xC2}
		}, errAny},
		{"pending header on an unseen chunk stream", func(st *state.ChunkReader) {
			noBody(st)
			st.Header = []byte{0x47}
		}, ErrNoPreviousHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := midStream(t)
			tc.edit(&st)
			r, err := Restore(st)
			switch {
			case err == nil:
				t.Fatalf("restored %+v", r.State())
			case tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestRestoreAccepts: states a reader can be in restore.
func TestRestoreAccepts(t *testing.T) {
	cases := []struct {
		name string
		edit func(*state.ChunkReader)
	}{
		{"as exported", func(*state.ChunkReader) {}},
		{"pending header", func(st *state.ChunkReader) {
			st.BodyCSID, st.BodyLeft = 0, 0
			st.Header = []byte{0x02, 0x00}
		}},
		{"default limit", func(st *state.ChunkReader) { st.MaxMessageSize = 0 }},
		{"empty", func(st *state.ChunkReader) { *st = state.ChunkReader{ChunkSize: 1} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := midStream(t)
			tc.edit(&st)
			if _, err := Restore(st); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// captureFile is a real ffmpeg 5.1 publish, client to server, from C0 on.
var captureFile = filepath.Join("..", "..", "testdata", "rtmp", "ffmpeg51_publish.bin")

// handshakeLen is C0, C1 and C2, which precede the chunk stream.
const handshakeLen = 1 + 1536 + 1536

func TestRoundTripCapture(t *testing.T) {
	in, err := os.ReadFile(captureFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) < handshakeLen {
		t.Fatalf("%s: %d bytes, shorter than a handshake", captureFile, len(in))
	}
	in = in[handshakeLen:]
	msgs, err := feedPieces(NewReader(0), in, whole)
	if err != nil {
		t.Fatal(err)
	}
	types := map[uint8]int{}
	for _, m := range msgs {
		types[m.TypeID]++
	}
	if types[TypeSetChunkSize] == 0 || types[TypeCommandAMF0] == 0 || types[TypeVideo] == 0 || types[TypeAudio] == 0 {
		t.Fatalf("capture holds messages of types %v; want chunk size, commands, video and audio", types)
	}
	checkRoundTrip(t, in, 0)
}
