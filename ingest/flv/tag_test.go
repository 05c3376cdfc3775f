package flv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// tagVectors drives the encoding test, the decoding test and the fuzz seeds.
var tagVectors = []struct {
	name string
	tag  Tag
	hex  string // header | data | PreviousTagSize
}{
	{"audio at zero", Tag{TagAudio, 0, []byte{0xaf, 0x01, 0x21}},
		"08 000003 000000 00 000000 af0121 0000000e"},
	{"video with 24-bit timestamp", Tag{TagVideo, 0x123456, []byte{0x17, 0x01}},
		"09 000002 123456 00 000000 1701 0000000d"},
	{"script at 2^24 uses the extension byte", Tag{TagScript, 1 << 24, []byte{0x05}},
		"12 000001 000000 01 000000 05 0000000c"},
	{"extension and low bytes", Tag{TagAudio, 0x12345678, []byte{0xaa}},
		"08 000001 345678 12 000000 aa 0000000c"},
	{"largest timestamp, empty body", Tag{TagVideo, 0xffffffff, []byte{}},
		"09 000000 ffffff ff 000000 0000000b"},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestAppendTag(t *testing.T) {
	for _, tc := range tagVectors {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendTag([]byte{0xee}, tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte{0xee}, unhex(t, tc.hex)...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendTag =\n% x\nwant\n% x", got, want)
			}
		})
	}
}

func TestAppendTagTooLarge(t *testing.T) {
	_, err := AppendTag(nil, Tag{Type: TagVideo, Data: make([]byte, MaxDataSize+1)})
	if !errors.Is(err, ErrTagTooLarge) {
		t.Fatalf("err = %v, want ErrTagTooLarge", err)
	}
}

func TestAppendFileHeader(t *testing.T) {
	for _, tc := range []struct {
		audio, video bool
		hex          string
	}{
		{true, true, "464c5601 05 00000009 00000000"},
		{true, false, "464c5601 04 00000009 00000000"},
		{false, true, "464c5601 01 00000009 00000000"},
		{false, false, "464c5601 00 00000009 00000000"},
	} {
		got := AppendFileHeader(nil, tc.audio, tc.video)
		if want := unhex(t, tc.hex); !bytes.Equal(got, want) {
			t.Errorf("AppendFileHeader(audio=%v, video=%v) = % x, want % x", tc.audio, tc.video, got, want)
		}
	}
}
