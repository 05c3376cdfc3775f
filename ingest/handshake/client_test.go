package handshake

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// serve runs the server side of the handshake over conn the way a session
// does: read what arrives, feed it, write any reply, and return the bytes
// left over for the chunk layer along with S1's version field.
func serve(conn io.ReadWriter, rnd io.Reader) (rest []byte, s1Version []byte, err error) {
	var s Server
	buf := make([]byte, 4096)
	for {
		m, rerr := conn.Read(buf)
		p := buf[:m]
		for len(p) > 0 && !s.Done() {
			n, reply, err := s.Feed(p, rnd, 1000)
			if err != nil {
				return nil, nil, err
			}
			p = p[n:]
			if reply != nil {
				s1Version = append([]byte(nil), reply[5:9]...)
				if _, err := conn.Write(reply); err != nil {
					return nil, nil, err
				}
			}
		}
		if s.Done() {
			return append([]byte(nil), p...), s1Version, nil
		}
		if rerr != nil {
			return nil, nil, rerr
		}
	}
}

type serveResult struct {
	after     []byte
	s1Version []byte
	err       error
}

func TestClientServer(t *testing.T) {
	transports := map[string]func(t *testing.T) (client, server net.Conn){
		"pipe": func(t *testing.T) (net.Conn, net.Conn) { return net.Pipe() },
		"tcp": func(t *testing.T) (net.Conn, net.Conn) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			return c, s
		},
	}
	payload := []byte("first chunk bytes")
	for tname, dial := range transports {
		for _, digest := range []bool{false, true} {
			name := tname + "/simple"
			if digest {
				name = tname + "/digest"
			}
			t.Run(name, func(t *testing.T) {
				cc, sc := dial(t)
				defer cc.Close()
				defer sc.Close()

				done := make(chan serveResult, 1)
				go func() {
					rest, ver, err := serve(sc, rand.Reader)
					if err != nil {
						done <- serveResult{err: err}
						return
					}
					after := make([]byte, len(payload))
					k := copy(after, rest)
					_, err = io.ReadFull(sc, after[k:])
					done <- serveResult{after: after, s1Version: ver, err: err}
				}()

				if err := Client(cc, rand.Reader, ClientOptions{Digest: digest}); err != nil {
					t.Fatalf("Client: %v", err)
				}
				if _, err := cc.Write(payload); err != nil {
					t.Fatalf("write after handshake: %v", err)
				}
				res := <-done
				if res.err != nil {
					t.Fatalf("server: %v", res.err)
				}
				if !bytes.Equal(res.after, payload) {
					t.Fatalf("server saw %q after the handshake, want %q", res.after, payload)
				}
				if zero := bytes.Equal(res.s1Version, []byte{0, 0, 0, 0}); zero == digest {
					t.Fatalf("S1 version %x in digest=%v mode", res.s1Version, digest)
				}
			})
		}
	}
}

// fakeConn answers a Client synchronously with this package's Server,
// after letting the test tamper with the reply.
type fakeConn struct {
	s      Server
	tamper func(reply []byte)
	out    bytes.Buffer
	err    error
}

func (f *fakeConn) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && !f.s.Done() {
		n, reply, err := f.s.Feed(p, detRand(3), 1)
		if err != nil {
			f.err = err
			return 0, err
		}
		if reply != nil {
			f.tamper(reply)
			f.out.Write(reply)
		}
		p = p[n:]
	}
	return total, nil
}

func (f *fakeConn) Read(p []byte) (int, error) { return f.out.Read(p) }

func TestClientVerifiesServer(t *testing.T) {
	tests := []struct {
		name    string
		digest  bool
		tamper  func(reply []byte)
		wantErr string
	}{
		{"digest accepted", true, func([]byte) {}, ""},
		{"simple accepted", false, func([]byte) {}, ""},
		{"simple ignores S2 content", false, func(r []byte) { r[2000] ^= 1 }, ""},
		{"bad S0", false, func(r []byte) { r[0] = 6 }, "S0 version 0x06"},
		{"S2 digest", true, func(r []byte) { r[3072] ^= 1 }, "S2 digest does not match"},
		{"S2 body", true, func(r []byte) { r[1537+100] ^= 1 }, "S2 digest does not match"},
		{"S1 digest", true, func(r []byte) {
			for i := 9; i < 1537; i++ {
				r[i] ^= 0x55
			}
		}, "S1 carries no valid server digest"},
		{"simple S1 to digest C1", true, func(r []byte) { copy(r[5:9], []byte{0, 0, 0, 0}) }, "simple S1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeConn{tamper: tt.tamper}
			err := Client(f, detRand(4), ClientOptions{Digest: tt.digest})
			if tt.wantErr == "" {
				if err != nil || f.err != nil || !f.s.Done() {
					t.Fatalf("Client = %v, server err %v, server done %v", err, f.err, f.s.Done())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Client = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestClientShortReply(t *testing.T) {
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(make([]byte, 100)), io.Discard}
	err := Client(rw, detRand(1), ClientOptions{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Client over a 100-byte reply = %v, want io.ErrUnexpectedEOF", err)
	}
}
