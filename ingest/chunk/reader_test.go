package chunk

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
)

// errAny in a test case accepts any error: the reader reports some malformed
// input without a sentinel of its own.
var errAny = errors.New("any error")

// Set Chunk Size to 4 on chunk stream 2, format 0, and the message it yields.
var (
	setChunk4    = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04}
	setChunk4Msg = msg(2, 0, TypeSetChunkSize, 0, []byte{0, 0, 0, 4})
)

type readerCase struct {
	name    string
	maxMsg  uint32 // 0: the default
	in      []byte
	want    []Message
	wantErr error
}

// readerCases are hand-built byte vectors. Each chunk is one line: basic
// header, message header fields, extended timestamp, body.
var readerCases = []readerCase{
	{
		name: "format 0 in one chunk",
		in:   []byte{0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x14, 0x01, 0x00, 0x00, 0x00, 'a', 'b', 'c'},
		want: []Message{msg(3, 1000, 20, 1, []byte("abc"))},
	},
	{
		name: "message stream id is little-endian",
		in:   []byte{0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x12, 0x04, 0x03, 0x02, 0x01, 'x'},
		want: []Message{msg(5, 0, 18, 0x01020304, []byte("x"))},
	},
	{
		name: "2-byte basic header, csid 64",
		in:   []byte{0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
		want: []Message{msg(64, 7, 8, 1, []byte("a"))},
	},
	{
		name: "2-byte basic header, csid 319",
		in:   []byte{0x00, 0xFF, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
		want: []Message{msg(319, 7, 8, 1, []byte("a"))},
	},
	{
		name: "3-byte basic header, csid 320",
		in:   []byte{0x01, 0x00, 0x01, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
		want: []Message{msg(320, 7, 8, 1, []byte("a"))},
	},
	{
		name: "3-byte basic header, csid 65599",
		in:   []byte{0x01, 0xFF, 0xFF, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
		want: []Message{msg(65599, 7, 8, 1, []byte("a"))},
	},
	{
		name: "2-byte csid continued by format 3",
		in: cat(
			[]byte{0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 128),
			[]byte{0xC0, 0xFF}, seq(128, 2),
		),
		want: []Message{msg(319, 0, 9, 1, seq(0, 130))},
	},
	{
		name: "3-byte csid continued by format 3",
		in: cat(
			[]byte{0x01, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 128),
			[]byte{0xC1, 0xFF, 0xFF}, seq(128, 2),
		),
		want: []Message{msg(65599, 0, 9, 1, seq(0, 130))},
	},
	{
		// The 3-byte form can name any csid from 64; it is the same stream.
		name: "csid 64 in 2-byte then 3-byte form",
		in: cat(
			[]byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x82, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 128),
			[]byte{0xC1, 0x00, 0x00}, seq(128, 2),
		),
		want: []Message{msg(64, 0, 9, 1, seq(0, 130))},
	},
	{
		name: "format 1 adds its delta, sets length and type",
		in: cat(
			[]byte{0x04, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x02, 0x08, 0x01, 0x00, 0x00, 0x00, 'a', 'b'},
			[]byte{0x44, 0x00, 0x00, 0x21, 0x00, 0x00, 0x03, 0x09, 'c', 'd', 'e'},
		),
		want: []Message{msg(4, 1000, 8, 1, []byte("ab")), msg(4, 1033, 9, 1, []byte("cde"))},
	},
	{
		name: "format 2 adds its delta, keeps length and type",
		in: cat(
			[]byte{0x04, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x02, 0x08, 0x01, 0x00, 0x00, 0x00, 'a', 'b'},
			[]byte{0x84, 0x00, 0x00, 0x14, 'c', 'd'},
		),
		want: []Message{msg(4, 1000, 8, 1, []byte("ab")), msg(4, 1020, 8, 1, []byte("cd"))},
	},
	{
		// ffmpeg and nginx take a format-0 timestamp as the delta a
		// following format-3 message repeats.
		name: "format 3 after format 0 repeats the absolute timestamp",
		in: cat(
			[]byte{0x04, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0xC4, 'b'},
			[]byte{0xC4, 'c'},
		),
		want: []Message{msg(4, 100, 8, 1, []byte("a")), msg(4, 200, 8, 1, []byte("b")), msg(4, 300, 8, 1, []byte("c"))},
	},
	{
		name: "format 3 after format 1 repeats its delta and length",
		in: cat(
			[]byte{0x04, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x44, 0x00, 0x00, 0x28, 0x00, 0x00, 0x02, 0x09, 'b', 'c'},
			[]byte{0xC4, 'd', 'e'},
		),
		want: []Message{msg(4, 100, 8, 1, []byte("a")), msg(4, 140, 9, 1, []byte("bc")), msg(4, 180, 9, 1, []byte("de"))},
	},
	{
		name: "format 3 after format 2 repeats its delta",
		in: cat(
			[]byte{0x04, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x84, 0x00, 0x00, 0x0A, 'b'},
			[]byte{0xC4, 'c'},
		),
		want: []Message{msg(4, 100, 8, 1, []byte("a")), msg(4, 110, 8, 1, []byte("b")), msg(4, 120, 8, 1, []byte("c"))},
	},
	{
		name: "message over two chunks at the default size",
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC8, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 128),
			[]byte{0xC3}, seq(128, 72),
		),
		want: []Message{msg(3, 0, 9, 1, seq(0, 200))},
	},
	{
		name: "message of exactly one chunk needs no continuation",
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 128),
			[]byte{0x43, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x08, 'a'},
		),
		want: []Message{msg(3, 0, 9, 1, seq(0, 128)), msg(3, 1, 8, 1, []byte("a"))},
	},
	{
		name: "set chunk size applies to the following chunks",
		in: cat(
			setChunk4,
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x14, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0xC3}, seq(4, 4),
			[]byte{0xC3}, seq(8, 2),
		),
		want: []Message{setChunk4Msg, msg(3, 0, 20, 1, seq(0, 10))},
	},
	{
		name: "set chunk size above the default",
		in: cat(
			[]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00},
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC8, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 200),
		),
		want: []Message{msg(2, 0, 1, 0, []byte{0, 0, 1, 0}), msg(3, 0, 9, 1, seq(0, 200))},
	},
	{
		name: "set chunk size 0x7FFFFFFF",
		in: cat(
			[]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF},
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC8, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 200),
		),
		want: []Message{msg(2, 0, 1, 0, []byte{0x7F, 0xFF, 0xFF, 0xFF}), msg(3, 0, 9, 1, seq(0, 200))},
	},
	{
		name:    "set chunk size 0",
		in:      []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		wantErr: ErrBadChunkSize,
	},
	{
		name:    "set chunk size with the top bit set",
		in:      []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00},
		wantErr: ErrBadChunkSize,
	},
	{
		name:    "set chunk size 0xFFFFFFFF",
		in:      []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF},
		wantErr: ErrBadChunkSize,
	},
	{
		name:    "set chunk size with a short payload",
		in:      []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04},
		wantErr: ErrBadChunkSize,
	},
	{
		name: "abort drops the partial message",
		in: cat(
			setChunk4,
			[]byte{0x04, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x0A, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04},
			// Without the abort, a format-0 header here is ErrInterleaved.
			[]byte{0x04, 0x00, 0x00, 0x14, 0x00, 0x00, 0x02, 0x09, 0x01, 0x00, 0x00, 0x00, 'x', 'y'},
		),
		want: []Message{setChunk4Msg, msg(2, 0, TypeAbort, 0, []byte{0, 0, 0, 4}), msg(4, 20, 9, 1, []byte("xy"))},
	},
	{
		// The aborted message's header stays the stream's previous header.
		name: "format 3 after abort starts a new message",
		in: cat(
			setChunk4,
			[]byte{0x04, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x0A, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04},
			[]byte{0xC4}, seq(20, 4),
			[]byte{0xC4}, seq(24, 4),
			[]byte{0xC4}, seq(28, 2),
		),
		want: []Message{setChunk4Msg, msg(2, 0, TypeAbort, 0, []byte{0, 0, 0, 4}), msg(4, 20, 9, 1, seq(20, 10))},
	},
	{
		name: "abort of an idle or unknown chunk stream does nothing",
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x14, 0x00, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03},
			[]byte{0xC2, 0x00, 0x00, 0x00, 0x09},
			[]byte{0xC3, 'b'},
		),
		want: []Message{
			msg(3, 0, 20, 0, []byte("a")),
			msg(2, 0, TypeAbort, 0, []byte{0, 0, 0, 3}),
			msg(2, 0, TypeAbort, 0, []byte{0, 0, 0, 9}),
			msg(3, 0, 20, 0, []byte("b")),
		},
	},
	{
		name:    "abort with a short payload",
		in:      []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04},
		wantErr: errAny,
	},
	{
		name:   "message at the limit",
		maxMsg: 16,
		in:     cat([]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 16)),
		want:   []Message{msg(3, 0, 9, 1, seq(0, 16))},
	},
	{
		// No body follows: the header alone is refused.
		name:    "message above the limit",
		maxMsg:  16,
		in:      []byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0x09, 0x01, 0x00, 0x00, 0x00},
		wantErr: ErrMessageTooLarge,
	},
	{
		name:   "format 1 length above the limit",
		maxMsg: 16,
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x43, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x09},
		),
		want:    []Message{msg(3, 0, 9, 1, []byte("a"))},
		wantErr: ErrMessageTooLarge,
	},
	{
		name:    "default limit is 16 MiB",
		in:      []byte{0x03, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x09, 0x01, 0x00, 0x00, 0x00},
		want:    nil, // 0xFFFFFF bytes fit: the reader waits for the body
		wantErr: nil,
	},
	{
		name:    "format 1 on an unseen chunk stream",
		in:      []byte{0x43, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x09, 'a'},
		wantErr: ErrNoPreviousHeader,
	},
	{
		name:    "format 2 on an unseen chunk stream",
		in:      []byte{0x83, 0x00, 0x00, 0x00, 'a'},
		wantErr: ErrNoPreviousHeader,
	},
	{
		name:    "format 3 on an unseen chunk stream",
		in:      []byte{0xC3, 'a'},
		wantErr: ErrNoPreviousHeader,
	},
	{
		name:    "unseen chunk stream is known from the basic header alone",
		in:      []byte{0xC0, 0x05},
		wantErr: ErrNoPreviousHeader,
	},
	{
		name: "format 3 on another stream than the one seen",
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0xC4, 'b'},
		),
		want:    []Message{msg(3, 0, 9, 1, []byte("a"))},
		wantErr: ErrNoPreviousHeader,
	},
	{
		name: "zero-length messages",
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x12, 0x01, 0x00, 0x00, 0x00},
			[]byte{0xC3},
			[]byte{0x43, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x12, 'z'},
		),
		want: []Message{msg(3, 5, 18, 1, nil), msg(3, 10, 18, 1, nil), msg(3, 11, 18, 1, []byte("z"))},
	},
	{
		name: "zero-length message ends the input",
		in:   []byte{0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x12, 0x01, 0x00, 0x00, 0x00},
		want: []Message{msg(3, 5, 18, 1, nil)},
	},
	{
		name: "zero-length message between chunks of another",
		in: cat(
			setChunk4,
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0x05, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x12, 0x01, 0x00, 0x00, 0x00},
			[]byte{0xC3}, seq(4, 2),
		),
		want: []Message{setChunk4Msg, msg(5, 2, 18, 1, nil), msg(3, 0, 9, 1, seq(0, 6))},
	},
	{
		name: "chunk streams interleaved chunk by chunk",
		in: cat(
			setChunk4,
			[]byte{0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x00, 0x00, 0x00}, seq(100, 4),
			[]byte{0xC6}, seq(4, 4),
			[]byte{0xC4}, seq(104, 2),
			// A new audio message opens before the video one is done.
			[]byte{0x84, 0x00, 0x00, 0x17}, seq(110, 4),
			[]byte{0xC6}, seq(8, 2),
			[]byte{0xC4}, seq(114, 2),
		),
		want: []Message{
			setChunk4Msg,
			msg(4, 0, 8, 1, seq(100, 6)),
			msg(6, 0, 9, 1, seq(0, 10)),
			msg(4, 23, 8, 1, seq(110, 6)),
		},
	},
	{
		name: "new header on a stream with a message incomplete",
		in: cat(
			setChunk4,
			[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0x43, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x14, 'a'},
		),
		want:    []Message{setChunk4Msg},
		wantErr: ErrInterleaved,
	},
	{
		name: "extended timestamp in format 0",
		in:   []byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 'a'},
		want: []Message{msg(3, 0x01000000, 9, 1, []byte("a"))},
	},
	{
		name: "timestamp 0xFFFFFF is extended",
		in:   []byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 'a'},
		want: []Message{msg(3, 0xFFFFFF, 9, 1, []byte("a"))},
	},
	{
		name: "extended timestamp repeated on continuation chunks",
		in: cat(
			setChunk4,
			[]byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x0A, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04}, seq(0, 4),
			[]byte{0xC3, 0x01, 0x02, 0x03, 0x04}, seq(4, 4),
			[]byte{0xC3, 0x01, 0x02, 0x03, 0x04}, seq(8, 2),
		),
		want: []Message{setChunk4Msg, msg(3, 0x01020304, 9, 1, seq(0, 10))},
	},
	{
		// ffmpeg takes the extended field of a format-3 header opening a
		// message as that message's delta.
		name: "format 3 after extended format 0 takes its delta from the extended field",
		in: cat(
			[]byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0xC3, 0x01, 0x00, 0x00, 0x00, 'b'},
			[]byte{0xC3, 0x00, 0x00, 0x00, 0x05, 'c'},
			[]byte{0xC3, 0x00, 0x00, 0x00, 0x05, 'd'},
		),
		want: []Message{
			msg(3, 0x01000000, 9, 1, []byte("a")),
			msg(3, 0x02000000, 9, 1, []byte("b")),
			msg(3, 0x02000005, 9, 1, []byte("c")),
			msg(3, 0x0200000A, 9, 1, []byte("d")),
		},
	},
	{
		name: "extended delta in format 1, then format 3 chunks",
		in: cat(
			setChunk4,
			[]byte{0x03, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x43, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x06, 0x09, 0x01, 0x00, 0x00, 0x00}, seq(0, 4),
			[]byte{0xC3, 0x01, 0x00, 0x00, 0x00}, seq(4, 2),
			[]byte{0xC3, 0x01, 0x00, 0x00, 0x00}, seq(10, 4),
			[]byte{0xC3, 0x01, 0x00, 0x00, 0x00}, seq(14, 2),
		),
		want: []Message{
			setChunk4Msg,
			msg(3, 10, 9, 1, []byte("a")),
			msg(3, 0x0100000A, 9, 1, seq(0, 6)),
			msg(3, 0x0200000A, 9, 1, seq(10, 6)),
		},
	},
	{
		name: "header without extended field ends extended format 3 chunks",
		in: cat(
			[]byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x83, 0x00, 0x00, 0x05, 'b'},
			[]byte{0xC3, 'c'},
		),
		want: []Message{
			msg(3, 0x01000000, 9, 1, []byte("a")),
			msg(3, 0x01000005, 9, 1, []byte("b")),
			msg(3, 0x0100000A, 9, 1, []byte("c")),
		},
	},
	{
		// After 4.66 hours a stream sent with small deltas passes 0xFFFFFF
		// without ever using an extended field.
		name: "timestamp crosses 0xFFFFFF by deltas",
		in: cat(
			[]byte{0x03, 0xFF, 0xFF, 0xF0, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x83, 0x00, 0x00, 0x20, 'b'},
			[]byte{0xC3, 'c'},
		),
		want: []Message{
			msg(3, 0xFFFFF0, 9, 1, []byte("a")),
			msg(3, 0x1000010, 9, 1, []byte("b")),
			msg(3, 0x1000030, 9, 1, []byte("c")),
		},
	},
	{
		// After 49.7 days the 32-bit timestamp wraps.
		name: "timestamp wraps at 2^32 by format 1 delta",
		in: cat(
			[]byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xF0, 'a'},
			[]byte{0x43, 0x00, 0x00, 0x20, 0x00, 0x00, 0x01, 0x09, 'b'},
			[]byte{0xC3, 'c'},
		),
		want: []Message{
			msg(3, 0xFFFFFFF0, 9, 1, []byte("a")),
			msg(3, 0x10, 9, 1, []byte("b")),
			msg(3, 0x30, 9, 1, []byte("c")),
		},
	},
	{
		name: "timestamp wraps at 2^32 by extended format 2 delta",
		in: cat(
			[]byte{0x03, 0x00, 0x00, 0x10, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 'a'},
			[]byte{0x83, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF8, 'b'},
			[]byte{0xC3, 0xFF, 0xFF, 0xFF, 0xF8, 'c'},
		),
		want: []Message{
			msg(3, 0x10, 9, 1, []byte("a")),
			msg(3, 0x08, 9, 1, []byte("b")),
			msg(3, 0x00, 9, 1, []byte("c")),
		},
	},
	{
		name: "input ending inside a body",
		in:   []byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x09, 0x01, 0x00, 0x00, 0x00, 'a', 'b'},
	},
	{
		name: "input ending inside a header",
		in:   []byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00},
	},
	{
		name: "input ending inside an extended timestamp",
		in:   []byte{0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00},
	},
}

