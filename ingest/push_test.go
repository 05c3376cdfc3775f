package ingest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/relay"
)

func pushTo(t *testing.T, url string) []relay.Target {
	t.Helper()
	tg, err := relay.ParseTarget("", url)
	if err != nil {
		t.Fatal(err)
	}
	return []relay.Target{tg}
}

// relayOf returns the first relay of app/key as the API shows it.
func relayOf(srv *Server, key string) (RelayInfo, bool) {
	for _, st := range srv.Registry().List() {
		if st.Key == key && len(st.Relays) > 0 {
			return st.Relays[0], true
		}
	}
	return RelayInfo{}, false
}

// contiguous checks that frames, numbered by the publisher, run without a
// gap or a repeat from the first received to the last sent.
func (f *liveFeed) contiguous(sent int) {
	f.t.Helper()
	waitFor(f.t, "the downstream player to catch up", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.got) > 0 && int(f.got[len(f.got)-1]) >= sent-1
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	first := int(f.got[0])
	for i, n := range f.got {
		if int(n) != first+i {
			f.t.Fatalf("downstream frame %d is frame %d, want %d: a gap or a duplicate", i, n, first+i)
		}
	}
	if first%25 != 0 {
		f.t.Fatalf("downstream started at frame %d, not at a keyframe", first)
	}
	if last := first + len(f.got) - 1; last != sent-1 {
		f.t.Fatalf("downstream ended at frame %d, publisher sent %d", last, sent)
	}
}

// A relay moves with the stream: across three in-process upgrades the
// downstream server sees one publish connection and its player every frame
// from the relay's first keyframe on, in order.
func TestPushRelayMovesWithoutReconnect(t *testing.T) {
	down, downAddr, _ := startServer(t, Config{})
	cfg := Config{Push: pushTo(t, "rtmp://"+downAddr+"/live/{key}?via=mediad")}
	src, srcAddr, _ := startServer(t, cfg)
	feed := startFeedVia(t, srcAddr, downAddr, "up")
	waitFor(t, "the relay to connect and deliver", func() bool { return feed.received() > 50 })
	cur := src
	for i := 0; i < 3; i++ {
		cur = upgradeInProcess(t, cur, cfg)
		n := feed.received()
		waitFor(t, "frames after the upgrade", func() bool { return feed.received() > n+30 })
	}
	close(feed.stop)
	if err := <-feed.pubDone; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	feed.contiguous(int(feed.sent.Load()))
	if got := down.Totals().Sessions; got != 2 {
		t.Errorf("downstream accepted %d connections, want 2 (its player and one relay)", got)
	}
	// The relay starts at a keyframe after it connects, so it owes the
	// payload of every frame from the downstream player's first one; it
	// counts a write after it returns, which may be after the player read it.
	feed.mu.Lock()
	first := int(feed.got[0])
	feed.mu.Unlock()
	var owed uint64
	for i := first; i < int(feed.sent.Load()); i++ {
		owed += uint64(len(videoFrame(false, feed.frameLen+i%4000, i)))
	}
	var ri RelayInfo
	var ok bool
	waitFor(t, "the relay's byte count to cover every frame it relayed", func() bool {
		ri, ok = relayOf(cur, "up")
		return ok && ri.BytesOut >= owed
	})
	if ri.State != relayConnected || ri.Reconnects != 0 {
		t.Errorf("relay after the upgrades: %+v", ri)
	}
	if !strings.Contains(ri.URL, "?via=mediad") {
		t.Errorf("relay URL %q lost its query", ri.URL)
	}
}

// A target that goes away is reconnected after the backoff, from a
// keyframe with the sequence header, and the publisher never notices.
func TestPushRelayReconnects(t *testing.T) {
	down, downAddr, _ := startServer(t, Config{})
	cfg := Config{Push: pushTo(t, "rtmp://"+downAddr+"/live/{key}")}
	src, srcAddr, _ := startServer(t, cfg)
	feed := startFeed(t, srcAddr, "re")
	waitFor(t, "the relay to connect", func() bool {
		ri, ok := relayOf(src, "re")
		return ok && ri.State == relayConnected
	})
	// The downstream restarts on the same port.
	down.Close()
	waitFor(t, "the relay to notice", func() bool {
		ri, _ := relayOf(src, "re")
		return ri.State != relayConnected
	})
	dropped := time.Now()
	ln, err := net.Listen("tcp", downAddr)
	if err != nil {
		t.Fatal(err)
	}
	down2 := NewServer(Config{})
	go down2.Serve(ln)
	t.Cleanup(func() { down2.Close() })
	pl := dialClient(t, downAddr)
	pl.play("live", "re")
	sawSeq, sawKey := false, false
	for !sawKey {
		m, err := pl.next()
		if err != nil {
			t.Fatalf("downstream player after the restart: %v", err)
		}
		if m.TypeID != 9 {
			continue
		}
		if bytes.Equal(m.Payload, avcSeqHeader) {
			sawSeq = true
			continue
		}
		if m.Payload[0]>>4 != 1 {
			t.Fatalf("first frame after the reconnect is not a keyframe: %x", m.Payload[:2])
		}
		sawKey = true
	}
	if !sawSeq {
		t.Error("the reconnected relay sent no sequence header before its keyframe")
	}
	if took := time.Since(dropped); took > 5*time.Second {
		t.Errorf("reconnected %v after the drop, backoff starts at 1 s", took)
	}
	ri, _ := relayOf(src, "re")
	if ri.Reconnects < 1 || ri.LastError == "" {
		t.Errorf("relay after a reconnect: %+v", ri)
	}
	// The local player saw every frame: the relay never held the
	// publisher up.
	feed.finish()
}

