package ingest

import (
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var updateCapture = flag.Bool("update-capture", false, "re-capture testdata/rtmp from real ffmpeg")

// captureFile is a real ffmpeg 5.1 publish, client to server bytes from C0
// to the close: handshake, commands, metadata and 3 s of H.264/AAC.
var captureFile = filepath.Join("..", "testdata", "rtmp", "ffmpeg51_publish.bin")

// TestCaptureFFmpegPublish regenerates the capture when asked to. The
// capture is a golden input: tests elsewhere replay it byte by byte.
func TestCaptureFFmpegPublish(t *testing.T) {
	if !*updateCapture {
		t.Skip("run with -update-capture to re-capture")
	}
	_, addr, _ := startServer(t, Config{RecordDir: t.TempDir()})
	proxy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var captured []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := proxy.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		up, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer up.Close()
		go io.Copy(c, up)
		captured, _ = io.ReadAll(io.TeeReader(c, up))
	}()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
		"-t", "3", "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-b:v", "600k", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k",
		"-f", "flv", "rtmp://"+proxy.Addr().String()+"/live/capture")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	wg.Wait()
	if len(captured) > 1<<20 {
		t.Fatalf("capture is %d bytes, over 1 MiB", len(captured))
	}
	if err := os.WriteFile(captureFile, captured, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("captured %d bytes", len(captured))
}