func checkRead(t *testing.T, tc *readerCase, got []Message, err error) {
	t.Helper()
	switch {
	case tc.wantErr == errAny:
		if err == nil {
			t.Errorf("no error, want one")
		}
	case !errors.Is(err, tc.wantErr):
		t.Errorf("error %v, want %v", err, tc.wantErr)
	}
	if d := diffMessages(got, tc.want); d != "" {
		t.Error(d)
	}
}

func TestReader(t *testing.T) {
	for _, tc := range readerCases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.maxMsg)
			got, err := feedPieces(r, tc.in, whole)
			checkRead(t, &tc, got, err)
			if err == nil && r.BytesRead() != uint64(len(tc.in)) {
				t.Errorf("BytesRead %d, want %d", r.BytesRead(), len(tc.in))
			}
		})
	}
}

// TestReaderSplits feeds each vector in pieces: a chunk header or body cut
// anywhere must read the same.
func TestReaderSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range readerCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := feedPieces(NewReader(tc.maxMsg), tc.in, oneByte)
			checkRead(t, &tc, got, err)
			for range 20 {
				got, err := feedPieces(NewReader(tc.maxMsg), tc.in, randomSizes(rng, 20))
				checkRead(t, &tc, got, err)
			}
		})
	}
}

func TestReaderSplitsSynthetic(t *testing.T) {
	in, want := syntheticStream()
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := map[string]func() int{
		"whole":     whole,
		"one byte":  oneByte,
		"up to 3":   randomSizes(rng, 3),
		"up to 40":  randomSizes(rng, 40),
		"up to 5 K": randomSizes(rng, 5000),
	}
	for name, next := range sizes {
		t.Run(name, func(t *testing.T) {
			for range 5 {
				r := NewReader(0)
				got, err := feedPieces(r, in, next)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffMessages(got, want); d != "" {
					t.Fatal(d)
				}
				if r.BytesRead() != uint64(len(in)) {
					t.Fatalf("BytesRead %d, want %d", r.BytesRead(), len(in))
				}
			}
		})
	}
}

