package flv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// metaBody is an AMF0 onMetaData body: the string, then an ECMA array with
// one "duration" number.
func metaBody(duration float64) []byte {
	b := []byte{0x02, 0x00, 10}
	b = append(b, "onMetaData"...)
	b = append(b, 0x08, 0, 0, 0, 1, 0x00, 8)
	b = append(b, "duration"...)
	b = append(b, 0x00)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(duration))
	return append(b, 0, 0, 9)
}

var (
	avcSeq = []byte{0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff}
	aacSeq = []byte{0xaf, 0x00, 0x12, 0x10}
)

// synthStream is a publisher's media: sequence headers at start, then video
// every 33 ms with a keyframe every 30 frames, and AAC every 23 ms, in
// timestamp order (video first on a tie). Payloads are unique per frame.
func synthStream(start uint32, length time.Duration, video bool) []Tag {
	var out []Tag
	if video {
		out = append(out, Tag{TagVideo, start, avcSeq})
	}
	out = append(out, Tag{TagAudio, start, aacSeq})
	end := uint32(length / time.Millisecond)
	v, a := 0, 0
	for {
		vt, at := uint32(v*33), uint32(a*23)
		if !video {
			vt = math.MaxUint32
		}
		if vt >= end && at >= end {
			return out
		}
		if vt <= at {
			size, head := 300, byte(0x27)
			if v%30 == 0 {
				size, head = 3000, 0x17
			}
			p := make([]byte, size)
			p[0], p[1] = head, 0x01
			binary.BigEndian.PutUint32(p[5:], uint32(v))
			out = append(out, Tag{TagVideo, start + vt, p})
			v++
		} else {
			p := make([]byte, 120)
			p[0], p[1] = 0xaf, 0x01
			binary.BigEndian.PutUint32(p[2:], uint32(a))
			out = append(out, Tag{TagAudio, start + at, p})
			a++
		}
	}
}

// stepClock returns a wall clock that advances one second per reading.
func stepClock() func() time.Time {
	now := time.Date(2026, 11, 23, 16, 37, 40, 0, time.FixedZone("CET", 3600))
	return func() time.Time {
		t := now
		now = now.Add(time.Second)
		return t
	}
}

func record(t *testing.T, r *Recorder, tags []Tag) {
	t.Helper()
	for i, tag := range tags {
		if err := r.Write(tag.Type, tag.Timestamp, tag.Data); err != nil {
			t.Fatalf("Write tag %d: %v", i, err)
		}
	}
}

func readFile(t *testing.T, path string) []Tag {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readTags(t, f)
}

// checkSegments verifies that the segments start where wantStarts says
// (timestamps relative to base), that each one begins with metadata,
// sequence headers and a keyframe, and that their media tags, preambles
// removed, are exactly the tags written.
func checkSegments(t *testing.T, segs []string, written []Tag, meta []byte, base uint32, wantStarts []uint32, video bool) {
	t.Helper()
	if len(segs) != len(wantStarts) {
		t.Fatalf("%d segments, want %d", len(segs), len(wantStarts))
	}
	var media []Tag
	for i, seg := range segs {
		tags := readFile(t, seg)
		start := base + wantStarts[i]
		want := []Tag{{TagScript, 0, meta}}
		if video {
			want = append(want, Tag{TagVideo, start, avcSeq})
		}
		want = append(want, Tag{TagAudio, start, aacSeq})
		if len(tags) <= len(want) {
			t.Fatalf("segment %d has %d tags", i, len(tags))
		}
		for j, w := range want {
			if !tagsEqual(tags[j], w) {
				t.Fatalf("segment %d tag %d = {%d %d % x}, want {%d %d % x}", i, j,
					tags[j].Type, tags[j].Timestamp, tags[j].Data, w.Type, w.Timestamp, w.Data)
			}
		}
		first := tags[len(want)]
		if first.Timestamp != start {
			t.Errorf("segment %d: first frame at %d, want %d", i, first.Timestamp-base, wantStarts[i])
		}
		if video && (first.Type != TagVideo || !IsVideoKeyframe(first.Data)) {
			t.Errorf("segment %d: first frame is not a video keyframe", i)
		}
		if i == 0 {
			media = append(media, tags[1:]...) // its sequence headers are the stream's own
		} else {
			media = append(media, tags[len(want):]...)
		}
	}
	if len(media) != len(written) {
		t.Fatalf("segments hold %d media tags, %d were written", len(media), len(written))
	}
	for i := range written {
		if !tagsEqual(media[i], written[i]) {
			t.Fatalf("media tag %d = {%d %d}, want {%d %d}", i,
				media[i].Type, media[i].Timestamp, written[i].Type, written[i].Timestamp)
		}
	}
}

