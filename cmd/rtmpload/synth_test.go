package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediad/mediad/ingest/flv"
)

func TestSynthesize(t *testing.T) {
	tests := []struct {
		name string
		cfg  SynthConfig
	}{
		{"default 2M", SynthConfig{Bitrate: 2_000_000, AudioBitrate: 128_000, FPS: 30, GOP: 60}},
		{"506k as in the targets", SynthConfig{Bitrate: 506_000, AudioBitrate: 64_000, FPS: 25, GOP: 50}},
		{"ntsc rate, 1 s gop", SynthConfig{Bitrate: 1_000_000, AudioBitrate: 96_000, FPS: 29.97, GOP: 30}},
		{"video only, odd gop", SynthConfig{Bitrate: 800_000, FPS: 24, GOP: 37, Seconds: 3}},
		{"all keyframes", SynthConfig{Bitrate: 300_000, FPS: 10, GOP: 1, Seconds: 2}},
		{"high rate", SynthConfig{Bitrate: 8_000_000, AudioBitrate: 192_000, FPS: 60, GOP: 120, Seconds: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip, err := Synthesize(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkSynthClip(t, tt.cfg, clip)
		})
	}
}

func checkSynthClip(t *testing.T, cfg SynthConfig, clip *Clip) {
	t.Helper()
	wantHeaders := 1
	if cfg.AudioBitrate > 0 {
		wantHeaders = 2
	}
	if len(clip.Headers) != wantHeaders {
		t.Fatalf("%d sequence headers, want %d", len(clip.Headers), wantHeaders)
	}
	for _, h := range clip.Headers {
		if !flv.IsSequenceHeader(h.Type, h.Data) {
			t.Errorf("header tag type %d % x is not a sequence header", h.Type, h.Data[:2])
		}
	}
	if !isMetadata(clip.Metadata) {
		t.Errorf("metadata does not start with onMetaData")
	}

	// Keyframe cadence: exactly every GOP-th video frame, starting with
	// the first, and every frame a well-formed single NAL unit.
	var video, audio []Tag
	var prev uint32
	for i, tag := range clip.Body {
		if tag.TS < prev {
			t.Fatalf("tag %d: timestamp %d after %d", i, tag.TS, prev)
		}
		prev = tag.TS
		switch tag.Type {
		case flv.TagVideo:
			video = append(video, tag)
		case flv.TagAudio:
			audio = append(audio, tag)
		default:
			t.Fatalf("tag %d: type %d", i, tag.Type)
		}
	}
	if len(video)%cfg.GOP != 0 || len(video) == 0 {
		t.Fatalf("%d video frames, not a whole number of %d-frame GOPs", len(video), cfg.GOP)
	}
	for i, v := range video {
		wantKey := i%cfg.GOP == 0
		if got := flv.IsVideoKeyframe(v.Data); got != wantKey {
			t.Fatalf("video frame %d: keyframe %v, want %v", i, got, wantKey)
		}
		if flv.IsSequenceHeader(flv.TagVideo, v.Data) {
			t.Fatalf("video frame %d is a sequence header", i)
		}
		nalLen := binary.BigEndian.Uint32(v.Data[5:9])
		if int(nalLen) != len(v.Data)-9 {
			t.Fatalf("video frame %d: NALU length %d in a %d-byte tag", i, nalLen, len(v.Data))
		}
		wantNAL := byte(0x41)
		if wantKey {
			wantNAL = 0x65
		}
		if v.Data[9] != wantNAL {
			t.Fatalf("video frame %d: NAL header %#x, want %#x", i, v.Data[9], wantNAL)
		}
		if bytes.Contains(v.Data[10:], []byte{0, 0, 0}) || bytes.Contains(v.Data[10:], []byte{0, 0, 1}) {
			t.Fatalf("video frame %d: start code emulation in the NAL unit", i)
		}
		if want := uint32(math.Round(float64(i) * 1000 / cfg.FPS)); v.TS != want {
			t.Fatalf("video frame %d: timestamp %d, want %d", i, v.TS, want)
		}
	}

	// Bitrate within 10% over one pass, as the server will see it.
	if got := clip.Bitrate(); math.Abs(got-float64(cfg.Bitrate)) > 0.1*float64(cfg.Bitrate) {
		t.Errorf("bitrate %.0f, want %d ± 10%%", got, cfg.Bitrate)
	}
	passSeconds := float64(clip.Loop) / 1000
	if cfg.AudioBitrate > 0 {
		wantFrames := passSeconds * aacSampleRate / aacSamplesPerFrame
		if math.Abs(float64(len(audio))-wantFrames) > 1.5 {
			t.Errorf("%d AAC frames in %.3f s, want about %.1f", len(audio), passSeconds, wantFrames)
		}
		audioBytes := 0
		for _, a := range audio {
			if a.Data[0] != 0xAF || a.Data[1] != 1 {
				t.Fatalf("AAC frame header % x", a.Data[:2])
			}
			audioBytes += len(a.Data)
		}
		if got := float64(audioBytes) * 8 / passSeconds; math.Abs(got-float64(cfg.AudioBitrate)) > 0.1*float64(cfg.AudioBitrate) {
			t.Errorf("audio bitrate %.0f, want %d ± 10%%", got, cfg.AudioBitrate)
		}
	} else if len(audio) > 0 {
		t.Errorf("%d audio frames without audio configured", len(audio))
	}

	// The next pass continues one frame after the last video frame.
	frame := uint32(math.Round(1000 / cfg.FPS))
	lastVideo := video[len(video)-1].TS
	if d := int(clip.Loop) - int(lastVideo+frame); d < -1 || d > 1 {
		t.Errorf("loop %d ms, want last video frame %d + %d", clip.Loop, lastVideo, frame)
	}
	if n := len(audio); n > 0 && audio[n-1].TS >= clip.Loop {
		t.Errorf("audio at %d ms beyond the loop at %d", audio[n-1].TS, clip.Loop)
	}
}

func TestSynthesizeDeterministic(t *testing.T) {
	cfg := SynthConfig{Bitrate: 500_000, AudioBitrate: 64_000, FPS: 30, GOP: 30, Seconds: 2, Seed: 7}
	a, err := Synthesize(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Synthesize(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Body) != len(b.Body) {
		t.Fatalf("%d vs %d tags", len(a.Body), len(b.Body))
	}
	for i := range a.Body {
		if !bytes.Equal(a.Body[i].Data, b.Body[i].Data) {
			t.Fatalf("tag %d differs between two runs with one seed", i)
		}
	}
}

func TestSynthesizeRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  SynthConfig
		want string
	}{
		{"zero fps", SynthConfig{Bitrate: 1e6, FPS: 0, GOP: 30}, "fps"},
		{"NaN fps", SynthConfig{Bitrate: 1e6, FPS: math.NaN(), GOP: 30}, "fps"},
		{"zero gop", SynthConfig{Bitrate: 1e6, FPS: 30, GOP: 0}, "gop"},
		{"audio eats it all", SynthConfig{Bitrate: 128_000, AudioBitrate: 128_000, FPS: 30, GOP: 30}, "bytes per video frame"},
		{"audio too thin", SynthConfig{Bitrate: 1e6, AudioBitrate: 100, FPS: 30, GOP: 30}, "audio bitrate"},
		{"negative audio", SynthConfig{Bitrate: 1e6, AudioBitrate: -1, FPS: 30, GOP: 30}, "audio"},
		{"too long", SynthConfig{Bitrate: 1e6, FPS: 30, GOP: 30, Seconds: 3600}, "clip length"},
		{"too big", SynthConfig{Bitrate: 1e9, FPS: 30, GOP: 30}, "MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Synthesize(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one about %q", err, tt.want)
			}
		})
	}
}