func TestReaderTooManyStreams(t *testing.T) {
	var in []byte
	for csid := uint32(3); csid < 3+maxStreams; csid++ {
		in = appendChunk(in, chunkHdr{fmt: 0, csid: csid, typeID: 8}, nil)
	}
	r := NewReader(0)
	got, err := feedPieces(r, in, whole)
	if err != nil || len(got) != maxStreams {
		t.Fatalf("%d streams: %d messages, error %v", maxStreams, len(got), err)
	}
	// Streams seen before stay usable; one more is refused.
	if _, err := feedPieces(r, appendChunk(nil, chunkHdr{fmt: 3, csid: 3}, nil), whole); err != nil {
		t.Fatalf("known stream: %v", err)
	}
	_, err = feedPieces(r, appendChunk(nil, chunkHdr{fmt: 0, csid: 3 + maxStreams, typeID: 8}, nil), whole)
	if !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("stream %d: error %v, want %v", maxStreams+1, err, ErrTooManyStreams)
	}
}

// TestReaderLimitBeforeAlloc: a header announcing a message above the limit
// must be refused before the reader allocates for it.
func TestReaderLimitBeforeAlloc(t *testing.T) {
	in := []byte{0x03, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x09, 0x01, 0x00, 0x00, 0x00}
	r := NewReader(1 << 20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := r.Feed(in, func(*Message) error { return nil })
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("error %v, want %v", err, ErrMessageTooLarge)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n >= 1<<20 {
		t.Fatalf("allocated %d bytes for a refused message", n)
	}
}

func TestReaderCallbackError(t *testing.T) {
	in := cat(
		[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x14, 0x00, 0x00, 0x00, 0x00, 'a'},
		[]byte{0xC3, 'b'},
	)
	stop := errors.New("stop")
	calls := 0
	err := NewReader(0).Feed(in, func(*Message) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("error %v after %d calls, want %v after 1", err, calls, stop)
	}
}

// TestReaderPayloadOwned: a payload stays valid after the input buffer is
// reused and after later messages.
func TestReaderPayloadOwned(t *testing.T) {
	in := cat(
		[]byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x14, 0x00, 0x00, 0x00, 0x00, 'a', 'b', 'c'},
		[]byte{0xC3, 'd', 'e', 'f'},
	)
	var got []Message
	err := NewReader(0).Feed(in, func(m *Message) error {
		got = append(got, *m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clear(in)
	want := []Message{msg(3, 0, 20, 0, []byte("abc")), msg(3, 0, 20, 0, []byte("def"))}
	if d := diffMessages(got, want); d != "" {
		t.Fatal(d)
	}
}

// TestReaderAllocs: reading costs one allocation per message, its payload.
func TestReaderAllocs(t *testing.T) {
	in, msgs := mediaStream(1)
	r := NewReader(0)
	fn := func(*Message) error { return nil }
	// The first pass allocates the chunk streams; the stream restates every
	// header in full, so it can be fed again.
	if err := r.Feed(in, fn); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(5, func() {
		for p := in; len(p) > 0; {
			n := min(len(p), 16<<10)
			if err := r.Feed(p[:n], fn); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
	})
	if allocs != float64(msgs) {
		t.Fatalf("%v allocations for %d messages", allocs, msgs)
	}
}