func TestRecorderSegments(t *testing.T) {
	for _, tc := range []struct {
		name   string
		base   uint32
		segDur time.Duration
		video  bool
		starts []uint32
	}{
		// Keyframes every 990 ms: 1980 < 2000, so the first cut is at 2970.
		{"video 2s", 0, 2 * time.Second, true, []uint32{0, 2970, 5940, 8910}},
		{"video 2s across the 32-bit wrap", math.MaxUint32 - 5000, 2 * time.Second, true, []uint32{0, 2970, 5940, 8910}},
		{"video 1s", 1000, time.Second, true, []uint32{0, 1980, 3960, 5940, 7920, 9900}},
		{"one file per broadcast", 0, 0, true, []uint32{0}},
		// No video: any audio frame may start a segment; 44*23 = 1012.
		{"audio only 1s", 0, time.Second, false, []uint32{0, 1012, 2024, 3036, 4048}},
		{"audio only across the wrap", math.MaxUint32 - 2000, time.Second, false, []uint32{0, 1012, 2024, 3036, 4048}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			length := 10 * time.Second
			if !tc.video {
				length = 5 * time.Second
			}
			stream := synthStream(tc.base, length, tc.video)
			dir := filepath.Join(t.TempDir(), "live", "key")
			r := NewRecorder(RecorderConfig{Dir: dir, SegmentDuration: tc.segDur, Now: stepClock()})
			if r.Path() != "" {
				t.Fatalf("Path before the first tag = %q", r.Path())
			}
			meta := metaBody(0)
			r.SetMetadata(meta)
			record(t, r, stream)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			segs := r.Segments()
			if r.Path() != segs[len(segs)-1] {
				t.Errorf("Path = %q, want the last segment %q", r.Path(), segs[len(segs)-1])
			}
			checkSegments(t, segs, stream, meta, tc.base, tc.starts, tc.video)
		})
	}
}

func TestRecorderNamesAndModes(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "app", "key")
	fixed := func() time.Time { return time.Date(2026, 11, 23, 17, 37, 40, 0, time.FixedZone("CET", 3600)) }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A recording from an earlier publish in the same second must survive.
	earlier := filepath.Join(dir, "20261123T163740Z.flv")
	if err := os.WriteFile(earlier, []byte("earlier"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(RecorderConfig{Dir: dir, SegmentDuration: time.Second, Now: fixed})
	record(t, r, synthStream(0, 3*time.Second, true))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.Segments() {
		names = append(names, strings.TrimPrefix(s, dir+string(filepath.Separator)))
	}
	want := "20261123T163740Z-1.flv 20261123T163740Z-2.flv"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("segments %q, want %q", got, want)
	}
	if b, err := os.ReadFile(earlier); err != nil || string(b) != "earlier" {
		t.Errorf("earlier recording = %q, %v", b, err)
	}
	for _, p := range []string{filepath.Join(root, "app"), dir} {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&^0o755 != 0 {
			t.Errorf("%s: %v %v, want a directory with mode 0755 at most", p, fi.Mode(), err)
		}
	}
	fi, err := os.Stat(r.Segments()[0])
	if err != nil || fi.Mode().Perm()&^0o644 != 0 || fi.Mode().Perm()&0o600 != 0o600 {
		t.Errorf("segment mode %v, %v; want 0644", fi.Mode(), err)
	}
}

func TestRecorderMetadataAndSequenceChanges(t *testing.T) {
	dir := t.TempDir()
	r := NewRecorder(RecorderConfig{Dir: dir, SegmentDuration: time.Second, Now: stepClock()})
	meta1, meta2 := metaBody(1), metaBody(2)
	avcSeq2 := append(bytes.Clone(avcSeq), 0xee)
	r.SetMetadata(meta1)
	stream := synthStream(0, 3*time.Second, true)
	mid := 0
	for stream[mid].Timestamp < 500 {
		mid++
	}
	record(t, r, stream[:mid])
	r.SetMetadata(meta2)
	r.SetMetadata(meta2) // unchanged: not written again
	if err := r.Write(TagVideo, stream[mid].Timestamp, avcSeq2); err != nil {
		t.Fatal(err)
	}
	record(t, r, stream[mid:])
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	segs := r.Segments()
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2", len(segs))
	}
	first := readFile(t, segs[0])
	var scripts []Tag
	for _, tag := range first {
		if tag.Type == TagScript {
			scripts = append(scripts, tag)
		}
	}
	wantScripts := []Tag{{TagScript, 0, meta1}, {TagScript, 0, meta2}}
	if len(scripts) != 2 || !tagsEqual(scripts[0], wantScripts[0]) || !tagsEqual(scripts[1], wantScripts[1]) {
		t.Errorf("first segment scripts %+v, want %+v", scripts, wantScripts)
	}
	second := readFile(t, segs[1])
	if !tagsEqual(second[0], Tag{TagScript, 0, meta2}) || !tagsEqual(second[1], Tag{TagVideo, 1980, avcSeq2}) {
		t.Errorf("second segment starts %+v %+v, want the new metadata and sequence header", second[0], second[1])
	}
}

