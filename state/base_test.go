package state

import (
	"reflect"
	"strings"
	"testing"
)

// A tail is its session without the base's fields, and filling it from the
// base gives the session back, through the wire form; a session whose
// static part changed after its base went stays whole.
func TestPublisherTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(p *Publisher)
		tail   bool
	}{
		{"unchanged", func(*Publisher) {}, true},
		{"counters moved on", func(p *Publisher) { p.Stream.BytesIn += 1000; p.Session.Reader.BytesRead += 1000 }, true},
		{"new metadata", func(p *Publisher) { p.Stream.Metadata = []byte{3} }, false},
		{"new video sequence header", func(p *Publisher) { p.Stream.VideoSeq = []byte{1, 0} }, false},
		{"new audio sequence header", func(p *Publisher) { p.Stream.AudioSeq = []byte{0xaf, 0} }, false},
		{"another session", func(p *Publisher) { p.Session.ID++ }, false},
		{"another stream", func(p *Publisher) { p.Stream.Key = "k2" }, false},
		{"another query", func(p *Publisher) { p.Stream.Query = "token=2" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := samplePublisher()
			p.Stream.Query, p.Stream.PublisherAddr, p.Stream.Started = "token=1", "127.0.0.1:1", 1795000000000000000
			p.Session.TCURL, p.Session.FlashVer = "rtmp://h/live", "FMLE/3.0"
			b := PublisherBase(&p)
			tc.change(&p)
			whole := p
			if got := b.TailPublisher(&p); got != tc.tail {
				t.Fatalf("TailPublisher: %v, want %v", got, tc.tail)
			}
			if !tc.tail {
				if !reflect.DeepEqual(p, whole) {
					t.Fatalf("a session that stays whole was changed:\n got %+v\nwant %+v", p, whole)
				}
				return
			}
			if p.Stream.Key != "" || p.Session.App != "" || p.Stream.Metadata != nil || p.Stream.Started != 0 {
				t.Fatalf("tail keeps static fields: %+v", p)
			}
			env := roundTrip(t, KindPublisherTail, p)
			var got Publisher
			if err := Decode(env, &got); err != nil {
				t.Fatal(err)
			}
			bb := roundTripBase(t, b)
			if err := bb.FillPublisher(&got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, whole) {
				t.Fatalf("base + tail:\n got %+v\nwant %+v", got, whole)
			}
		})
	}
}

func TestPlayerTail(t *testing.T) {
	pl := Player{Session: Session{ID: 4, Peer: "127.0.0.1:2", HandshakePhase: 2, Connected: true, App: "live", TCURL: "rtmp://h/live"},
		Msid: 1, App: "live", Key: "k", Queue: []QueuedMessage{{Type: 9, TS: 40, Payload: []byte{1}}}, Skips: 2}
	b := PlayerBase(&pl)
	whole := pl
	if !b.TailPlayer(&pl) || pl.Key != "" || pl.Session.Peer != "" || len(pl.Queue) != 1 {
		t.Fatalf("tail: %+v", pl)
	}
	bb := roundTripBase(t, b)
	if err := bb.FillPlayer(&pl); err != nil || !reflect.DeepEqual(pl, whole) {
		t.Fatalf("base + tail: %v\n got %+v\nwant %+v", err, pl, whole)
	}
	moved := whole
	moved.Key = "other"
	if b.TailPlayer(&moved) {
		t.Error("a player of another stream went as a tail")
	}
	var pub Publisher
	if b.TailPublisher(&pub) {
		t.Error("a player's base made a publisher's tail")
	}
}

// A tail meets only its own base, and a tail that carries static fields
// is refused rather than overwritten.
func TestFillRefusesAMismatch(t *testing.T) {
	p := samplePublisher()
	b := PublisherBase(&p)
	if !b.TailPublisher(&p) {
		t.Fatal("no tail")
	}
	for _, tc := range []struct {
		name string
		fill func() error
		want string
	}{
		{"another session's base", func() error { o := b; o.ID++; q := p; return o.FillPublisher(&q) }, "given the base of session 10"},
		{"a player's base", func() error { o := b; o.Of = KindPlayerTail; q := p; return o.FillPublisher(&q) }, "player-tail"},
		{"static fields in the tail", func() error { q := p; q.Stream.Key = "x"; return b.FillPublisher(&q) }, "carries static fields"},
		{"a publisher's base for a player", func() error { return b.FillPlayer(&Player{Session: Session{ID: p.Session.ID}}) }, "publisher-tail"},
	} {
		err := tc.fill()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

func roundTripBase(t *testing.T, b Base) Base {
	t.Helper()
	env, err := Encode(KindBase, b)
	if err != nil {
		t.Fatal(err)
	}
	var got Base
	if err := Decode(env, &got); err != nil {
		t.Fatal(err)
	}
	return got
}
