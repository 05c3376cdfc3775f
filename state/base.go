package state

import (
	"bytes"
	"fmt"
)

// BaseSince is the state version that introduced bases and tails.
const BaseSince = 8

// A session's static part (its connect, its stream's name, metadata and
// sequence headers) goes to the new process before the park, as a base,
// while the session still runs; the new process builds the session around
// it, connection included, while the old one goes on serving. At the park
// the session exports only its tail: its envelope with the static fields
// left empty, which the new process fills from the base. Version 8 added
// the three kinds, which have no form before it; an old process sends them
// only to a new one that reads version 8 or later.
const (
	// KindBase is a session's static part, with its connection's
	// descriptor.
	KindBase Kind = "base"
	// KindPublisherTail is a publisher's envelope whose static part is its
	// base's.
	KindPublisherTail Kind = "publisher-tail"
	// KindPlayerTail is a player's envelope whose static part is its
	// base's.
	KindPlayerTail Kind = "player-tail"
)

// Base is the static part of a publishing or playing RTMP session.
type Base struct {
	// ID is the session's: its tail names it in Session.ID.
	ID uint64 `msgpack:"id"`
	// Of is the kind of the tail it completes: KindPublisherTail or
	// KindPlayerTail.
	Of       Kind   `msgpack:"of"`
	Peer     string `msgpack:"peer"`
	App      string `msgpack:"app"`
	TCURL    string `msgpack:"tc_url"`
	FlashVer string `msgpack:"flash_ver"`
	// StreamApp and Key name the stream published or played.
	StreamApp string `msgpack:"stream_app"`
	Key       string `msgpack:"key"`
	// A publisher's stream, as at the base.
	Metadata      []byte `msgpack:"metadata"`
	VideoSeq      []byte `msgpack:"video_seq"`
	AudioSeq      []byte `msgpack:"audio_seq"`
	Started       int64  `msgpack:"started"`
	Query         string `msgpack:"query,omitempty"`
	PublisherAddr string `msgpack:"publisher_addr,omitempty"`
}

// PublisherBase is the base of p.
func PublisherBase(p *Publisher) Base {
	s, st := &p.Session, &p.Stream
	return Base{ID: s.ID, Of: KindPublisherTail, Peer: s.Peer, App: s.App, TCURL: s.TCURL, FlashVer: s.FlashVer,
		StreamApp: st.App, Key: st.Key, Metadata: st.Metadata, VideoSeq: st.VideoSeq, AudioSeq: st.AudioSeq,
		Started: st.Started, Query: st.Query, PublisherAddr: st.PublisherAddr}
}

// PlayerBase is the base of p.
func PlayerBase(p *Player) Base {
	s := &p.Session
	return Base{ID: s.ID, Of: KindPlayerTail, Peer: s.Peer, App: s.App, TCURL: s.TCURL, FlashVer: s.FlashVer,
		StreamApp: p.App, Key: p.Key}
}

// TailPublisher reports whether p's static part is still b's, and if so
// leaves it empty in p: p is then b's tail. Otherwise p stays whole (the
// session changed since its base, and goes as a publisher).
func (b *Base) TailPublisher(p *Publisher) bool {
	s, st := &p.Session, &p.Stream
	if b.Of != KindPublisherTail || b.ID != s.ID || b.Peer != s.Peer || b.App != s.App || b.TCURL != s.TCURL ||
		b.FlashVer != s.FlashVer || b.StreamApp != st.App || b.Key != st.Key || !bytes.Equal(b.Metadata, st.Metadata) ||
		!bytes.Equal(b.VideoSeq, st.VideoSeq) || !bytes.Equal(b.AudioSeq, st.AudioSeq) || b.Started != st.Started ||
		b.Query != st.Query || b.PublisherAddr != st.PublisherAddr {
		return false
	}
	s.Peer, s.App, s.TCURL, s.FlashVer = "", "", "", ""
	st.App, st.Key, st.Metadata, st.VideoSeq, st.AudioSeq = "", "", nil, nil, nil
	st.Started, st.Query, st.PublisherAddr = 0, "", ""
	return true
}

// TailPlayer is TailPublisher for a player.
func (b *Base) TailPlayer(p *Player) bool {
	s := &p.Session
	if b.Of != KindPlayerTail || b.ID != s.ID || b.Peer != s.Peer || b.App != s.App || b.TCURL != s.TCURL ||
		b.FlashVer != s.FlashVer || b.StreamApp != p.App || b.Key != p.Key {
		return false
	}
	s.Peer, s.App, s.TCURL, s.FlashVer = "", "", "", ""
	p.App, p.Key = "", ""
	return true
}

// FillPublisher makes the tail p whole again from its base b.
func (b *Base) FillPublisher(p *Publisher) error {
	if err := b.check(KindPublisherTail, p.Session.ID); err != nil {
		return err
	}
	s, st := &p.Session, &p.Stream
	if s.Peer != "" || s.App != "" || s.TCURL != "" || s.FlashVer != "" || st.App != "" || st.Key != "" ||
		len(st.Metadata) != 0 || len(st.VideoSeq) != 0 || len(st.AudioSeq) != 0 || st.Started != 0 || st.Query != "" || st.PublisherAddr != "" {
		return fmt.Errorf("state: tail of session %d carries static fields", b.ID)
	}
	s.Peer, s.App, s.TCURL, s.FlashVer = b.Peer, b.App, b.TCURL, b.FlashVer
	st.App, st.Key, st.Metadata, st.VideoSeq, st.AudioSeq = b.StreamApp, b.Key, b.Metadata, b.VideoSeq, b.AudioSeq
	st.Started, st.Query, st.PublisherAddr = b.Started, b.Query, b.PublisherAddr
	return nil
}

// FillPlayer makes the tail p whole again from its base b.
func (b *Base) FillPlayer(p *Player) error {
	if err := b.check(KindPlayerTail, p.Session.ID); err != nil {
		return err
	}
	s := &p.Session
	if s.Peer != "" || s.App != "" || s.TCURL != "" || s.FlashVer != "" || p.App != "" || p.Key != "" {
		return fmt.Errorf("state: tail of session %d carries static fields", b.ID)
	}
	s.Peer, s.App, s.TCURL, s.FlashVer = b.Peer, b.App, b.TCURL, b.FlashVer
	p.App, p.Key = b.StreamApp, b.Key
	return nil
}

func (b *Base) check(of Kind, id uint64) error {
	if b.Of != of {
		return fmt.Errorf("state: a %s for the base of a %s (session %d)", of, b.Of, b.ID)
	}
	if b.ID != id {
		return fmt.Errorf("state: tail of session %d given the base of session %d", id, b.ID)
	}
	return nil
}