// The parameter sets are checked against bit strings derived by hand from
// H.264 §7.3.2.1 and §7.3.2.2; ffprobe agrees (TestSynthesizeFFprobe).
func TestSynthParameterSets(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"SPS", synthSPS(), []byte{0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40, 0x16, 0xE4}},
		{"PPS", synthPPS(), []byte{0x68, 0xCE, 0x3C, 0x80}},
		{"AAC config", aacSequenceHeader(), []byte{0xAF, 0x00, 0x12, 0x10}},
	}
	for _, tt := range tests {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("%s = % x, want % x", tt.name, tt.got, tt.want)
		}
	}
	rec := avcSequenceHeader()
	want := []byte{0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1F, 0xFF, 0xE1, 0, 9}
	if !bytes.HasPrefix(rec, want) {
		t.Errorf("AVC sequence header starts % x, want % x", rec[:len(want)], want)
	}
}

func TestBitWriter(t *testing.T) {
	tests := []struct {
		name  string
		write func(w *bitWriter)
		want  string // bits
	}{
		{"ue 0", func(w *bitWriter) { w.ue(0) }, "1"},
		{"ue 1", func(w *bitWriter) { w.ue(1) }, "010"},
		{"ue 2", func(w *bitWriter) { w.ue(2) }, "011"},
		{"ue 3", func(w *bitWriter) { w.ue(3) }, "00100"},
		{"ue 7", func(w *bitWriter) { w.ue(7) }, "0001000"},
		{"se 1", func(w *bitWriter) { w.se(1) }, "010"},
		{"se -1", func(w *bitWriter) { w.se(-1) }, "011"},
		{"se 2", func(w *bitWriter) { w.se(2) }, "00100"},
		{"u 4", func(w *bitWriter) { w.u(4, 5) }, "0101"},
		{"across bytes", func(w *bitWriter) { w.u(6, 0); w.u(4, 0xF) }, "0000001111"},
	}
	for _, tt := range tests {
		var w bitWriter
		tt.write(&w)
		var got strings.Builder
		for i := range w.nbits {
			got.WriteByte('0' + w.b[i/8]>>(7-i%8)&1)
		}
		if got.String() != tt.want {
			t.Errorf("%s: bits %s, want %s", tt.name, got.String(), tt.want)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte{1, 2, 3}, []byte{1, 2, 3}},
		{[]byte{0, 0, 0}, []byte{0, 0, 3, 0}},
		{[]byte{0, 0, 1}, []byte{0, 0, 3, 1}},
		{[]byte{0, 0, 3}, []byte{0, 0, 3, 3}},
		{[]byte{0, 0, 4}, []byte{0, 0, 4}},
		{[]byte{0, 0, 0, 0, 0}, []byte{0, 0, 3, 0, 0, 3, 0}},
		{[]byte{5, 0, 0, 2, 0, 0}, []byte{5, 0, 0, 3, 2, 0, 0}},
	}
	for _, tt := range tests {
		if got := escape(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("escape(% x) = % x, want % x", tt.in, got, tt.want)
		}
	}
}

