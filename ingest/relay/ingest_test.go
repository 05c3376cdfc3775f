package relay_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/relay"
)

// startIngest runs mediad's ingest server in-process on a free loopback
// port.
func startIngest(t *testing.T, cfg ingest.Config) (*ingest.Server, string) {
	t.Helper()
	srv := ingest.NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ingest.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func stream(srv *ingest.Server, app, key string) (ingest.StreamInfo, bool) {
	for _, s := range srv.Registry().List() {
		if s.App == app && s.Key == key {
			return s, true
		}
	}
	return ingest.StreamInfo{}, false
}

func dial(t *testing.T, url string, opts relay.Options) (*relay.Conn, error) {
	t.Helper()
	ep, err := relay.ParseEndpoint(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return relay.Dial(ctx, ep, opts)
}

// send frames one message on the publish stream.
func send(t *testing.T, c *relay.Conn, csid uint32, typ uint8, payload []byte) {
	t.Helper()
	b := c.Writer.Append(nil, &chunk.Message{CSID: csid, TypeID: typ, StreamID: c.StreamID, Payload: payload})
	if _, err := c.NetConn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// publishMedia sends metadata through SetDataFrame and one AVC keyframe,
// and waits for mediad to count both.
func publishMedia(t *testing.T, srv *ingest.Server, c *relay.Conn, app, key string) {
	t.Helper()
	meta, err := amf0.AppendAll(nil, "onMetaData", amf0.ECMAArray{{Key: "encoder", Value: "relay-test"}, {Key: "width", Value: 640.0}})
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, 5, chunk.TypeDataAMF0, relay.SetDataFrame(meta))
	send(t, c, 6, chunk.TypeVideo, []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65})
	waitFor(t, "the keyframe and metadata", func() bool {
		s, ok := stream(srv, app, key)
		return ok && s.Live && s.Stats.Keyframes == 1 && s.Stats.Encoder == "relay-test"
	})
}

// TestDialMediad publishes to mediad's own ingest server, which then
// refuses a second publisher of the same key.
func TestDialMediad(t *testing.T) {
	relay.CheckGoroutines(t)
	srv, addr := startIngest(t, ingest.Config{})
	c, err := dial(t, "rtmp://"+addr+"/live/k1", relay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s, ok := stream(srv, "live", "k1"); !ok || !s.Live {
		t.Fatalf("after Dial the stream is %+v", s)
	}
	// mediad announces a 2.5 MB window and a 4096-byte chunk size.
	if c.AckWindow != 2_500_000 || c.Reader.ChunkSize() != 4096 || c.StreamID != 1 {
		t.Errorf("window %d, inbound chunk size %d, stream %d", c.AckWindow, c.Reader.ChunkSize(), c.StreamID)
	}
	publishMedia(t, srv, c, "live", "k1")

	_, err = dial(t, "rtmp://"+addr+"/live/k1", relay.Options{})
	var re *relay.RefusedError
	if !errors.As(err, &re) || re.Step != "publish" || re.Code != "NetStream.Publish.BadName" {
		t.Fatalf("second Dial: %v, want a BadName refusal of publish", err)
	}

	c.Close()
	waitFor(t, "the broadcast to end", func() bool {
		s, ok := stream(srv, "live", "k1")
		return !ok || !s.Live
	})
}

// TestDialMediadAuth checks that the query reaches mediad with the stream
// name, and that its refusal is a RefusedError.
func TestDialMediadAuth(t *testing.T) {
	relay.CheckGoroutines(t)
	auth, err := ingest.ParseAuth(strings.NewReader("live/allowed\nsecured secret=s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := startIngest(t, ingest.Config{Auth: auth})
	for _, tc := range []struct {
		path string
		code string // "" for success
	}{
		{"live/allowed", ""},
		{"live/other", "NetStream.Publish.Unauthorized"},
		{"secured/x?secret=s3cret", ""},
		{"secured/y?secret=wrong", "NetStream.Publish.Unauthorized"},
		{"secured/z", "NetStream.Publish.Unauthorized"},
	} {
		c, err := dial(t, "rtmp://"+addr+"/"+tc.path, relay.Options{})
		if tc.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.path, err)
				continue
			}
			app, key, _ := strings.Cut(tc.path, "/")
			key, _, _ = strings.Cut(key, "?")
			if s, ok := stream(srv, app, key); !ok || !s.Live {
				t.Errorf("%s: stream %+v", tc.path, s)
			}
			c.Close()
			continue
		}
		var re *relay.RefusedError
		if !errors.As(err, &re) || re.Step != "publish" || re.Code != tc.code {
			t.Errorf("%s: %v, want a %s refusal of publish", tc.path, err, tc.code)
		}
		if err != nil && strings.Contains(err.Error(), "secret=") {
			t.Errorf("%s: error %q reveals the query", tc.path, err)
		}
	}
}

// testCert is a self-signed certificate, its own CA.
func testCert(t *testing.T, dnsNames []string, ips []net.IP) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// tlsProxy terminates TLS on a loopback port and pipes each connection to
// backend, as a CDN's rtmps front does. Its goroutines end at cleanup.
func tlsProxy(t *testing.T, cert tls.Certificate, backend string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer track(c, false)
				pipe(c.(*tls.Conn), backend)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func pipe(c *tls.Conn, backend string) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A client that rejects the certificate never reaches the backend.
	if err := c.HandshakeContext(ctx); err != nil {
		return
	}
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); b.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); c.Close(); done <- struct{}{} }()
	<-done
	<-done
}

