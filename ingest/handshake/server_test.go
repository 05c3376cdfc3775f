package handshake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestServerSimple(t *testing.T) {
	c0c1 := refSimpleC1(t, detRand(1))
	c2 := bytes.Repeat([]byte{0xc2}, 1536)
	chunk := []byte{0x03, 0, 0, 0}
	in := append(append(append([]byte{}, c0c1...), c2...), chunk...)

	var s Server
	n, reply, err := s.Feed(in, detRand(2), 777)
	if err != nil || n != 1537 || len(reply) != 3073 {
		t.Fatalf("Feed(C0C1...) = %d, %d-byte reply, %v; want 1537, 3073, nil", n, len(reply), err)
	}
	if s.Phase != PhaseC2 || len(s.Partial) != 0 {
		t.Fatalf("after C0C1: phase %s, %d partial bytes", s.Phase, len(s.Partial))
	}
	s1, s2 := reply[1:1537], reply[1537:]
	if reply[0] != 3 {
		t.Errorf("S0 = %d, want 3", reply[0])
	}
	if got := binary.BigEndian.Uint32(s1[0:4]); got != 777 {
		t.Errorf("S1 time = %d, want 777", got)
	}
	if got := binary.BigEndian.Uint32(s1[4:8]); got != 0 {
		t.Errorf("S1 version = %#x, want 0 for a simple handshake", got)
	}
	if bytes.Equal(s1[8:], make([]byte, 1528)) {
		t.Error("S1 random part is all zero")
	}
	if !bytes.Equal(s2[0:4], c0c1[1:5]) {
		t.Errorf("S2 time = %x, want C1 time %x", s2[0:4], c0c1[1:5])
	}
	if got := binary.BigEndian.Uint32(s2[4:8]); got != 777 {
		t.Errorf("S2 time2 = %d, want 777", got)
	}
	if !bytes.Equal(s2[8:], c0c1[9:]) {
		t.Error("S2 does not echo C1's random bytes")
	}

	rest := in[n:]
	n, reply, err = s.Feed(rest, detRand(2), 778)
	if err != nil || n != 1536 || reply != nil {
		t.Fatalf("Feed(C2...) = %d, %v, %v; want 1536, nil, nil", n, reply, err)
	}
	if !s.Done() || s.Partial != nil {
		t.Fatalf("after C2: phase %s, partial %v; want done, nil", s.Phase, s.Partial)
	}
	rest = rest[n:]
	if !bytes.Equal(rest, chunk) {
		t.Fatalf("left for the chunk layer: %x, want %x", rest, chunk)
	}
	n, reply, err = s.Feed(rest, detRand(2), 779)
	if n != 0 || reply != nil || err != nil {
		t.Fatalf("Feed after done = %d, %v, %v; want 0, nil, nil", n, reply, err)
	}
}

func TestServerDigest(t *testing.T) {
	tests := []struct {
		name     string
		c0c1     func(t *testing.T) []byte
		digest   bool
		wantBase int
	}{
		{"scheme 0", func(t *testing.T) []byte { return refDigestC1(t, 8, detRand(3)) }, true, 8},
		{"scheme 1", func(t *testing.T) []byte { return refDigestC1(t, 772, detRand(4)) }, true, 772},
		{"bad digest falls back to simple", func(t *testing.T) []byte {
			b := refDigestC1(t, 8, detRand(3))
			pos := refPos(b[1:], 8)
			b[1+pos] ^= 1
			return b
		}, false, 0},
		{"zero version ignores a valid digest", func(t *testing.T) []byte {
			b := refDigestC1(t, 8, detRand(3))
			copy(b[5:9], []byte{0, 0, 0, 0})
			return b
		}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c0c1 := tt.c0c1(t)
			var s Server
			n, reply, err := s.Feed(c0c1, detRand(9), 42)
			if err != nil || n != 1537 {
				t.Fatalf("Feed = %d, %v", n, err)
			}
			if !tt.digest {
				if v := binary.BigEndian.Uint32(reply[5:9]); v != 0 {
					t.Fatalf("S1 version = %#x, want simple handshake (0)", v)
				}
				if !bytes.Equal(reply[1537+8:], c0c1[9:]) {
					t.Fatal("simple S2 does not echo C1")
				}
				return
			}
			checkDigestReply(t, c0c1, reply, tt.wantBase, tt.wantBase)
			if got := binary.BigEndian.Uint32(reply[1:5]); got != 42 {
				t.Errorf("S1 time = %d, want 42", got)
			}
		})
	}
}

