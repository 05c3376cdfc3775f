package flv

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// step is one call a session makes on its recorder.
type step struct {
	meta []byte // SetMetadata if non-nil, else Write(tag)
	tag  Tag
}

func scriptedSession() []step {
	steps := []step{{meta: metaBody(1)}}
	for i, tag := range synthStream(0xffffffff-3000, 7*time.Second, true) {
		if i == 100 {
			steps = append(steps, step{meta: metaBody(2)})
		}
		steps = append(steps, step{tag: tag})
	}
	return steps
}

func play(t *testing.T, r *Recorder, steps []step) {
	t.Helper()
	for i, s := range steps {
		if s.meta != nil {
			r.SetMetadata(s.meta)
			continue
		}
		if err := r.Write(s.tag.Type, s.tag.Timestamp, s.tag.Data); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

// relFiles maps each segment's name to its content.
func relFiles(t *testing.T, segs []string) map[string][]byte {
	t.Helper()
	m := make(map[string][]byte)
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(s)] = b
	}
	return m
}

func TestRecorderStateRestoreIsSeamless(t *testing.T) {
	steps := scriptedSession()
	const segDur = 2 * time.Second

	refDir := t.TempDir()
	var wantDone []segmentReport
	ref := NewRecorder(RecorderConfig{Dir: refDir, SegmentDuration: segDur, Now: stepClock(), OnSegmentDone: reportInto(&wantDone)})
	play(t, ref, steps)
	if err := ref.Close(); err != nil {
		t.Fatal(err)
	}
	want := relFiles(t, ref.Segments())
	if len(want) < 3 {
		t.Fatalf("reference recording has %d segments; the test needs several", len(want))
	}
	// The keyframe that starts the second segment: a restore just before
	// it closes the first with no tag written since.
	cut := -1
	for i, st := range steps {
		if st.meta == nil && st.tag.Type == TagVideo && st.tag.Data[0] == 0x17 && st.tag.Data[1] == 1 &&
			mediaSince(steps[1].tag.Timestamp, st.tag.Timestamp) >= segDur {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatal("no keyframe starts a second segment")
	}

	for _, tc := range []struct {
		name   string
		split  int
		reopen bool // the new process gets its own descriptor, not the same *os.File
	}{
		{"before any tag", 1, false},
		{"after the first tag", 2, true},
		{"mid-segment, same file", 150, false},
		{"mid-segment, reopened", 150, true},
		{"before the metadata change", 100, true},
		{"late in the broadcast", len(steps) - 5, true},
		{"just before the keyframe that cuts a segment", cut, true},
		{"just before that keyframe, same file", cut, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app", "key")
			clock := stepClock()
			var gotDone []segmentReport
			old := NewRecorder(RecorderConfig{Dir: dir, SegmentDuration: segDur, Now: clock, OnSegmentDone: reportInto(&gotDone)})
			play(t, old, steps[:tc.split])
			st, f, err := old.State()
			if err != nil {
				t.Fatal(err)
			}
			if (f != nil) != st.Started {
				t.Fatalf("State returned file %v with Started %v", f, st.Started)
			}
			if tc.reopen && f != nil {
				if f, err = os.OpenFile(st.Path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
					t.Fatal(err)
				}
				// Committed: the old process lets go of its copy.
				if err := old.Release(); err != nil {
					t.Fatal(err)
				}
			}
			restored, err := RestoreRecorder(st, f, clock)
			if err != nil {
				t.Fatal(err)
			}
			restored.SetOnSegmentDone(reportInto(&gotDone))
			if restored.Path() != st.Path {
				t.Errorf("restored Path = %q, want %q", restored.Path(), st.Path)
			}
			play(t, restored, steps[tc.split:])
			if err := restored.Close(); err != nil {
				t.Fatal(err)
			}
			got := relFiles(t, restored.Segments())
			if len(got) != len(want) {
				t.Fatalf("%d segments, want %d", len(got), len(want))
			}
			for name, w := range want {
				if !bytes.Equal(got[name], w) {
					t.Errorf("segment %s differs from the uninterrupted recording (%d vs %d bytes)", name, len(got[name]), len(w))
				}
			}
			// Each segment is reported done once, as without the restore:
			// the same bytes and the same media duration.
			if !slices.Equal(gotDone, wantDone) {
				t.Errorf("segments reported done:\n got %v\nwant %v", gotDone, wantDone)
			}
		})
	}
}

// segmentReport is a SegmentDone without the directory.
type segmentReport struct {
	name  string
	dur   time.Duration
	bytes int64
}

func reportInto(dst *[]segmentReport) func(SegmentDone) {
	return func(sd SegmentDone) {
		*dst = append(*dst, segmentReport{filepath.Base(sd.Path), sd.Duration, sd.Bytes})
	}
}

func TestRestoreRecorderRefusesMismatchedFile(t *testing.T) {
	dir := t.TempDir()
	r := NewRecorder(RecorderConfig{Dir: dir, Now: stepClock()})
	record(t, r, synthStream(0, time.Second, true))
	st, f, err := r.State()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != st.Offset {
		t.Fatalf("after State the file has %v bytes (%v), Offset %d", fi.Size(), err, st.Offset)
	}

	short := st
	short.Offset--
	notStarted := st
	notStarted.Started = false
	negative := st
	negative.SegmentDuration = -time.Second
	for _, tc := range []struct {
		name string
		st   RecorderState
		want string
	}{
		{"size differs from Offset", short, "state says"},
		{"file without a segment", notStarted, "no open segment"},
		{"negative segment duration", negative, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RestoreRecorder(tc.st, f, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RestoreRecorder err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLastTagTS(t *testing.T) {
	dir := t.TempDir()
	file := AppendFileHeader(nil, true, true)
	file, _ = AppendTag(file, Tag{TagVideo, 0x01020304, []byte{0x17, 1, 0, 0, 0}})
	file, _ = AppendTag(file, Tag{TagAudio, 0xfe000010, []byte{0xaf, 1, 9}})
	badPrev := bytes.Clone(file)
	badPrev[len(badPrev)-1] = 0xff
	badSize := bytes.Clone(file)
	badSize[len(badSize)-4-TagHeaderSize-3+1] ^= 1 // the last tag's data size
	for _, tc := range []struct {
		name string
		file []byte
		want uint32
		err  string
	}{
		{"two tags", file, 0xfe000010, ""},
		{"header only", AppendFileHeader(nil, true, true), 0, "no tag"},
		{"PreviousTagSize past the start", badPrev, 0, "PreviousTagSize"},
		{"header disagrees with PreviousTagSize", badSize, 0, "header says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".flv")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := lastTagTS(path, int64(len(tc.file)))
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Errorf("lastTagTS = %#x, %v; want %#x", got, err, tc.want)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("lastTagTS err = %v, want one mentioning %q", err, tc.err)
			}
		})
	}
}
