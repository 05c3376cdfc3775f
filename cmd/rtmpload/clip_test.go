package main

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/flv"
)

// buildFLV makes an FLV file from tags.
func buildFLV(t *testing.T, tags ...flv.Tag) []byte {
	t.Helper()
	b := flv.AppendFileHeader(nil, true, true)
	for _, tag := range tags {
		var err error
		if b, err = flv.AppendTag(b, tag); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

var (
	avcSeq  = []byte{0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1F}
	aacSeq  = []byte{0xAF, 0, 0x12, 0x10}
	avcKey  = []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}
	avcP    = []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41}
	aacRaw  = []byte{0xAF, 1, 0x21, 0x10}
	avcEnd  = []byte{0x17, 2, 0, 0, 0}
	scriptX = mustAMF("onCuePoint", amf0.Object{{Key: "name", Value: "x"}})
	meta    = mustAMF("onMetaData", amf0.ECMAArray{{Key: "width", Value: 640.0}})
)

func mustAMF(vs ...any) []byte {
	b, err := amf0.AppendAll(nil, vs...)
	if err != nil {
		panic(err)
	}
	return b
}

func TestReadClip(t *testing.T) {
	in := buildFLV(t,
		flv.Tag{Type: flv.TagScript, Data: scriptX},
		flv.Tag{Type: flv.TagScript, Data: meta},
		flv.Tag{Type: flv.TagVideo, Timestamp: 1000, Data: avcSeq},
		flv.Tag{Type: flv.TagAudio, Timestamp: 1000, Data: aacSeq},
		flv.Tag{Type: flv.TagVideo, Timestamp: 1000, Data: avcKey},
		flv.Tag{Type: flv.TagAudio, Timestamp: 1010, Data: aacRaw},
		flv.Tag{Type: flv.TagVideo, Timestamp: 1040, Data: avcP},
		flv.Tag{Type: flv.TagAudio, Timestamp: 1033, Data: aacRaw}, // steps back: clamped
		flv.Tag{Type: flv.TagVideo, Timestamp: 1080, Data: avcP},
		flv.Tag{Type: flv.TagAudio, Timestamp: 1056, Data: aacRaw},
		flv.Tag{Type: flv.TagVideo, Timestamp: 1120, Data: avcP},
		flv.Tag{Type: flv.TagVideo, Timestamp: 1200, Data: avcP},   // a dropped frame
		flv.Tag{Type: flv.TagVideo, Timestamp: 1200, Data: avcSeq}, // mid-stream change stays in the body
		flv.Tag{Type: flv.TagVideo, Timestamp: 1200, Data: avcEnd}, // dropped, as would be an ERTMP SequenceEnd
		flv.Tag{Type: flv.TagVideo, Timestamp: 1200, Data: []byte{0x92, 'h', 'v', 'c', '1'}},
	)
	c, err := ReadClip(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Metadata, meta) {
		t.Errorf("metadata % x, want the onMetaData tag", c.Metadata)
	}
	wantHeaders := []Tag{{Type: flv.TagVideo, Data: avcSeq}, {Type: flv.TagAudio, Data: aacSeq}}
	if !slices.EqualFunc(c.Headers, wantHeaders, tagEqual) {
		t.Errorf("headers %v, want %v", c.Headers, wantHeaders)
	}
	wantBody := []Tag{
		{flv.TagVideo, 0, avcKey},
		{flv.TagAudio, 10, aacRaw},
		{flv.TagVideo, 40, avcP},
		{flv.TagAudio, 40, aacRaw},
		{flv.TagVideo, 80, avcP},
		{flv.TagAudio, 80, aacRaw},
		{flv.TagVideo, 120, avcP},
		{flv.TagVideo, 200, avcP},
		{flv.TagVideo, 200, avcSeq},
	}
	if !slices.EqualFunc(c.Body, wantBody, tagEqual) {
		t.Errorf("body\n%v\nwant\n%v", c.Body, wantBody)
	}
	// Video: last 200 + median gap 40 (the dropped frame does not count);
	// audio: last 80 + median gap 40; the later wins.
	if c.Loop != 240 {
		t.Errorf("loop %d, want 240", c.Loop)
	}
}

func tagEqual(a, b Tag) bool {
	return a.Type == b.Type && a.TS == b.TS && bytes.Equal(a.Data, b.Data)
}