// feedAll feeds in in the given pieces, deep-copying the Server between
// calls as an export to another process would, writing replies to out.
// It returns the number of bytes the handshake consumed.
func feedAll(t *testing.T, pieces [][]byte, rnd io.Reader, out *bytes.Buffer, export bool) (int, Server) {
	t.Helper()
	var s Server
	consumed := 0
	for _, p := range pieces {
		for len(p) > 0 && !s.Done() {
			n, reply, err := s.Feed(p, rnd, 5)
			if err != nil {
				t.Fatalf("Feed at byte %d: %v", consumed, err)
			}
			if n == 0 {
				t.Fatalf("Feed at byte %d consumed nothing in phase %s", consumed, s.Phase)
			}
			out.Write(reply)
			consumed += n
			p = p[n:]
			if len(s.Partial) > s.Phase.size() {
				t.Fatalf("phase %s holds %d bytes", s.Phase, len(s.Partial))
			}
			if export {
				s = Server{Phase: s.Phase, Partial: append([]byte(nil), s.Partial...)}
			}
		}
	}
	return consumed, s
}

func TestServerSplits(t *testing.T) {
	inputs := map[string][]byte{
		"simple": refSimpleC1(t, detRand(1)),
		"digest": refDigestC1(t, 772, detRand(2)),
	}
	for name, c0c1 := range inputs {
		t.Run(name, func(t *testing.T) {
			in := append(append([]byte{}, c0c1...), bytes.Repeat([]byte{7}, 1536+10)...)
			var want bytes.Buffer
			wantN, _ := feedAll(t, [][]byte{in}, detRand(5), &want, false)
			if wantN != 3073 || want.Len() != 3073 {
				t.Fatalf("at once: consumed %d, replied %d bytes", wantN, want.Len())
			}

			check := func(what string, pieces [][]byte) {
				t.Helper()
				var got bytes.Buffer
				n, s := feedAll(t, pieces, detRand(5), &got, true)
				if n != wantN || !s.Done() || !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("%s: consumed %d (want %d), done %v, reply equal %v",
						what, n, wantN, s.Done(), bytes.Equal(got.Bytes(), want.Bytes()))
				}
			}

			var bytewise [][]byte
			for i := range in {
				bytewise = append(bytewise, in[i:i+1])
			}
			check("byte by byte", bytewise)

			for k := 1; k < len(in); k++ {
				check("split", [][]byte{in[:k], in[k:]})
			}

			r := detRand(6)
			for range 20 {
				var pieces [][]byte
				for rest := in; len(rest) > 0; {
					var b [2]byte
					io.ReadFull(r, b[:])
					k := min(len(rest), 1+int(binary.BigEndian.Uint16(b[:]))%700)
					pieces = append(pieces, rest[:k])
					rest = rest[k:]
				}
				check("random pieces", pieces)
			}
		})
	}
}