// stallProxy forwards a connection to addr and stops reading from its
// client while stalled: a target that is too slow.
type stallProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
}

func newStallProxy(t *testing.T, addr string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, resume: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go io.Copy(c, up)
			go func() {
				buf := make([]byte, 4096)
				for {
					p.mu.Lock()
					stalled, resume := p.stalled, p.resume
					p.mu.Unlock()
					if stalled {
						<-resume
					}
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := up.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *stallProxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on == p.stalled {
		return
	}
	p.stalled = on
	if !on {
		close(p.resume)
		p.resume = make(chan struct{})
	}
}

// A target that stops reading loses whole GOPs, counted, and keeps its
// connection; the publisher and a local player lose nothing.
func TestPushSlowTargetDropsGOPs(t *testing.T) {
	_, downAddr, _ := startServer(t, Config{})
	proxy := newStallProxy(t, downAddr)
	cfg := Config{Push: pushTo(t, "rtmp://"+proxy.ln.Addr().String()+"/live/{key}"), PlayerQueueBytes: 256 << 10, WriteTimeout: time.Minute}
	src, srcAddr, _ := startServer(t, cfg)
	feed := startFeed(t, srcAddr, "slow")
	waitFor(t, "the relay to connect", func() bool {
		ri, ok := relayOf(src, "slow")
		return ok && ri.State == relayConnected
	})
	proxy.stall(true)
	waitFor(t, "the relay to drop a GOP", func() bool {
		ri, _ := relayOf(src, "slow")
		return ri.Drops >= 2
	})
	proxy.stall(false)
	before, _ := relayOf(src, "slow")
	waitFor(t, "the relay to write again", func() bool {
		ri, _ := relayOf(src, "slow")
		return ri.BytesOut > before.BytesOut+1<<20
	})
	ri, _ := relayOf(src, "slow")
	if ri.State != relayConnected || ri.Reconnects != 0 {
		t.Errorf("slow relay: %+v, want still connected", ri)
	}
	feed.finish()
}

// tlsFront terminates TLS with a certificate for 127.0.0.1 and forwards to
// addr.
func tlsFront(t *testing.T, addr string) (string, *tls.Config) {
	cert, pool := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return ln.Addr().String(), &tls.Config{RootCAs: pool}
}

// A TLS relay cannot move: it stays out of the park, is closed when its
// stream moves, and the new process connects afresh; the downstream then
// sees a second publish, starting at a keyframe.
func TestPushTLSRelayReconnectsAfterUpgrade(t *testing.T) {
	down, downAddr, downLogs := startServer(t, Config{})
	front, tlsCfg := tlsFront(t, downAddr)
	cfg := Config{Push: pushTo(t, "rtmps://"+front+"/live/{key}"), PushTLS: tlsCfg}
	src, srcAddr, _ := startServer(t, cfg)
	feed := startFeed(t, srcAddr, "sec")
	waitFor(t, "the TLS relay to connect", func() bool {
		ri, ok := relayOf(src, "sec")
		return ok && ri.State == relayConnected && ri.TLS && ri.BytesOut > 0
	})
	next := upgradeInProcess(t, src, cfg)
	waitFor(t, "the new process's TLS relay", func() bool {
		ri, ok := relayOf(next, "sec")
		return ok && ri.State == relayConnected && ri.BytesOut > 0
	})
	// The new relay can dial before the downstream has seen the old one
	// close (through the TLS front): it is refused as a second publisher
	// and dials again after its backoff.
	refused := strings.Count(downLogs.String(), "already being published")
	if got := down.Totals().Sessions; got != uint64(2+refused) {
		t.Errorf("downstream accepted %d connections, want 2 and the %d it refused: the TLS relay reconnects once", got, refused)
	}
	feed.finish()
}

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts
// it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mediad test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A downstream that answers garbage mid-publish: the relay is closed and
// connected again, the publisher and a local player lose nothing, and the
// rest of the server never notices.
func TestPushGarbageFromTargetReconnects(t *testing.T) {
	_, downAddr, _ := startServer(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	inject, stop := make(chan struct{}), make(chan struct{})
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	t.Cleanup(func() { close(stop) })
	go func() {
		first := true
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", downAddr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			conns.Add(2)
			go func() { defer conns.Done(); io.Copy(up, c); up.Close() }()
			garble := first
			first = false
			go func() {
				defer conns.Done()
				if !garble {
					io.Copy(c, up)
					return
				}
				// Forward, and once told answer garbage as well: a chunk
				// on a stream never opened.
				go io.Copy(c, up)
				select {
				case <-inject:
					c.Write(bytes.Repeat([]byte{0xff}, 64))
				case <-stop:
				}
			}()
		}
	}()
	cfg := Config{Push: pushTo(t, "rtmp://"+ln.Addr().String()+"/live/{key}")}
	src, srcAddr, _ := startServer(t, cfg)
	feed := startFeed(t, srcAddr, "junk")
	waitFor(t, "the relay to connect", func() bool {
		ri, ok := relayOf(src, "junk")
		return ok && ri.State == relayConnected && ri.BytesOut > 0
	})
	close(inject)
	waitFor(t, "the relay to reconnect after the garbage", func() bool {
		ri, _ := relayOf(src, "junk")
		return ri.Reconnects >= 1 && ri.State == relayConnected
	})
	ri, _ := relayOf(src, "junk")
	if ri.LastError == "" {
		t.Errorf("relay after garbage: %+v, want the error kept", ri)
	}
	feed.finish()
}
