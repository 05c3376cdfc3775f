package chunk

import (
	"errors"
	"testing"
)

// fuzzMaxMsg keeps announced lengths from costing the fuzzer more than
// 64 KiB a message.
const fuzzMaxMsg = 1 << 16

// FuzzReader feeds arbitrary bytes in pieces of step+1 bytes, handing the
// reader over through its exported state at offset split. The reader must
// not panic, and the handed-over read must deliver what an uninterrupted
// read delivers, up to the same error if there is one.
func FuzzReader(f *testing.F) {
	for _, tc := range readerCases {
		f.Add(tc.in, uint16(len(tc.in)/2), uint8(0))
	}
	in, _ := syntheticStream()
	f.Add(in, uint16(len(in)/3), uint8(6))
	f.Fuzz(func(t *testing.T, in []byte, split uint16, step uint8) {
		want, wantErr := feedPieces(NewReader(fuzzMaxMsg), in, whole)
		k := int(split) % (len(in) + 1)
		pieces := func() int { return int(step) + 1 }
		a := NewReader(fuzzMaxMsg)
		got, err := feedPieces(a, in[:k], pieces)
		if err == nil {
			b, rerr := Restore(viaMsgpack(t, a.State()))
			if rerr != nil {
				t.Fatalf("restore at offset %d: %v", k, rerr)
			}
			var more []Message
			more, err = feedPieces(b, in[k:], pieces)
			got = append(got, more...)
			if err == nil && b.BytesRead() != uint64(len(in)) {
				t.Fatalf("BytesRead %d, want %d", b.BytesRead(), len(in))
			}
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("handed over at %d: error %v; uninterrupted: %v", k, err, wantErr)
		}
		for _, sentinel := range []error{ErrNoPreviousHeader, ErrMessageTooLarge, ErrBadChunkSize, ErrTooManyStreams, ErrInterleaved} {
			if errors.Is(err, sentinel) != errors.Is(wantErr, sentinel) {
				t.Fatalf("handed over at %d: error %v; uninterrupted: %v", k, err, wantErr)
			}
		}
		if d := diffMessages(got, want); d != "" {
			t.Fatalf("handed over at %d: %s", k, d)
		}
	})
}
