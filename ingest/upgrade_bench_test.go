package ingest

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/state"
)

// BenchmarkParkRestore measures the in-process part of an upgrade for N
// publishers that keep sending: park every session, encode and decode
// every envelope, copy every lent descriptor (as the kernel does), restore, commit, start. It
// reports the per-stream stall (old last read to new first read) and the
// phases. The process handoff itself is measured by scripts/bench-upgrade.sh.
// With hls=true every stream is muxed to LL-HLS, its files on a tmpfs
// where there is one (as under systemd), for a profile of what LL-HLS adds
// to the park and the restore (-cpuprofile).
//
// With ahead, the static parts go first (Presend, outside the figures, as
// outside the stall) and the park exports tails: the difference is what
// going ahead takes out of the time every session waits.
func BenchmarkParkRestore(b *testing.B) {
	for _, hls := range []bool{false, true} {
		for _, n := range []int{100, 1000} {
			for _, ahead := range []bool{false, true} {
				benchParkRestore(b, n, hls, ahead)
			}
		}
	}
}

// crossed is an item as the new process gets it: its envelope through the
// wire form, its lent descriptors copied.
func crossed(b *testing.B, it ParkedSession) ParkedSession {
	wire, _ := state.MarshalEnvelope(it.Envelope)
	env, err := state.UnmarshalEnvelope(wire)
	if err != nil {
		b.Fatal(err)
	}
	out := ParkedSession{Envelope: env}
	for _, fd := range it.Borrowed {
		d, err := dupFile(uintptr(fd), "lent")
		if err != nil {
			b.Fatal(err)
		}
		out.Files = append(out.Files, d)
	}
	return out
}

