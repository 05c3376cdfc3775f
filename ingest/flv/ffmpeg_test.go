package flv

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needTools skips the test when ffmpeg tools are missing on a developer
// machine; in CI they are required.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI: %v", name, err)
			}
			t.Skipf("%s not installed: %v", name, err)
		}
	}
}

// probePackets lists a file's packets as "codec_type,dts,size,flags", in file
// order.
func probePackets(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ffprobe", "-v", "error",
		"-show_entries", "packet=codec_type,dts,size,flags", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

func TestRecorderSegmentsRealH264AAC(t *testing.T) {
	needTools(t, "ffmpeg", "ffprobe")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.flv")
	cmd := exec.CommandContext(t.Context(), "ffmpeg", "-v", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
		"-f", "lavfi", "-i", "sine",
		"-t", "6", "-c:v", "libx264", "-g", "30", "-c:a", "aac", "-f", "flv", in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}

	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fr, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(RecorderConfig{Dir: filepath.Join(dir, "rec"), SegmentDuration: 2 * time.Second, Now: stepClock()})
	var media int
	for {
		tag, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if tag.Type == TagScript {
			r.SetMetadata(tag.Data)
			continue
		}
		if err := r.Write(tag.Type, tag.Timestamp, tag.Data); err != nil {
			t.Fatal(err)
		}
		media++
		if media == 100 {
			// A publisher's mid-broadcast metadata update must leave the
			// segment readable.
			r.SetMetadata(metaBody(6))
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if media < 400 {
		t.Fatalf("read only %d media tags from ffmpeg's 6 s file", media)
	}

	want := probePackets(t, in)
	segs := r.Segments()
	// Keyframes every second from 0: cuts at 2 s and 4 s.
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	var got []string
	for i, seg := range segs {
		out, err := exec.CommandContext(t.Context(), "ffprobe", "-v", "error",
			"-show_entries", "stream=codec_type", "-of", "csv=p=0", seg).Output()
		if err != nil {
			t.Fatalf("ffprobe %s: %v", seg, err)
		}
		if streams := strings.Join(strings.Fields(string(out)), ","); streams != "video,audio" {
			t.Errorf("segment %d has streams %s, want video,audio", i, streams)
		}
		pkts := probePackets(t, seg)
		for _, p := range pkts {
			if strings.HasPrefix(p, "video,") {
				if !strings.HasSuffix(p, ",K_") {
					t.Errorf("segment %d: first video packet %q is not a keyframe", i, p)
				}
				break
			}
		}
		got = append(got, pkts...)
	}
	if len(got) != len(want) {
		t.Fatalf("segments hold %d packets, input %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("packet %d = %s, input has %s", i, got[i], want[i])
		}
	}
}