func TestRecorderFlushesAtKeyframes(t *testing.T) {
	dir := t.TempDir()
	r := NewRecorder(RecorderConfig{Dir: dir, Now: stepClock()})
	defer r.Close()
	size := func() int64 {
		fi, err := os.Stat(r.Path())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	audio := Tag{TagAudio, 0, []byte{0xaf, 0x01, 1, 2, 3}}
	record(t, r, []Tag{audio})
	if got := size(); got != 0 {
		t.Errorf("after one audio tag the file has %d bytes; want them buffered", got)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	want, _ := AppendTag(AppendFileHeader(nil, true, true), audio)
	if got := size(); got != int64(len(want)) {
		t.Errorf("after Flush: %d bytes, want %d", got, len(want))
	}
	key := Tag{TagVideo, 10, []byte{0x17, 0x01, 0, 0, 0, 9}}
	record(t, r, []Tag{audio, key})
	want, _ = AppendTag(want, audio)
	want, _ = AppendTag(want, key)
	if got := size(); got != int64(len(want)) {
		t.Errorf("after a keyframe: %d bytes, want %d", got, len(want))
	}
	if b, err := os.ReadFile(r.Path()); err != nil || !bytes.Equal(b, want) {
		t.Errorf("file content differs from the expected tags (%v)", err)
	}
}

func TestRecorderCloseAndRejects(t *testing.T) {
	r := NewRecorder(RecorderConfig{Dir: t.TempDir(), Now: stepClock()})
	if err := r.Write(TagScript, 0, metaBody(0)); err == nil {
		t.Error("Write accepted a script tag")
	}
	if len(r.Segments()) != 0 {
		t.Error("a rejected tag opened a segment")
	}
	record(t, r, synthStream(0, time.Second, true))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := r.Write(TagAudio, 2000, []byte{0xaf, 0x01}); !errors.Is(err, ErrRecorderClosed) {
		t.Errorf("Write after Close: %v, want ErrRecorderClosed", err)
	}
	if err := r.Flush(); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
	if _, _, err := r.State(); !errors.Is(err, ErrRecorderClosed) {
		t.Errorf("State after Close: %v, want ErrRecorderClosed", err)
	}
}

func TestRecorderWriteErrorRecovers(t *testing.T) {
	dir := t.TempDir()
	// A read-only descriptor makes every flush fail, as a full disk would.
	path := filepath.Join(dir, "broken.flv")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := RestoreRecorder(RecorderState{Dir: dir, SegmentDuration: time.Hour, Path: path, Started: true, SawVideo: true}, f, stepClock())
	if err != nil {
		t.Fatal(err)
	}
	key := []byte{0x17, 0x01, 0, 0, 0, 1}
	err = r.Write(TagVideo, 0, key)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Write on a failing file: %v, want an error naming %s", err, path)
	}
	// Until the next keyframe nothing can start a decodable segment.
	if err := r.Write(TagVideo, 33, []byte{0x27, 0x01, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(TagVideo, 66, key); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	segs := r.Segments()
	if len(segs) != 1 || segs[0] == path {
		t.Fatalf("segments %q, want one new segment", segs)
	}
	tags := readFile(t, segs[0])
	if len(tags) != 1 || !tagsEqual(tags[0], Tag{TagVideo, 66, key}) {
		t.Errorf("new segment holds %+v, want the keyframe at 66", tags)
	}
}

func TestRecorderWriteDoesNotAllocate(t *testing.T) {
	r := NewRecorder(RecorderConfig{Dir: t.TempDir(), Now: stepClock()})
	defer r.Close()
	stream := synthStream(0, 2*time.Second, true)
	record(t, r, stream)
	i, ts := 0, uint32(2000)
	allocs := testing.AllocsPerRun(500, func() {
		tag := stream[2+i%(len(stream)-2)]
		i++
		ts += 10
		if err := r.Write(tag.Type, ts, tag.Data); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Write allocates %v times per tag, want 0", allocs)
	}
}

func BenchmarkRecorderWrite(b *testing.B) {
	r := NewRecorder(RecorderConfig{Dir: b.TempDir(), Now: stepClock()})
	defer r.Close()
	stream := synthStream(0, 10*time.Second, true)[2:]
	var total int
	for _, tag := range stream {
		total += len(tag.Data)
	}
	b.SetBytes(int64(total / len(stream)))
	b.ReportAllocs()
	if err := r.Write(TagVideo, 0, avcSeq); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		tag := stream[i%len(stream)]
		if err := r.Write(tag.Type, uint32(i*10), tag.Data); err != nil {
			b.Fatal(err)
		}
	}
}
