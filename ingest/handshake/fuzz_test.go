package handshake

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// fuzzOutcome is everything a run of feeds can be observed to produce.
type fuzzOutcome struct {
	replies  [][]byte
	consumed int
	err      string
	phase    Phase
	partial  []byte
}

// fuzzFeed feeds data in pieces whose lengths come from cuts (the rest in
// one piece), re-creating the Server from a copy of its fields between
// pieces as an export would. It fails t on any broken invariant.
func fuzzFeed(t *testing.T, data, cuts []byte) fuzzOutcome {
	var (
		s   Server
		out fuzzOutcome
		rnd = detRand(1)
	)
	feed := func(p []byte) bool {
		for len(p) > 0 && !s.Done() {
			before := s.Phase
			n, reply, err := s.Feed(p, rnd, 7)
			if n < 0 || n > len(p) {
				t.Fatalf("Feed consumed %d of %d bytes", n, len(p))
			}
			if err != nil {
				if n != 0 || reply != nil {
					t.Fatalf("Feed failed (%v) yet consumed %d / replied %d bytes", err, n, len(reply))
				}
				out.err = err.Error()
				return false
			}
			if n == 0 {
				t.Fatalf("Feed consumed nothing of %d bytes in phase %s", len(p), s.Phase)
			}
			if reply != nil && (len(reply) != ReplySize || before != PhaseC0C1 || s.Phase != PhaseC2) {
				t.Fatalf("reply of %d bytes on %s -> %s", len(reply), before, s.Phase)
			}
			if len(s.Partial) > s.Phase.size() || (s.Done() && s.Partial != nil) {
				t.Fatalf("phase %s holds %d bytes", s.Phase, len(s.Partial))
			}
			if reply != nil {
				out.replies = append(out.replies, reply)
			}
			out.consumed += n
			p = p[n:]
		}
		return true
	}
	for _, c := range cuts {
		k := min(int(c), len(data))
		if !feed(data[:k]) {
			break
		}
		data = data[k:]
		s = Server{Phase: s.Phase, Partial: append([]byte(nil), s.Partial...)}
	}
	if out.err == "" {
		feed(data)
	}
	out.phase, out.partial = s.Phase, s.Partial
	return out
}

func FuzzServerFeed(f *testing.F) {
	simple := refSimpleC1(f, detRand(1))
	digest := refDigestC1(f, 772, detRand(2))
	c2 := bytes.Repeat([]byte{0xc2}, C2Size)
	f.Add(append(append([]byte{}, simple...), c2...), []byte{1, 200, 255, 0, 3})
	f.Add(append(append([]byte{}, digest...), c2...), []byte{})
	f.Add(append([]byte{}, digest[:700]...), []byte{7, 7, 7})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte{})
	f.Add([]byte{6, 1, 2, 3}, []byte{1})
	f.Add([]byte{}, []byte{})
	if golden, err := os.ReadFile(goldenC0C1); err == nil {
		f.Add(append(golden, c2...), []byte{255, 255, 255})
	}

	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		got := fuzzFeed(t, data, cuts)
		want := fuzzFeed(t, data, nil)
		if fmt.Sprint(got.consumed, got.err, got.phase) != fmt.Sprint(want.consumed, want.err, want.phase) ||
			!bytes.Equal(got.partial, want.partial) || len(got.replies) != len(want.replies) {
			t.Fatalf("split feed: consumed %d, err %q, phase %s, %d partial, %d replies; at once: %d, %q, %s, %d, %d",
				got.consumed, got.err, got.phase, len(got.partial), len(got.replies),
				want.consumed, want.err, want.phase, len(want.partial), len(want.replies))
		}
		for i := range got.replies {
			if !bytes.Equal(got.replies[i], want.replies[i]) {
				t.Fatalf("reply %d differs between split and whole feeding", i)
			}
		}
	})
}