func TestServerBadC0(t *testing.T) {
	tests := []struct {
		c0        byte
		encrypted bool
		wantMsg   string
	}{
		{6, true, "encrypted RTMP (RTMPE) not supported"},
		{8, true, "encrypted RTMP (RTMPE) not supported"},
		{'G', false, "0x47 ('G')"},
		{0, false, "0x00"},
		{0xff, false, "0xff"},
	}
	for _, tt := range tests {
		t.Run(string(rune('0'+tt.c0%10))+"_"+tt.wantMsg, func(t *testing.T) {
			inputs := [][]byte{{tt.c0}, append([]byte{tt.c0}, []byte("ET / HTTP/1.1\r\n")...)}
			for _, in := range inputs {
				var s Server
				n, reply, err := s.Feed(in, detRand(1), 0)
				if err == nil || n != 0 || reply != nil {
					t.Fatalf("Feed(%q) = %d, %v, %v; want an error, nothing consumed", in, n, reply, err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not contain %q", err, tt.wantMsg)
				}
				var ve *VersionError
				if !errors.As(err, &ve) || ve.Version != tt.c0 {
					t.Errorf("error %v is not a *VersionError for %#x", err, tt.c0)
				}
				if errors.Is(err, ErrEncrypted) != tt.encrypted {
					t.Errorf("errors.Is(%v, ErrEncrypted) = %v, want %v", err, !tt.encrypted, tt.encrypted)
				}
				if s.Phase != PhaseC0C1 || len(s.Partial) != 0 {
					t.Errorf("state changed on error: %+v", s)
				}
			}
		})
	}
}

func TestServerShortReads(t *testing.T) {
	c0c1 := refSimpleC1(t, detRand(1))
	var s Server
	if n, reply, err := s.Feed(nil, detRand(1), 0); n != 0 || reply != nil || err != nil {
		t.Fatalf("Feed(nil) = %d, %v, %v", n, reply, err)
	}
	n, reply, err := s.Feed(c0c1[:100], detRand(1), 0)
	if n != 100 || reply != nil || err != nil {
		t.Fatalf("Feed(100 bytes) = %d, %v, %v", n, reply, err)
	}
	if s.Phase != PhaseC0C1 || !bytes.Equal(s.Partial, c0c1[:100]) {
		t.Fatalf("after 100 bytes: phase %s, partial %d bytes", s.Phase, len(s.Partial))
	}
	n, reply, err = s.Feed(c0c1[100:], detRand(1), 0)
	if n != 1437 || len(reply) != 3073 || err != nil {
		t.Fatalf("Feed(rest) = %d, %d-byte reply, %v", n, len(reply), err)
	}
	n, _, err = s.Feed(make([]byte, 1000), detRand(1), 0)
	if n != 1000 || err != nil || s.Phase != PhaseC2 || len(s.Partial) != 1000 {
		t.Fatalf("Feed(1000 bytes of C2) = %d, %v; phase %s, %d partial", n, err, s.Phase, len(s.Partial))
	}
	n, _, err = s.Feed(make([]byte, 1000), detRand(1), 0)
	if n != 536 || err != nil || !s.Done() {
		t.Fatalf("Feed(end of C2) = %d, %v; phase %s", n, err, s.Phase)
	}
}

func TestServerRestoredStateErrors(t *testing.T) {
	tests := []struct {
		name string
		s    Server
		want string
	}{
		{"unknown phase", Server{Phase: 9}, "invalid phase 9"},
		{"oversize C0C1 partial", Server{Phase: PhaseC0C1, Partial: make([]byte, 1538)}, "holds 1538 bytes"},
		{"oversize C2 partial", Server{Phase: PhaseC2, Partial: make([]byte, 1537)}, "holds 1537 bytes"},
		{"bad C0 in partial", Server{Phase: PhaseC0C1, Partial: []byte{6, 0}}, "RTMPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s
			n, reply, err := s.Feed([]byte{3, 0, 0}, detRand(1), 0)
			if err == nil || n != 0 || reply != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Feed = %d, %v, %v; want error containing %q", n, reply, err, tt.want)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy gone") }

func TestServerRandFailureLeavesStateAlone(t *testing.T) {
	c0c1 := refSimpleC1(t, detRand(1))
	var s Server
	if n, _, err := s.Feed(c0c1[:10], failingReader{}, 0); n != 10 || err != nil {
		t.Fatalf("Feed(10) = %d, %v", n, err)
	}
	n, reply, err := s.Feed(c0c1[10:], failingReader{}, 0)
	if err == nil || !strings.Contains(err.Error(), "entropy gone") || n != 0 || reply != nil {
		t.Fatalf("Feed with failing rand = %d, %v, %v", n, reply, err)
	}
	if s.Phase != PhaseC0C1 || !bytes.Equal(s.Partial, c0c1[:10]) {
		t.Fatalf("state changed on error: phase %s, %d partial", s.Phase, len(s.Partial))
	}
	if n, reply, err = s.Feed(c0c1[10:], detRand(1), 0); n != 1527 || len(reply) != 3073 || err != nil {
		t.Fatalf("retry = %d, %d-byte reply, %v", n, len(reply), err)
	}
}

func BenchmarkServerFeed(b *testing.B) {
	for _, bc := range []struct {
		name string
		c0c1 []byte
	}{
		{"simple", refSimpleC1(b, detRand(1))},
		{"digest", refDigestC1(b, 8, detRand(1))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := append(append([]byte{}, bc.c0c1...), make([]byte, 1536)...)
			rnd := detRand(2)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				var s Server
				n, _, err := s.Feed(in, rnd, 1)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := s.Feed(in[n:], rnd, 1); err != nil || !s.Done() {
					b.Fatal(err)
				}
			}
		})
	}
}