// TestDialRTMPS publishes through TLS and checks that the server's name is
// verified against the certificate.
func TestDialRTMPS(t *testing.T) {
	relay.CheckGoroutines(t)
	srv, addr := startIngest(t, ingest.Config{})
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	both, bothCA := testCert(t, []string{"localhost"}, loopback)
	dnsOnly, dnsCA := testCert(t, []string{"localhost"}, nil)
	ipOnly, ipCA := testCert(t, nil, loopback)
	_, otherCA := testCert(t, []string{"localhost"}, loopback)

	// Endpoints are plain data: the server name can differ from the host
	// dialled without depending on how localhost resolves here.
	named := func(proxy, serverName string) relay.Endpoint {
		ep, err := relay.ParseEndpoint("rtmps://" + proxy + "/live/tls")
		if err != nil {
			t.Fatal(err)
		}
		ep.ServerName = serverName
		return ep
	}
	type testCase struct {
		name string
		ep   relay.Endpoint
		ca   *x509.CertPool
		want error // nil for success, else the x509 error type to find
	}
	bothProxy := tlsProxy(t, both, addr)
	dnsProxy := tlsProxy(t, dnsOnly, addr)
	ipProxy := tlsProxy(t, ipOnly, addr)
	for _, tc := range []testCase{
		{"by IP", named(bothProxy, "127.0.0.1"), bothCA, nil},
		{"by name", named(bothProxy, "localhost"), bothCA, nil},
		{"IP not in the certificate", named(dnsProxy, "127.0.0.1"), dnsCA, x509.HostnameError{}},
		{"name not in the certificate", named(ipProxy, "localhost"), ipCA, x509.HostnameError{}},
		{"unknown CA", named(bothProxy, "127.0.0.1"), otherCA, x509.UnknownAuthorityError{}},
		{"system roots", named(bothProxy, "127.0.0.1"), nil, x509.UnknownAuthorityError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var cfg *tls.Config
			if tc.ca != nil {
				// ServerName in the base config must not win over the
				// endpoint's.
				cfg = &tls.Config{RootCAs: tc.ca, ServerName: "wrong.invalid"}
			}
			c, err := relay.Dial(ctx, tc.ep, relay.Options{TLSConfig: cfg})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, ok := c.NetConn.(*tls.Conn); !ok {
					t.Errorf("NetConn is a %T", c.NetConn)
				}
				publishMedia(t, srv, c, "live", "tls")
				c.Close()
				waitFor(t, "the broadcast to end", func() bool {
					s, ok := stream(srv, "live", "tls")
					return !ok || !s.Live
				})
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var found bool
			switch tc.want.(type) {
			case x509.HostnameError:
				var he x509.HostnameError
				found = errors.As(err, &he)
			case x509.UnknownAuthorityError:
				var ue x509.UnknownAuthorityError
				found = errors.As(err, &ue)
			}
			if !found || !strings.Contains(err.Error(), ": tls handshake: ") {
				t.Errorf("Dial: %v, want a tls handshake error with %T", err, tc.want)
			}
		})
	}
}
