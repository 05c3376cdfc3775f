package handshake

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "capture a fresh ffmpeg C0C1 into "+goldenC0C1)

// goldenC0C1 is a C0+C1 captured once from ffmpeg 5.1 publishing; it pins
// what a real client sends, independently of the ffmpeg installed now.
var goldenC0C1 = filepath.Join("..", "..", "testdata", "handshake", "ffmpeg51_c0c1.bin")

// requireFFmpeg returns ffmpeg's path. It skips when ffmpeg is missing
// outside CI; in CI a missing ffmpeg is a failure.
func requireFFmpeg(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg is required in CI: %v", err)
		}
		t.Skipf("ffmpeg not installed: %v", err)
	}
	return path
}

// runFFmpeg starts ffmpeg against a fresh 127.0.0.1 listener and returns
// the accepted connection. When ffmpeg exits, the listener and connection
// are closed so no read waits for a client that is gone; stderr holds its
// output once exited is closed.
func runFFmpeg(t *testing.T, args func(url string) []string) (conn net.Conn, stderr *bytes.Buffer, exited <-chan struct{}) {
	t.Helper()
	ffmpeg := requireFFmpeg(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "rtmp://" + ln.Addr().String() + "/live/x"
	cmd := exec.Command(ffmpeg, append([]string{"-nostdin", "-hide_banner", "-loglevel", "error"}, args(url)...)...)
	stderr = new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		ln.Close()
		t.Fatalf("start ffmpeg: %v", err)
	}
	done := make(chan struct{})
	accepted := make(chan net.Conn, 1)
	go func() {
		cmd.Wait()
		ln.Close()
		if c := <-accepted; c != nil {
			c.Close()
		}
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})

	conn, err = ln.Accept()
	accepted <- conn
	if err != nil {
		<-done
		t.Fatalf("ffmpeg never connected: %v\nffmpeg: %s", err, stderr)
	}
	// A safety net against a wedged ffmpeg, not a measurement: a healthy
	// exchange takes milliseconds.
	conn.SetDeadline(time.Now().Add(time.Minute))
	return conn, stderr, done
}

func publishArgs(url string) []string {
	return []string{"-re", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=5", "-t", "1", "-f", "flv", url}
}

func playArgs(url string) []string {
	return []string{"-i", url, "-f", "null", "-"}
}

// TestCaptureFFmpegC0C1 rewrites the golden C0C1 when run with -update.
func TestCaptureFFmpegC0C1(t *testing.T) {
	if !*update {
		t.Skip("run with -update to capture a new ffmpeg C0C1")
	}
	conn, stderr, _ := runFFmpeg(t, publishArgs)
	c0c1 := make([]byte, C0C1Size)
	if _, err := io.ReadFull(conn, c0c1); err != nil {
		t.Fatalf("read C0C1: %v\nffmpeg: %s", err, stderr)
	}
	conn.Close()
	if err := os.WriteFile(goldenC0C1, c0c1, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFFmpegGoldenC0C1(t *testing.T) {
	c0c1, err := os.ReadFile(goldenC0C1)
	if err != nil {
		t.Fatal(err)
	}
	if len(c0c1) != C0C1Size || c0c1[0] != Version {
		t.Fatalf("golden: %d bytes, C0 %d; want %d bytes, C0 3", len(c0c1), c0c1[0], C0C1Size)
	}
	// ffmpeg claims Flash Player 9.0.124.2 and uses scheme 0.
	if !bytes.Equal(c0c1[5:9], []byte{9, 0, 124, 2}) {
		t.Fatalf("golden C1 version = %x, want 09007c02", c0c1[5:9])
	}
	if _, ok := refCheck(c0c1[1:], 8, refPlayerText); !ok {
		t.Fatal("golden C1 has no client digest at scheme 0")
	}

	var s Server
	n, reply, err := s.Feed(c0c1, detRand(1), 99)
	if err != nil || n != C0C1Size {
		t.Fatalf("Feed(golden) = %d, %v", n, err)
	}
	checkDigestReply(t, c0c1, reply, 8, 8)
}

// TestFFmpegHandshake lets a real ffmpeg handshake with Server and asserts
// it goes on to send its connect command rather than hanging up; as a
// player, ffmpeg first verifies S1's and S2's digests.
func TestFFmpegHandshake(t *testing.T) {
	tests := []struct {
		name string
		args func(url string) []string
	}{
		{"player", playArgs},
		{"publisher", publishArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, stderr, exited := runFFmpeg(t, tt.args)
			rest, s1Version, err := serve(conn, rand.Reader)
			if err != nil {
				<-exited
				t.Fatalf("handshake: %v\nffmpeg: %s", err, stderr)
			}
			if bytes.Equal(s1Version, []byte{0, 0, 0, 0}) {
				t.Fatal("ffmpeg's C1 was answered with a simple handshake; want digest")
			}

			// Chunk basic header (fmt 0, csid 3), an 11-byte type 0 header,
			// then the AMF0 string "connect" that opens the payload.
			first := make([]byte, 1+11+3+7)
			k := copy(first, rest)
			if _, err := io.ReadFull(conn, first[k:]); err != nil {
				conn.Close()
				<-exited
				t.Fatalf("ffmpeg sent no chunk data after the handshake (%v)\nffmpeg: %s", err, stderr)
			}
			if first[0] != 0x03 {
				t.Errorf("basic header = %#x, want 0x03 (fmt 0, csid 3)", first[0])
			}
			if first[7] != 20 {
				t.Errorf("message type = %d, want 20 (AMF0 command)", first[7])
			}
			if l := int(first[4])<<16 | int(first[5])<<8 | int(first[6]); l < 10 {
				t.Errorf("message length = %d, too short for connect", l)
			}
			if sid := binary.LittleEndian.Uint32(first[8:12]); sid != 0 {
				t.Errorf("message stream id = %d, want 0", sid)
			}
			if !bytes.Equal(first[12:], []byte("\x02\x00\x07connect")) {
				t.Errorf("payload starts %q, want AMF0 string \"connect\"", first[12:])
			}
		})
	}
}