func TestReadClipDefaults(t *testing.T) {
	// No metadata, no sequence headers, audio only.
	in := buildFLV(t,
		flv.Tag{Type: flv.TagAudio, Timestamp: 0, Data: aacRaw},
		flv.Tag{Type: flv.TagAudio, Timestamp: 23, Data: aacRaw},
		flv.Tag{Type: flv.TagAudio, Timestamp: 46, Data: aacRaw},
	)
	c, err := ReadClip(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !isMetadata(c.Metadata) {
		t.Errorf("no onMetaData made up")
	}
	if len(c.Headers) != 0 || len(c.Body) != 3 || c.Loop != 69 {
		t.Errorf("headers %d, body %d, loop %d; want 0, 3, 69", len(c.Headers), len(c.Body), c.Loop)
	}
}

func TestReadClipErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"not flv", []byte("GIF89a......."), flv.ErrFormat},
		{"truncated", buildFLV(t, flv.Tag{Type: flv.TagVideo, Data: avcKey})[:20], io.ErrUnexpectedEOF},
		{"no frames", buildFLV(t, flv.Tag{Type: flv.TagScript, Data: meta}, flv.Tag{Type: flv.TagVideo, Data: avcSeq}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadClip(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// A clip written out and read back is the same clip, and MediaCRC over the
// file is the CRC of its media payloads in order.
func TestWriteFLVRoundTripAndCRC(t *testing.T) {
	clip, err := Synthesize(SynthConfig{Bitrate: 400_000, AudioBitrate: 64_000, FPS: 25, GOP: 25, Seconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "a.flv")
	if err := dumpClip(path, clip); err != nil {
		t.Fatal(err)
	}
	back, err := LoadClip(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Metadata, clip.Metadata) || !slices.EqualFunc(back.Headers, clip.Headers, tagEqual) ||
		!slices.EqualFunc(back.Body, clip.Body, tagEqual) || back.Loop != clip.Loop {
		t.Fatal("clip changed through WriteFLV and LoadClip")
	}

	// The CRC of the concatenated payloads, which Update computes
	// incrementally.
	var all []byte
	n := 0
	for _, tag := range slices.Concat(clip.Headers, clip.Body) {
		all = append(all, tag.Data...)
		n++
	}
	want := crc32.ChecksumIEEE(all)
	got, tags, err := MediaCRC(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || tags != n {
		t.Errorf("MediaCRC = %08x over %d tags, want %08x over %d", got, tags, want, n)
	}

	// Two files hash as one sequence.
	path2 := filepath.Join(dir, "b.flv")
	if err := os.WriteFile(path2, buildFLV(t, flv.Tag{Type: flv.TagVideo, Data: avcKey}), 0o644); err != nil {
		t.Fatal(err)
	}
	got, tags, err = MediaCRC(path, path2)
	if err != nil {
		t.Fatal(err)
	}
	if want := crc32.ChecksumIEEE(append(all, avcKey...)); got != want || tags != n+1 {
		t.Errorf("MediaCRC of two files = %08x over %d tags, want %08x over %d", got, tags, want, n+1)
	}

	if _, _, err := MediaCRC(filepath.Join(dir, "missing.flv")); err == nil || !strings.Contains(err.Error(), "missing.flv") {
		t.Errorf("missing file: error %v", err)
	}
}

// A file from a real encoder: B-frames, AAC priming, a trailing end of
// sequence. The clip must loop with the video continuing one frame after
// its last, and the audio never stepping back.
func TestReadClipFFmpegFile(t *testing.T) {
	needTools(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "in.flv")
	cmd := exec.CommandContext(t.Context(), "ffmpeg", "-v", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25",
		"-f", "lavfi", "-i", "sine",
		"-t", "2", "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac", "-f", "flv", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	c, err := LoadClip(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Headers) != 2 || !isMetadata(c.Metadata) {
		t.Fatalf("%d headers, metadata %v", len(c.Headers), isMetadata(c.Metadata))
	}
	var lastVideo, lastAudio uint32
	keys := 0
	for _, tag := range c.Body {
		if isSequenceEnd(tag.Type, tag.Data) {
			t.Fatal("end of sequence kept in the body")
		}
		if tag.Type == flv.TagVideo {
			lastVideo = tag.TS
			if flv.IsVideoKeyframe(tag.Data) {
				keys++
			}
		} else {
			lastAudio = tag.TS
		}
	}
	if keys != 2 {
		t.Errorf("%d keyframes in 2 s at GOP 25, want 2", keys)
	}
	if want := max(lastVideo+40, lastAudio+23); c.Loop < want-2 || c.Loop > want+2 {
		t.Errorf("loop %d, want about %d (video ends %d, audio %d)", c.Loop, want, lastVideo, lastAudio)
	}
}