func benchParkRestore(b *testing.B, n int, hls, ahead bool) {
	name := fmt.Sprintf("streams=%d", n)
	if hls {
		name += "/hls"
	}
	if ahead {
		name += "/ahead"
	}
	b.Run(name, func(b *testing.B) {
		cfg := Config{}
		if hls {
			dir, err := os.MkdirTemp("/dev/shm", "mediad-bench-")
			if err != nil {
				dir = b.TempDir()
			} else {
				defer os.RemoveAll(dir)
			}
			cfg.HLSDir = dir
		}
		srv, addr, _ := startServer(b, cfg)
		stop := make(chan struct{})
		defer close(stop)
		var media []chunk.Message
		if hls {
			// The muxer needs real H.264 and AAC.
			media = capturedMedia(b)
		}
		for i := range n {
			c := dialClient(b, addr)
			msid, code := c.publish("live", fmt.Sprintf("s%d", i))
			if code != "NetStream.Publish.Start" {
				b.Fatal(code)
			}
			if hls {
				go pumpCapture(c.conn, c.w, msid, media, stop)
				continue
			}
			go pump(c.conn, c.w, msid, stop)
		}
		if hls {
			// Until every stream has a segment or two, as a broadcast
			// that has run for a while has.
			waitFor(b, "two segments a stream", func() bool { return countSegments(cfg.HLSDir) >= 2*n })
		}
		var stalls []time.Duration
		var park, restore, total time.Duration
		cur := srv
		b.ResetTimer()
		for range b.N {
			next := NewServer(cfg)
			rs := next.BeginRestore()
			var pre *Presented
			if ahead {
				b.StopTimer()
				var bases []ParkedSession
				var mu sync.Mutex
				var err error
				pre, err = cur.Presend(state.Version, func(ps []ParkedSession) error {
					mu.Lock()
					defer mu.Unlock()
					for _, it := range ps {
						bases = append(bases, crossed(b, it))
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				rs.Add(bases)
				rs.Built()
				b.StartTimer()
			}
			t0 := time.Now()
			parked, err := cur.ParkAfter(context.Background(), state.Version, pre, nil)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			items := make([]ParkedSession, len(parked.Items))
			for i, it := range parked.Items {
				items[i] = crossed(b, it)
			}
			rs.Add(items)
			restored, err := rs.Finish()
			if err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			// As between processes: the new side starts as soon as the
			// commit is sent; the old side closes its copies meanwhile.
			restored.Start()
			parked.Commit()
			total += time.Since(t0)
			park += t1.Sub(t0)
			restore += t2.Sub(t1)
			deadline := time.Now().Add(10 * time.Second)
			for len(next.Stalls()) < n && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			stalls = append(stalls, next.Stalls()...)
			cur.Close()
			cur = next
		}
		b.StopTimer()
		cur.Close()
		slices.Sort(stalls)
		if len(stalls) > 0 {
			b.ReportMetric(float64(stalls[len(stalls)/2].Microseconds())/1000, "stall-p50-ms")
			b.ReportMetric(float64(stalls[len(stalls)*99/100].Microseconds())/1000, "stall-p99-ms")
			b.ReportMetric(float64(stalls[len(stalls)-1].Microseconds())/1000, "stall-max-ms")
		}
		b.ReportMetric(float64(park.Microseconds())/1000/float64(b.N), "park-ms")
		b.ReportMetric(float64(restore.Microseconds())/1000/float64(b.N), "transfer+restore-ms")
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "upgrade-ms")
	})
}

// pump sends a small video frame every 10 ms until stop.
func pump(c net.Conn, w *chunk.Writer, msid uint32, stop <-chan struct{}) {
	var buf []byte
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		buf = w.Append(buf[:0], &chunk.Message{CSID: 6, TypeID: chunk.TypeVideo, StreamID: msid, Timestamp: uint32(i * 10), Payload: videoFrame(i%50 == 0, 600, i)})
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// capturedMedia is the audio and video of ffmpeg 5.1 publishing a test
// pattern (testdata/rtmp), a few seconds of it.
func capturedMedia(t testing.TB) []chunk.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "rtmp", "ffmpeg51_publish.bin"))
	if err != nil {
		t.Fatal(err)
	}
	b = b[1+1536+1536:] // C0, C1, C2
	var out []chunk.Message
	r := chunk.NewReader(0)
	if err := r.Feed(b, func(m *chunk.Message) error {
		if m.TypeID == chunk.TypeAudio || m.TypeID == chunk.TypeVideo {
			c := *m
			c.Payload = slices.Clone(m.Payload)
			out = append(out, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no media in the capture")
	}
	return out
}

// pumpCapture sends media at its timestamps, over and over, each round
// later by the capture's length and without its sequence headers, until
// stop.
func pumpCapture(c net.Conn, w *chunk.Writer, msid uint32, media []chunk.Message, stop <-chan struct{}) {
	span := media[len(media)-1].Timestamp + 40
	start := time.Now()
	var buf []byte
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	next := 0
	for round := uint32(0); ; {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		due := uint32(time.Since(start).Milliseconds())
		buf = buf[:0]
		for {
			m := media[next]
			ts := round*span + m.Timestamp
			if ts > due {
				break
			}
			if round == 0 || !flv.IsSequenceHeader(m.TypeID, m.Payload) {
				csid := uint32(6)
				if m.TypeID == chunk.TypeAudio {
					csid = 4
				}
				buf = w.Append(buf, &chunk.Message{CSID: csid, TypeID: m.TypeID, StreamID: msid, Timestamp: ts, Payload: m.Payload})
			}
			if next++; next == len(media) {
				next, round = 0, round+1
			}
		}
		if len(buf) > 0 {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}

// countSegments counts the media segment files under dir.
func countSegments(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".m4s") && !strings.Contains(filepath.Base(path), "init") {
			n++
		}
		return nil
	})
	return n
}

// BenchmarkPresend measures the static parts going ahead for 1,000
// publishers that keep sending: the old side taking and encoding the bases
// (with the lent descriptors copied, as the kernel does), the new side
// decoding them and building each session around its connection. It
// reports both per base; the new side's share is what an upgrade waits
// for before the park (built_ahead_ms, and the send's own pace).
func BenchmarkPresend(b *testing.B) {
	const n = 1000
	srv, addr, _ := startServer(b, Config{})
	stop := make(chan struct{})
	defer close(stop)
	for i := range n {
		c := dialClient(b, addr)
		msid, code := c.publish("live", fmt.Sprintf("s%d", i))
		if code != "NetStream.Publish.Start" {
			b.Fatal(code)
		}
		go pump(c.conn, c.w, msid, stop)
	}
	var send, build time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		var items []ParkedSession
		var mu sync.Mutex
		if _, err := srv.Presend(state.Version, func(ps []ParkedSession) error {
			mu.Lock()
			defer mu.Unlock()
			for _, it := range ps {
				wire, _ := state.MarshalEnvelope(it.Envelope)
				env, err := state.UnmarshalEnvelope(wire)
				if err != nil {
					return err
				}
				d, err := dupFile(uintptr(it.Borrowed[0]), "lent")
				if err != nil {
					return err
				}
				items = append(items, ParkedSession{Envelope: env, Files: []*os.File{d}})
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rs := NewServer(Config{}).BeginRestore()
		rs.Add(items)
		rs.Built()
		build += time.Since(t1)
		send += t1.Sub(t0)
		b.StopTimer()
		rs.Abandon()
		b.StartTimer()
	}
	b.ReportMetric(float64(send.Nanoseconds())/1000/float64(b.N*n), "send-us/base")
	b.ReportMetric(float64(build.Nanoseconds())/1000/float64(b.N*n), "build-us/base")
}