// needTools skips when ffmpeg tools are missing on a developer machine; in
// CI they are required.
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

// ffprobe must read the synthetic stream's parameters and frame types as
// the generator meant them; it cannot decode the noise, which is fine.
func TestSynthesizeFFprobe(t *testing.T) {
	needTools(t, "ffprobe")
	cfg := SynthConfig{Bitrate: 1_000_000, AudioBitrate: 128_000, FPS: 30, GOP: 30, Seconds: 2}
	clip, err := Synthesize(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "synth.flv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := clip.WriteFLV(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "ffprobe", "-v", "quiet",
		"-show_entries", "stream=codec_name,profile,width,height,level,sample_rate,channels",
		"-of", "compact=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe streams: %v", err)
	}
	got := strings.Fields(strings.ReplaceAll(string(out), "|", " "))
	for _, want := range []string{"codec_name=h264", "profile=Constrained Baseline", "width=1280", "height=720",
		"level=31", "codec_name=aac", "profile=LC", "sample_rate=44100", "channels=2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ffprobe streams lack %q: %v", want, got)
		}
	}
	out, err = exec.CommandContext(t.Context(), "ffprobe", "-v", "quiet", "-select_streams", "v",
		"-show_entries", "packet=flags", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe packets: %v", err)
	}
	flags := strings.Fields(string(out))
	if len(flags) != 60 {
		t.Fatalf("ffprobe read %d video packets, want 60", len(flags))
	}
	for i, fl := range flags {
		if key := strings.HasPrefix(fl, "K"); key != (i%cfg.GOP == 0) {
			t.Errorf("video packet %d flags %q", i, fl)
		}
	}
}
